"""MIDI in and out on python-rtmidi: API choice, virtual or named ports, reconnection, and no hanging notes.

The output remembers every note it has turned on, so all_notes_off() can close each one explicitly
(receivers that ignore CC 123 still get their note-offs), in chunks a receiver can take. When the MIDI system
goes away (bridge/jack_watch.py tells) the ports are detached, and reattached to new clients when it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import rtmidi

from musicbridge.bridge import priority
from musicbridge.midi_ports import MidiUnavailableError, find_port, open_client, port_matches, quiet_stderr

log = logging.getLogger(__name__)

IN_PORT_NAME = "musicbridge in"
OUT_PORT_NAME = "musicbridge out"
# rtmidi opens a MIDI client of its own for every MidiIn/MidiOut and cannot put two ports under one, so the two
# ports cannot both sit under a JACK client "musicbridge" (JACK would rename the second "musicbridge-01"). Each
# client takes its port's name instead: JACK and ALSA list "musicbridge in:musicbridge in" and
# "musicbridge out:musicbridge out", CoreMIDI shows the port names alone.
CLIENT_NAMES = {"in": IN_PORT_NAME, "out": OUT_PORT_NAME}
PROBE_SUFFIX = " (ports)"  # the client that lists ports for housekeeping where the port's own one must not (ALSA)
WINDOWS_HELP = (
    "Windows MIDI has no virtual ports: install a loopback driver (e.g. loopMIDI), create a port and pass "
    "--midi-out 'loopMIDI Port' (and --midi-in for input)."
)


class MidiError(RuntimeError):
    """A MIDI API or port that was asked for and cannot be opened."""


def open_midi_client(direction: str, api: str):
    """(rtmidi client, API name). MidiUnavailableError when nothing opens: for `auto` the daemon then goes
    OSC-only; for an API asked for by name it is an error."""
    return open_client(direction, api, CLIENT_NAMES[direction])


# Data bytes after each channel-message status (high nibble); system messages never pass through (--thru).
CHANNEL_MESSAGE_LENGTH = {0x80: 3, 0x90: 3, 0xA0: 3, 0xB0: 3, 0xC0: 2, 0xD0: 2, 0xE0: 3}
# A burst larger than this reaches a receiver in one JACK cycle and overflows it (rtmidi's own input queue
# holds 1,024 messages; measured: 4,096 note-offs at once, 3,072 lost). Bursts go out in chunks of this many,
# one MIDI-system cycle apart.
PACE_MESSAGES = 256
DEFAULT_PACE_S = 0.005  # between chunks where the cycle is unknown (ALSA, CoreMIDI, WinMM)
MIN_PACE_S = 0.001
ALL_NOTES_OFF, ALL_SOUND_OFF = 123, 120


def well_formed(message: list[int] | tuple[int, ...]) -> bool:
    """A complete channel message: a status byte, then exactly its data bytes, each below 128."""
    if not message or message[0] < 0x80:
        return False
    length = CHANNEL_MESSAGE_LENGTH.get(message[0] & 0xF0)
    return length == len(message) and all(0 <= b < 0x80 for b in message[1:])


def track_note(sounding: dict[tuple[int, int], int], channels_sounded: set[int],
               message: list[int] | tuple[int, ...]) -> tuple[tuple[int, int] | None, int]:
    """Count a message into an output's sounding notes: ((channel, pitch), +1) for a note-on, (key, -1) for a
    note-off that closes one, (key or None, 0) for anything else."""
    status = message[0] & 0xF0
    if status not in (0x80, 0x90) or len(message) < 3:
        return None, 0
    key = (message[0] & 0x0F, message[1])
    if status == 0x90 and message[2] > 0:
        sounding[key] = sounding.get(key, 0) + 1
        channels_sounded.add(key[0])
        return key, 1
    if key in sounding:
        sounding[key] -= 1
        if sounding[key] <= 0:
            del sounding[key]
        return key, -1
    return key, 0


def closing_messages(sounding: dict[tuple[int, int], int], channels_sounded: set[int],
                     channels: tuple[int, ...]) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """(a note-off for every sounding note, CC 123 on `channels` and on every channel that sounded)."""
    offs = [(0x80 | channel, pitch, 0) for (channel, pitch), count in sounding.items() for _ in range(count)]
    controls = [(0xB0 | channel, ALL_NOTES_OFF, 0) for channel in sorted({*channels, *channels_sounded})]
    return offs, controls


def _delete(handle) -> None:
    """Close an rtmidi client; one whose MIDI system died may complain, and that changes nothing."""
    try:
        handle.close_port()
        handle.delete()
    except Exception:
        log.debug("closing a MIDI client", exc_info=True)


class _Port:
    """One rtmidi port, virtual or connected to an existing port by substring (and reconnected when it returns).

    `handle` is None while the MIDI system is away (detach); reattach() swaps in a new client. Every use of
    the handle holds `lock` (rtmidi objects are not thread-safe) and finds out there whether it is there —
    except housekeeping's look at the port list (check()), which never takes it: a note-on never waits for it.
    `handle` is swapped only by the housekeeping thread (detach, reattach, close), so that thread reads it freely.
    """

    def __init__(self, direction: str, api: str, wanted: str | None, configure: Callable | None = None):
        handle, self.api = open_midi_client(direction, api)
        self.direction = "input" if direction == "in" else "output"
        self.key = direction
        self.wanted = wanted
        self.virtual_name = CLIENT_NAMES[direction]
        self.configure = configure or (lambda handle: None)
        self.connected_to: str | None = None
        self.name = self.virtual_name if wanted is None else wanted
        self.lock = threading.RLock()
        self.handle = None
        self.probe = None  # housekeeping's own client for listing ports (not on JACK); made when first needed
        try:
            self.configure(handle)
            self._open(handle, required=True)
        except Exception:
            _delete(handle)
            raise
        self.handle = handle

    def _open(self, handle, required: bool) -> None:
        """Open the virtual port, or connect the named one; a named port that is not there yet is an error at
        startup (required) and waited for after a reconnect (check() connects it when it appears)."""
        if self.wanted is None:
            try:
                handle.open_virtual_port(self.virtual_name)
            except (NotImplementedError, rtmidi.RtMidiError) as error:
                raise MidiError(f"cannot create the virtual port {self.virtual_name!r} ({error}). "
                                f"{WINDOWS_HELP}") from error
            return
        ports = handle.get_ports()
        try:
            index = find_port(ports, self.wanted)
        except MidiUnavailableError as error:
            if required:
                raise MidiError(f"{self.direction}: {error}") from error
            self.connected_to = None
            log.warning("MIDI %s port %r is not there yet; waiting for it", self.direction, self.wanted)
            return
        handle.open_port(index, self.virtual_name)
        self.connected_to = self.name = ports[index]

    def check(self) -> None:
        """Reconnect a named port whose peer went away and came back (virtual ports need nothing).

        Looking takes no lock: the port list comes from the handle itself on JACK (libjack reads its graph from
        shared memory, safe from any thread) and from a probe client of housekeeping's own elsewhere (an ALSA
        sequencer handle must not be used by two threads at once). The lock is taken only to change the
        connection, when the peer went away or came back."""
        if self.wanted is None:
            return
        handle = self.handle  # swapped only on this (the housekeeping) thread
        if handle is None:
            return
        ports = self._list_ports(handle)
        if self.connected_to in ports:
            return
        matches = [p for p in ports if port_matches(p, self.wanted)]
        with self.lock:
            if self.handle is not handle:  # swapped meanwhile: the next check looks again
                return
            if self.connected_to is not None:
                log.warning("MIDI %s port %r went away; waiting for it to return", self.direction, self.connected_to)
                self.connected_to = None
                handle.close_port()
            if matches:
                own = ports if self.api == "jack" else handle.get_ports()  # its own numbering (a reconnect: rare)
                if matches[0] not in own:
                    return
                handle.open_port(own.index(matches[0]))
                self.connected_to = self.name = matches[0]
                log.warning("MIDI %s port %r is back; reconnected", self.direction, matches[0])

    def _list_ports(self, handle) -> list[str]:
        if self.api == "jack":
            return handle.get_ports()
        if self.probe is None:
            with quiet_stderr():
                self.probe, _ = open_client(self.key, self.api, CLIENT_NAMES[self.key] + PROBE_SUFFIX)
        return self.probe.get_ports()

    def _close_probe(self) -> None:
        probe, self.probe = self.probe, None
        if probe is not None:
            _delete(probe)

    def detach(self) -> None:
        """The MIDI system went away: drop the dead client (uses of the port do nothing until reattach)."""
        with self.lock:
            old, self.handle, self.connected_to = self.handle, None, None
        if old is not None:
            _delete(old)
        self._close_probe()  # its client died with the MIDI system too

    def reattach(self) -> None:
        """A new client and port on the MIDI system that came back. Made before the lock is taken (tens of ms
        on JACK), swapped in under it."""
        handle, _ = open_midi_client(self.key, self.api)
        try:
            self.configure(handle)
            self._open(handle, required=False)
        except (rtmidi.RtMidiError, MidiError) as error:
            log.debug("MIDI %s port not re-created: %s", self.direction, error)
            _delete(handle)
            raise MidiError(f"{self.direction}: {error}") from error
        with self.lock:
            old, self.handle = self.handle, handle
        if old is not None:
            _delete(old)

    def close(self) -> None:
        with self.lock:
            old, self.handle = self.handle, None
        if old is not None:
            _delete(old)
        self._close_probe()


class MidiOutput:
    """The output port. Every note-on is remembered until its note-off, so nothing is ever left hanging."""

    lookahead_s = 0.0  # sends happen when due (JACK's own backend, bridge/jack_midi.py, takes them ahead)

    def __init__(self, api_name: str, wanted: str | None = None):
        self.port = _Port("out", api_name, wanted)
        self.api = self.port.api
        self.sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> note-ons not yet closed
        self.channels_sounded: set[int] = set()  # channels with a note-on since the last all_notes_off
        self.pace_s = DEFAULT_PACE_S  # pause between chunks of a burst: one MIDI-system cycle (set_cycle)
        self.sent = 0
        self.dropped = 0  # messages that found no MIDI system (while it was away)

    def set_cycle(self, seconds: float | None) -> None:
        """The MIDI system's cycle (JACK: buffer size / rate): one and a half, so each chunk of a burst gets a
        cycle of its own even when one starts a little late."""
        self.pace_s = DEFAULT_PACE_S if not seconds else max(MIN_PACE_S, 1.5 * seconds)

    def send(self, message: list[int] | tuple[int, ...]) -> None:
        with self.port.lock:
            handle = self.port.handle
            if handle is None:
                self.dropped += 1
                return
            track_note(self.sounding, self.channels_sounded, message)
            handle.send_message(message)
            self.sent += 1

    def note_on(self, channel: int, pitch: int, velocity: int) -> None:
        self.send((0x90 | channel, pitch, velocity))

    def note_off(self, channel: int, pitch: int) -> None:
        self.send((0x80 | channel, pitch, 0))

    def _send_paced(self, messages: list[tuple[int, ...]]) -> None:
        """Send a burst in chunks of PACE_MESSAGES, pace_s apart (the lock is held throughout: nothing may
        sound in between)."""
        for start in range(0, len(messages), PACE_MESSAGES):
            if start:
                time.sleep(self.pace_s)
            for message in messages[start:start + PACE_MESSAGES]:
                self.send(message)

    def all_notes_off(self, channels: tuple[int, ...] = ()) -> int:
        """Note-off for every sounding note, then CC 123 on `channels` and on every channel that sounded since
        the last call; returns the number of notes closed."""
        with self.port.lock:
            if self.port.handle is None:  # the MIDI system is away: they stay sounding until it is back
                return 0
            offs, controls = closing_messages(self.sounding, self.channels_sounded, channels)
            self._send_paced(offs + controls)
            self.sounding.clear()
            self.channels_sounded.clear()
        return len(offs)

    def panic(self) -> None:
        """All sound off and all notes off on every channel."""
        with self.port.lock:
            self.all_notes_off(tuple(range(16)))
            self._send_paced([(0xB0 | channel, ALL_SOUND_OFF, 0) for channel in range(16)])

    def check(self) -> None:
        self.port.check()

    def detach(self) -> None:
        self.port.detach()

    def reattach(self) -> None:
        self.port.reattach()

    def close(self) -> None:
        self.port.close()


class ArrivalClock:
    """perf_counter() times of arrival from rtmidi's delta times (stamped by the MIDI system, e.g. in JACK's
    process cycle), so a late poll does not blur them.

    The summed deltas run on the MIDI system's clock from an unknown origin; the offset to perf_counter is the
    smallest (poll time − summed deltas) of the last WINDOW_S seconds: a poll never precedes the arrival, and
    one poll in the window made promptly pins it (measured on JACK, 1 ms polls: within 0.04 ms of the smallest
    ever seen). A window, not the smallest ever: a delta the sum never got (rtmidi counts the time of a message
    it dropped — one it was told to ignore, one its full queue refused — into no delta) would otherwise shift
    every later time for good; here it heals within the window. The input therefore ignores nothing in rtmidi
    and drops what it does not use after the time is taken (MidiInput)."""

    WINDOW_S = 2.0

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.elapsed = 0.0
        self.candidates: deque[tuple[float, float]] = deque()  # (poll time, offset), offsets increasing

    def arrival(self, delta: float, polled: float) -> float:
        self.elapsed += delta
        offset = polled - self.elapsed
        while self.candidates and self.candidates[-1][1] >= offset:  # a sliding-window minimum
            self.candidates.pop()
        self.candidates.append((polled, offset))
        while self.candidates[0][0] < polled - self.WINDOW_S:
            self.candidates.popleft()
        return self.candidates[0][1] + self.elapsed


SYSEX_START, SYSEX_END, ACTIVE_SENSING = 0xF0, 0xF7, 0xFE


def unused_input(message: list[int]) -> bool:
    """Input the daemon has no use for: system exclusive (or a piece of one: no status byte first) and active
    sensing."""
    return not message or message[0] in (SYSEX_START, SYSEX_END, ACTIVE_SENSING) or message[0] < 0x80


class MidiInput:
    """The input port, polled on its own thread; `on_message(message, arrival_time)` runs there.

    Polling, not rtmidi's callback: a callback runs Python (and waits for the GIL) inside the MIDI system's
    real-time thread; under JACK that makes cycles late and messages get lost.

    rtmidi is told to ignore nothing: its delta times count from the last message it received, ignored or not,
    so an ignored message's time was lost to the sum (answers drifted earlier with every Active Sensing a
    keyboard sends). Unused messages are dropped here, after their delta is counted (`ignored`).
    """

    POLL_SECONDS = 0.001

    def __init__(self, api_name: str, wanted: str | None, on_message: Callable[[list[int], float], None],
                 realtime: bool = False):
        self.realtime = realtime
        # timing = MIDI clock, which we need
        self.port = _Port("in", api_name, wanted,
                          configure=lambda handle: handle.ignore_types(sysex=False, timing=False, active_sense=False))
        self.api = self.port.api
        self.on_message = on_message
        self.clock = ArrivalClock()
        self.received = 0  # messages handed to on_message
        self.ignored = 0  # messages dropped as unused (sysex, active sensing)
        self.running = True
        self.thread = threading.Thread(target=self._poll, name="midi-in", daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        if self.realtime:
            priority.become_realtime(priority.IO_AND_WORK, "midi-in")
        while self.running:
            with self.port.lock:  # the handle is swapped while the MIDI system comes and goes
                handle = self.port.handle
                event = handle.get_message() if handle is not None else None
            if event is None:
                time.sleep(self.POLL_SECONDS)
                continue
            t = self.clock.arrival(event[1], time.perf_counter())
            if unused_input(event[0]):
                self.ignored += 1
                continue
            self.received += 1
            try:
                self.on_message(event[0], t)
            except Exception:  # input handling must never die; the message is lost, the daemon goes on
                log.exception("error while handling MIDI input %s", event[0])

    def check(self) -> None:
        before = self.port.connected_to
        self.port.check()
        if self.port.connected_to != before:
            self.clock.reset()  # a reopened port starts its delta times afresh

    def detach(self) -> None:
        self.port.detach()

    def reattach(self) -> None:
        self.port.reattach()
        self.clock.reset()  # a new client starts its delta times afresh

    def stop(self) -> None:
        self.running = False
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=1)

    def close(self) -> None:
        self.stop()
        self.port.close()


def open_ports(api: str, midi_in: str | None, midi_out: str | None, on_message: Callable[[list[int], float], None],
               realtime: bool = False) -> tuple[MidiOutput | None, MidiInput | None, str]:
    """(output, input, what was opened). On JACK, JACK's own clients (bridge/jack_midi.py: frame-accurate both
    ways), with the same surface; elsewhere python-rtmidi's. With api "auto", no port names and no MIDI system
    at all, it is (None, None, why and how to enable MIDI): the daemon then serves over OSC only."""
    from musicbridge.bridge import jack_midi  # (it builds on this module)

    if jack_midi.selected(api):
        opened = jack_midi.open_ports(api, midi_in, midi_out, on_message, realtime)
        if opened is not None:
            return opened
    output = None
    try:
        output = MidiOutput(api, midi_out)
        midi_input = MidiInput(output.api, midi_in, on_message, realtime)
        return output, midi_input, f"MIDI ({output.api}): in {midi_input.port.name!r}, out {output.port.name!r}"
    except MidiUnavailableError as error:
        close_ports(output)
        if api != "auto" or midi_in or midi_out:
            raise MidiError(str(error)) from error
        return None, None, f"OSC only — {error}"
    except MidiError:
        close_ports(output)
        raise


def close_ports(*ports) -> None:
    for port in ports:
        if port is not None:
            try:
                port.close()
            except Exception:
                log.exception("closing a MIDI port")
