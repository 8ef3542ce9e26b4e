"""MIDI in and out on python-rtmidi: API choice, virtual or named ports, reconnection, and no hanging notes.

The output remembers every note it has turned on, so all_notes_off() can close each one explicitly
(receivers that ignore CC 123 still get their note-offs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import rtmidi

from musicbridge.bridge import priority
from musicbridge.midi_ports import MidiUnavailableError, find_port, open_client

log = logging.getLogger(__name__)

IN_PORT_NAME = "musicbridge in"
OUT_PORT_NAME = "musicbridge out"
# rtmidi opens a MIDI client of its own for every MidiIn/MidiOut and cannot put two ports under one, so the two
# ports cannot both sit under a JACK client "musicbridge" (JACK would rename the second "musicbridge-01"). Each
# client takes its port's name instead: JACK and ALSA list "musicbridge in:musicbridge in" and
# "musicbridge out:musicbridge out", CoreMIDI shows the port names alone.
CLIENT_NAMES = {"in": IN_PORT_NAME, "out": OUT_PORT_NAME}
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


class _Port:
    """One rtmidi port, virtual or connected to an existing port by substring (and reconnected when it returns)."""

    def __init__(self, handle, wanted: str | None, virtual_name: str, direction: str):
        self.handle = handle
        self.wanted = wanted
        self.direction = direction
        self.connected_to: str | None = None
        self.lock = threading.RLock()  # rtmidi objects are not thread-safe
        if wanted is None:
            try:
                handle.open_virtual_port(virtual_name)
            except (NotImplementedError, rtmidi.RtMidiError) as error:
                raise MidiError(f"cannot create the virtual port {virtual_name!r} ({error}). {WINDOWS_HELP}") from error
            self.name = virtual_name
        else:
            try:
                index = find_port(handle.get_ports(), wanted)
            except MidiUnavailableError as error:
                raise MidiError(f"{direction}: {error}") from error
            self.connected_to = handle.get_ports()[index]
            handle.open_port(index, virtual_name)
            self.name = self.connected_to

    def check(self) -> None:
        """Reconnect a named port whose peer went away and came back (virtual ports need nothing)."""
        if self.wanted is None:
            return
        with self.lock:
            ports = self.handle.get_ports()
            if self.connected_to in ports:
                return
            matches = [p for p in ports if self.wanted.lower() in p.lower()]
            if self.connected_to is not None:
                log.warning("MIDI %s port %r went away; waiting for it to return", self.direction, self.connected_to)
                self.connected_to = None
                self.handle.close_port()
            if matches:
                self.handle.open_port(ports.index(matches[0]))
                self.connected_to = self.name = matches[0]
                log.warning("MIDI %s port %r is back; reconnected", self.direction, matches[0])

    def close(self) -> None:
        with self.lock:
            self.handle.close_port()
            self.handle.delete()


class MidiOutput:
    """The output port. Every note-on is remembered until its note-off, so nothing is ever left hanging."""

    def __init__(self, api_name: str, wanted: str | None = None):
        handle, self.api = open_midi_client("out", api_name)
        self.port = _Port(handle, wanted, OUT_PORT_NAME, "output")
        self.sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> note-ons not yet closed
        self.sent = 0

    def send(self, message: list[int] | tuple[int, ...]) -> None:
        status = message[0] & 0xF0
        key = (message[0] & 0x0F, message[1]) if status in (0x80, 0x90) else None
        with self.port.lock:
            if key is not None:
                if status == 0x90 and message[2] > 0:
                    self.sounding[key] = self.sounding.get(key, 0) + 1
                elif key in self.sounding:
                    self.sounding[key] -= 1
                    if self.sounding[key] <= 0:
                        del self.sounding[key]
            self.port.handle.send_message(message)
            self.sent += 1

    def note_on(self, channel: int, pitch: int, velocity: int) -> None:
        self.send((0x90 | channel, pitch, velocity))

    def note_off(self, channel: int, pitch: int) -> None:
        self.send((0x80 | channel, pitch, 0))

    def all_notes_off(self, channels: tuple[int, ...] = ()) -> int:
        """Note-off for every sounding note, then CC 123 on `channels`; returns the number of notes closed."""
        with self.port.lock:
            closed = 0
            for (channel, pitch), count in list(self.sounding.items()):
                for _ in range(count):
                    self.note_off(channel, pitch)
                    closed += 1
            self.sounding.clear()
            for channel in channels:
                self.port.handle.send_message((0xB0 | channel, 123, 0))
        return closed

    def panic(self) -> None:
        """All sound off and all notes off on every channel."""
        self.all_notes_off(tuple(range(16)))
        with self.port.lock:
            for channel in range(16):
                self.port.handle.send_message((0xB0 | channel, 120, 0))

    def check(self) -> None:
        self.port.check()

    def close(self) -> None:
        self.port.close()


class ArrivalClock:
    """perf_counter() times of arrival from rtmidi's delta times (stamped by the MIDI system, e.g. in JACK's
    process cycle), so a late poll does not blur them. The offset between the two clocks is the smallest
    (poll time − summed deltas) seen: a poll never precedes the arrival. Both are CLOCK_MONOTONIC on Linux."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.elapsed = 0.0
        self.offset = float("inf")

    def arrival(self, delta: float, polled: float) -> float:
        self.elapsed += delta
        self.offset = min(self.offset, polled - self.elapsed)
        return self.offset + self.elapsed


class MidiInput:
    """The input port, polled on its own thread; `on_message(message, arrival_time)` runs there.

    Polling, not rtmidi's callback: a callback runs Python (and waits for the GIL) inside the MIDI system's
    real-time thread; under JACK that makes cycles late and messages get lost.
    """

    POLL_SECONDS = 0.001

    def __init__(self, api_name: str, wanted: str | None, on_message: Callable[[list[int], float], None],
                 realtime: bool = False):
        handle, self.api = open_midi_client("in", api_name)
        self.realtime = realtime
        handle.ignore_types(sysex=True, timing=False, active_sense=True)  # timing = MIDI clock, which we need
        self.port = _Port(handle, wanted, IN_PORT_NAME, "input")
        self.on_message = on_message
        self.clock = ArrivalClock()
        self.received = 0
        self.running = True
        self.thread = threading.Thread(target=self._poll, name="midi-in", daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        if self.realtime:
            priority.become_realtime(priority.IO_AND_WORK, "midi-in")
        handle = self.port.handle
        while self.running:
            with self.port.lock:
                event = handle.get_message()
            if event is None:
                time.sleep(self.POLL_SECONDS)
                continue
            self.received += 1
            t = self.clock.arrival(event[1], time.perf_counter())
            try:
                self.on_message(event[0], t)
            except Exception:  # input handling must never die; the message is lost, the daemon goes on
                log.exception("error while handling MIDI input %s", event[0])

    def check(self) -> None:
        before = self.port.connected_to
        self.port.check()
        if self.port.connected_to != before:
            self.clock.reset()  # a reopened port starts its delta times afresh

    def stop(self) -> None:
        self.running = False
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=1)

    def close(self) -> None:
        self.stop()
        self.port.close()


def open_ports(api: str, midi_in: str | None, midi_out: str | None, on_message: Callable[[list[int], float], None],
               realtime: bool = False) -> tuple[MidiOutput | None, MidiInput | None, str]:
    """(output, input, what was opened). With api "auto", no port names and no MIDI system at all, it is
    (None, None, why and how to enable MIDI): the daemon then serves over OSC only."""
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
