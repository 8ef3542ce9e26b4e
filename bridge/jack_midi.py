"""MIDI in and out on JACK itself (JACK-Client): every event at its exact frame, both ways.

Why not python-rtmidi on JACK: its output writes what it was given at offset 0 of the next process cycle, so an
answer's timing was our scheduler thread's wake-up plus a whole period's quantisation (measured against
jack_midi_clock: jitter p99 1.3–9.3 ms at 48 kHz / 64 frames); its input stamps a message with the time its
process callback ran, not the event's frame, and hands over only deltas. Here:
- Output: the scheduler hands each event over `lookahead_s` before it is due, with its due time (perf_counter
  seconds), while it follows a MIDI clock (bridge/scheduler.py says why only then); the process callback of the
  cycle it falls in writes it at its frame there (FrameClock, below) — one handed over late too, while that
  cycle has not begun; an event already late goes at offset 0. Handed-over events stay cancellable until written
  (cancel(), and all_notes_off()/panic() take back every scheduled one first), so a newer phrase's cut and every
  stop path hold as with immediate sends.
- Input: each event's time is the time of its own frame (the cycle's first frame + its offset), so a MIDI
  clock's ticks carry the frames their sender wrote them at, whatever else arrives with them.

Both ports sit under one JACK client (_JackClient): one process callback a cycle. It runs Python on JACK's
thread, so it does little: no lock another thread holds, no wait.
Senders append to a deque the callback drains (deque appends and pops are atomic under the GIL); an event handed
over sits in `unwritten` until one side claims it with dict.pop, itself atomic: either the callback writes it or
cancel() takes it back, never both. Every libjack call from Python (JACK-Client is cffi) lets go of the GIL while
it waits; python-rtmidi's do not: an rtmidi JACK client opened in a process whose JACK-Client callbacks run waits
for the server holding the GIL, while a --sync server waits for those callbacks, which wait for the GIL (seen:
a hang). So a process uses one or the other on JACK, never both at once (tests with rtmidi peers run this
backend in another process: the daemon).

Time: the rest of the daemon runs on perf_counter (CLOCK_MONOTONIC), and frames are placed on it by FrameClock,
learnt from the process cycles themselves — not by libjack's own mapping (jack_frames_to_time /
jack_time_to_frames, which JACK-Client 0.5.5 does not bind anyway). Measured on jackd2 1.9.21 (dummy driver, the
tests' and benchmarks' rig): its clock is CLOCK_MONOTONIC_RAW, not CLOCK_MONOTONIC (145 ms apart after 6 h up,
drifting apart at NTP's slew rate); and its DLL placed frames seconds away from their cycles for seconds after
clients joined, and 10–20 ms behind them on a busy machine.

The ports are "musicbridge:musicbridge in" and "musicbridge:musicbridge out", each with the name it has on the
rtmidi path as alias ("musicbridge in:musicbridge in", "musicbridge out:musicbridge out": jack_connect and saved
connections find them by it); named ports (--midi-in/--midi-out) are connected by substring and reconnected when
they come back, and a JACK server that goes away is handled as there (bridge/jack_watch.py tells; detach,
reattach).
MUSICBRIDGE_JACK_MIDI=rtmidi in the environment keeps JACK on python-rtmidi (a comparison, a fallback).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from musicbridge.bridge import priority
from musicbridge.bridge.clock import Timebase
from musicbridge.bridge.midi_io import (
    ALL_SOUND_OFF,
    CLIENT_NAMES,
    IN_PORT_NAME,
    OUT_PORT_NAME,
    PACE_MESSAGES,
    MidiError,
    closing_messages,
    track_note,
    unused_input,
)
from musicbridge.midi_ports import (
    MidiUnavailableError,
    _preference,
    enable_hint,
    find_port,
    port_matches,
    quiet_stderr,
)

try:
    import jack
except (ImportError, OSError) as _missing:  # OSError: JACK-Client is there but no libjack on this machine
    jack = None
    UNAVAILABLE = str(_missing)
else:
    UNAVAILABLE = ""

log = logging.getLogger(__name__)

BACKEND_ENV = "MUSICBRIDGE_JACK_MIDI"  # "rtmidi": JACK through python-rtmidi, as before this backend
CLIENT_NAME = "musicbridge"  # the one JACK client both ports sit under (_JackClient)
PORT_NAMES = {"in": IN_PORT_NAME, "out": OUT_PORT_NAME}
# lookahead_s = HANDOVER_PERIODS · period + LATE_WAKE_S. An event handed over (while the scheduler follows a MIDI
# clock) must be here before the process callback of the cycle it falls in runs, up to a period before it is due;
# and the scheduler thread wakes late on a busy machine (it stays below JACK's threads, at normal priority when
# jackd is not real-time). Measured with 3 ms (2 periods at 48 kHz / 64 frames) on 2 busy cores: the daemon's
# timing error p99 ~3 ms, i.e. wakes ~5–6 ms late at p99. One handed over later still lands on its frame while
# its cycle is ahead; only one whose cycle has begun is written late (at the next cycle's start, late_written).
# The cost: while following a MIDI clock an answer's deadline is this much earlier (bridge/scheduler.py).
HANDOVER_PERIODS = 1
LATE_WAKE_S = 0.006
LINE_WAIT_S = 1.0  # a new client: how long to wait for the first cycles that place the frames
CLOSE_WAIT_S = 0.5  # close(): how long to wait for the closing note-offs to be written
CLEARED_CYCLES = 2  # a leaving output clears its buffer this many cycles before it goes (nothing read twice)
LEAVE_WAIT_S = 0.1  # ... but waits no longer than this for them (a stalled server)
FRAME_MASK = 0xFFFFFFFF  # jack_nframes_t wraps at 2^32 (a day at 48 kHz)
MAX_QUEUED_INPUT = 65536  # events from the callback not yet handled (~5 s of a 12k messages/s flood)

def selected(api: str) -> bool:
    """Whether MIDI on `api` is this backend's: JACK asked for by name, or "auto" where JACK comes first."""
    if os.environ.get(BACKEND_ENV, "").lower() == "rtmidi":
        return False
    return api == "jack" or (api == "auto" and _preference()[0] == "jack")


def library_path() -> str | None:
    """The libjack this backend's ports use (for bridge/jack_watch.py to watch with the same copy), None when
    JACK MIDI goes through python-rtmidi."""
    return jack._libname if jack is not None and selected("jack") else None


def _frame_diff(a: int, b: int) -> int:
    """a − b for frame counts that wrap at 2^32."""
    diff = (a - b) & FRAME_MASK
    return diff - (1 << 32) if diff >= 1 << 31 else diff


class FrameClock:
    """Where JACK's frames fall on perf_counter's timeline, learnt from the process cycles themselves.

    A cycle's callback never runs before the cycle's first frame is due, so the earliest callbacks (the lower
    envelope of callback time − frame / rate) say where the frames lie. A line is fitted through the earliest
    callback of each BLOCK_S of the last BLOCKS blocks: its slope follows a driver whose frames run slower or
    faster than the system clock (JACK's dummy driver restarts its schedule after every late cycle: measured
    0.7–2.4 % slow on 2 busy cores, in steps of 10–20 ms; a sound card's crystal: ppm) — once the blocks span
    FIT_SPAN_S (a slope from less is mostly noise) and within MAX_SLOPE — and it is lowered under the earliest
    callbacks of the last RECENT_BLOCKS, so a frame is not placed later than a cycle has lately been seen to
    come (events are handed over in time). That is `line`: where the frames are on the system clock, for due
    times on it (an internal, OSC or Link clock).
    `smooth` is the same line lowered under the earliest callbacks of the last SMOOTH_BLOCKS instead, except
    where cycles come later than it placed them (the dummy driver's steps: a late cycle or a few): there it
    rises by RISE_S and RISE_SHARE of the gap a block, so a MIDI clock's ticks, stamped with it, show a small
    step as a brief change of tempo, not a jump the clock follower lags behind; beyond JUMP_S (a stall) it
    follows at once. Input is stamped with `smooth`, and notes due on a MIDI clock followed from that input in
    wall-clock time are placed with it: the same line both ways. Followed in frames instead (JackTimebase,
    Clock.offer_timebase), its ticks are fitted on their frames and its notes placed on frames.
    Measured: with one line that jumped, answers 3.7 ms early after steps (bench-clock, p99); one that only
    rose slowly fell tens of ms behind the system clock on a busy machine (an internal clock's answers with it,
    and MIDI input behind OSC input); with one that rose at half the gap a block up to 3 ms, an internal
    clock's answers drifted by 2–4 ms in 12 s against the system clock.

    The process callbacks only append (frame, time) to `cycles`; update() — the senders, the input's poller —
    drains it and fits, under `lock`, which no callback takes; `line` and `smooth` are tuples, swapped whole.
    """

    BLOCK_S = 0.1
    BLOCKS = 100  # the slope's window: 10 s (a driver's step inside it tilts the slope by step / window)
    RECENT_BLOCKS = 1  # lowered under the earliest callbacks of the last block and the open one: a driver
    # falling behind at a steady rate leaves the line behind by rate × the span looked at (3 blocks: 10 ms at 3 %)
    SMOOTH_BLOCKS = 5  # smooth: lowered under the earliest callbacks of the last 0.5 s: a block without an
    # early callback (a MIDI flood) does not lift it (input stamped later than it came misorders it), and a
    # stall reaches it within 0.5 s (with 2 s, a running MIDI clock was taken for silent after stalls)
    RISE_S, RISE_SHARE = 0.0002, 0.3  # smooth: a block's rise at most: this, and this share of the gap
    JUMP_S = 0.004  # smooth: further behind than this, it follows at once (MIDI and OSC input stay in order)
    FIT_SPAN_S = 2.0
    MAX_SLOPE = 0.05  # frames that run further off their nominal rate than this are not believed (measured: 3 %)
    RESET_S = 1.0  # a callback this far off the line: a new server (frames from 0) or a stall — start afresh

    def __init__(self):
        self.cycles: deque[tuple[int, float]] = deque(maxlen=8192)  # (raw frame, perf_counter) of each cycle
        self.lock = threading.Lock()
        self.line: tuple[int, float, float] | None = None  # (frame, its time, seconds per frame)
        self.smooth: tuple[int, float, float] | None = None  # the same, for input and MIDI-clock time
        self.rate = 0
        self.generation = 0  # counts the times the frames were learnt afresh (reset, a jump)
        self.reset()

    def reset(self, rate: int | None = None) -> None:
        with self.lock:
            self.generation += 1  # frames from here on may not continue the old ones (JackTimebase)
            self.rate = rate or self.rate
            self.cycles.clear()
            self.line = self.smooth = None
            self.last_frame: int | None = None  # unwrapped
            self.blocks: deque[tuple[int, float]] = deque(maxlen=self.BLOCKS)  # (frame, earliest x) per block
            self.block: tuple[float, int, float] | None = None  # (started, frame, earliest x) of the open block
            self.seen = float("-inf")  # when the last cycle was taken in

    def observe(self, raw_frame: int, now: float) -> None:
        """A cycle began at `raw_frame`; its callback runs at `now` (called first thing in a process callback)."""
        self.cycles.append((raw_frame, now))

    def stale(self) -> bool:
        """No cycle taken in lately (no client of ours running): what it learnt may no longer hold."""
        return self.line is None or time.perf_counter() - self.seen > self.BLOCK_S

    # The callbacks take `line` once per cycle and use these with it: update() may swap it meanwhile.
    def unwrap(self, raw_frame: int, line: tuple[int, float, float] | None = None) -> int:
        """A 32-bit frame count as the unwrapped frame nearest the line's."""
        line = line or self.line
        base = line[0] if line is not None else (self.last_frame or 0)
        return base + _frame_diff(raw_frame, base & FRAME_MASK)

    def time_of(self, frame: int, line: tuple[int, float, float] | None = None) -> float:
        origin, at, per_frame = line or self.line
        return at + (frame - origin) * per_frame

    def frame_at(self, seconds: float, line: tuple[int, float, float] | None = None) -> int:
        origin, at, per_frame = line or self.line
        return origin + round((seconds - at) / per_frame)

    def update(self) -> bool:
        """Take in the cycles seen since the last call; False while no line can be drawn yet."""
        with self.lock:
            if not self.cycles or not self.rate:
                return self.line is not None
            changed = False
            while self.cycles:
                raw, now = self.cycles.popleft()
                frame = self.unwrap(raw) if self.line is not None or self.last_frame is not None else raw
                self.seen = now
                if self.line is not None and abs(now - self.time_of(frame)) > self.RESET_S:
                    log.debug("JACK frame clock: a jump of %.3f s; learning it afresh", now - self.time_of(frame))
                    self.blocks.clear()
                    self.block, frame = None, raw
                    self.generation += 1
                self.last_frame = frame
                x = now - frame / self.rate
                if self.block is None or now - self.block[0] >= self.BLOCK_S:
                    if self.block is not None:
                        self.blocks.append(self.block[1:])
                    self.block = (now, frame, x)
                    changed = True
                elif x < self.block[2]:
                    self.block = (self.block[0], frame, x)
                    changed = True
                if self.line is None or not self.blocks:
                    self._fit()  # (a fresh start: placed from the first cycle on)
            if changed:
                self._fit()
            return True

    def _fit(self) -> None:
        points = [*self.blocks, self.block[1:]]
        frames = np.array([p[0] for p in points], dtype=np.float64)
        xs = np.array([p[1] for p in points])
        origin = int(frames[-1])
        slope = 0.0  # seconds per frame, beyond 1 / rate
        if np.ptp(frames) >= self.FIT_SPAN_S * self.rate:
            limit = self.MAX_SLOPE / self.rate
            slope = min(limit, max(-limit, float(np.polyfit(frames - origin, xs, 1)[0])))
        below = xs - slope * (frames - origin)  # each point's x carried to `origin` along the slope
        target = origin / self.rate + float(below[-self.RECENT_BLOCKS - 1:].min())
        smooth = origin / self.rate + float(below[-self.SMOOTH_BLOCKS - 1:].min())
        if self.smooth is not None and self.blocks:
            placed = self.time_of(origin, self.smooth)
            behind = smooth - placed  # > 0: the cycles come later than placed (a driver fell behind)
            if 0 < behind <= self.JUMP_S:  # a small step: followed smoothly; a large one at once
                smooth = placed + min(behind, self.RISE_S + self.RISE_SHARE * behind)
        self.line = (origin, target, 1.0 / self.rate + slope)
        self.smooth = (origin, smooth, 1.0 / self.rate + slope)


FRAME_CLOCK = FrameClock()  # one per process: every JACK client of it sees the same server's frames


class JackTimebase(Timebase):
    """JACK's frames as a Clock's time (bridge/clock.py Timebase): x = frame / rate + offset, seconds. A MIDI
    clock followed from the JACK input is fitted on its ticks' own frames — exact, whatever the cycles' wall-clock
    times do — and the notes due on it are placed on the frames it gives (JackMidiOutput.send's clock_time): no
    conversion through wall-clock time on the way. Measured with FrameClock.smooth both ways instead (stamped,
    then placed), on a VM whose dummy driver ran late 100–600 times in 30 s: jitter p99 6–24 ms against
    jack_midi_clock, from the line moving between a tick's stamp and a note's placement.

    Conversions from and to perf_counter go through FrameClock.smooth, the line the input's stamps are made
    with; the input's own stamp converts back to its frame exactly (stamp()). `offset` makes x ≈ perf_counter
    when first used, and is chosen afresh where the frames start over (a new server, a jump: FrameClock's
    generation) so that x goes on without a step.

    The daemon offers it to its Clock beside wall-clock time (Clock.offer_timebase): a clock the JACK graph writes
    is exact in frames; a sender timed by the wall clock whose ticks cross a stalled cycle shifts in frames by the
    stall, and may be regular in wall-clock time instead. The Clock follows the one the ticks are regular in."""

    name = "frames"  # (Clock.timebase_name)

    def __init__(self, frames: FrameClock, now: Callable[[], float] = time.perf_counter):
        self.frames, self.now = frames, now  # now: the system clock (a test's own)
        self.lock = threading.Lock()
        self.current: tuple[tuple[int, float, float], int, float] | None = None  # (line, generation, offset)
        self.stamped = (math.nan, math.nan)  # (perf_counter time, x) of the input's last stamp

    def _now(self) -> tuple[tuple[int, float, float], float] | None:
        """(line, offset) to convert with: the frame clock's, the last one while it has none (a server away)."""
        line, generation, rate = self.frames.smooth, self.frames.generation, self.frames.rate
        with self.lock:
            current = self.current
            if line is None or not rate:
                return None if current is None else (current[0], current[2])
            if current is None or current[1] != generation:  # the frames start over: x goes on from here
                t = self.now()
                x = t if current is None else self._x(t, current[0], current[2])
                offset = x - self._frame(t, line) / rate
                self.current = (line, generation, offset)
            elif current[0] is not line:
                self.current = (line, generation, current[2])
            return self.current[0], self.current[2]

    def _frame(self, t: float, line: tuple[int, float, float]) -> float:
        origin, at, per_frame = line
        return origin + (t - at) / per_frame

    def _x(self, t: float, line: tuple[int, float, float], offset: float) -> float:
        return self._frame(t, line) / self.frames.rate + offset

    def inward(self, t: float) -> float:
        stamp_t, stamp_x = self.stamped
        if t == stamp_t:  # the input's stamp: its frame exactly
            return stamp_x
        state = self._now()
        return t if state is None else self._x(t, *state)

    def outward(self, x: float) -> float:
        state = self._now()
        if state is None:
            return x
        line, offset = state
        return self.frames.time_of((x - offset) * self.frames.rate, line)

    def pace(self) -> float:
        state = self._now()
        return 1.0 if state is None else 1.0 / (self.frames.rate * state[0][2])

    def stamp(self, frame: int, line: tuple[int, float, float], not_before: float = -math.inf) -> float:
        """The perf_counter time of an input event's (unwrapped) frame by `line` (not before `not_before`),
        remembered with the frame's x, so that inward() of that time gives the frame back exactly."""
        at = max(self.frames.time_of(frame, line), not_before)
        state = self._now()
        if state is not None:
            self.stamped = (at, frame / self.frames.rate + state[1])
        return at

    def frame_of(self, x: float) -> int | None:
        """The (unwrapped) frame of x; None before the first cycle."""
        state = self._now()
        return None if state is None else round((x - state[1]) * self.frames.rate)


JACK_TIMEBASE = JackTimebase(FRAME_CLOCK)  # the Clock's time when MIDI runs on JACK (daemon: set_timebase)


class _JackClient:
    """The daemon's one JACK client, both ports under it ("musicbridge:musicbridge in", "musicbridge:musicbridge
    out"): JACK runs one process callback a cycle for both directions — one thread woken and the GIL taken once
    a cycle (a client per port: twice, on a busy machine each a chance to come late) — and the frame clock
    learns from one stream of cycles, the one that stamps the input and places the output.

    Each port joins it (the first opens the client) and leaves it (the last closes it). Every port carries as
    alias the name it had with a client of its own ("musicbridge in:musicbridge in", as on the rtmidi path), so a
    connection saved by that name still connects. A server that goes away takes both ports: drop() closes the
    dead client, and each port joins a new one when the server is back (reattach). `parts` is what the callback
    runs, a dict swapped whole, never changed; only the housekeeping thread (open_ports, check, detach,
    reattach, close) swaps it and `client`."""

    def __init__(self):
        self.client = None
        self.parts: dict[str, tuple] = {}  # direction -> (own port, process(frames, first frame, own port))
        self.cycles = 0  # process callbacks run (the callback's own count; others only read it)

    def own(self, key: str):
        """The port of direction `key`, None while it has not joined (or the server is away)."""
        part = self.parts.get(key)
        return part[0] if part is not None else None

    def join(self, key: str, process: Callable, quiet: bool = False):
        """Register the port of direction `key` (on a new client when there is none); returns it."""
        if key in self.parts:
            return self.parts[key][0]
        if self.client is None:
            self._open(quiet)
        client = self.client
        try:
            ports = client.midi_inports if key == "in" else client.midi_outports
            own = ports.register(PORT_NAMES[key])
        except Exception:
            if not self.parts:
                self.drop()
            raise
        renamed = client.name[len(CLIENT_NAME):]  # "-01" where another daemon holds the name: as JACK renames
        try:
            own.set_alias(f"{CLIENT_NAMES[key]}{renamed}:{PORT_NAMES[key]}")
        except jack.JackError:
            log.debug("no alias for the JACK port %s", own.name, exc_info=True)
        self.parts = {**self.parts, key: (own, process)}
        return own

    def leave(self, key: str) -> None:
        """The port of direction `key` goes; with the last one, the client."""
        part = self.parts.get(key)
        if part is None:
            return
        if key == "out" and self.client is not None:
            # A port's buffer keeps what was written into it until someone clears it, and the port stays connected
            # until it is unregistered or the client deactivated: a few cycles in which the peer would read the
            # last events (the closing note-offs) again, once a cycle. So the callback clears it until then.
            self.parts = {**self.parts, key: (part[0], _write_nothing)}
            self._wait_cycles(CLEARED_CYCLES)
        self.parts = {k: p for k, p in self.parts.items() if k != key}
        if not self.parts:
            self.drop()
            return
        try:
            part[0].unregister()
        except Exception:  # a server that died meanwhile: the port went with it
            log.debug("unregistering a JACK port", exc_info=True)

    def _wait_cycles(self, count: int) -> None:
        """Until the callback has run `count` more cycles (a server that stalls: at most LEAVE_WAIT_S)."""
        target, deadline = self.cycles + count, time.monotonic() + LEAVE_WAIT_S
        while self.cycles < target and time.monotonic() < deadline:
            time.sleep(0.001)

    def drop(self) -> None:
        """Close the client, both ports with it (the server went away: they are dead anyway)."""
        client, self.client, self.parts = self.client, None, {}
        if client is not None:
            _close(client)

    def _open(self, quiet: bool) -> None:
        try:
            with quiet_stderr(quiet):
                client = jack.Client(CLIENT_NAME, no_start_server=True)
        except jack.JackOpenError as error:
            why = "the JACK server is not running" if error.status.server_failed else str(error.status)
            raise MidiUnavailableError(f"MIDI API 'jack' cannot be opened (jack: {why}). To enable MIDI: "
                                       f"{enable_hint()}") from error
        try:
            if client.samplerate != FRAME_CLOCK.rate or FRAME_CLOCK.stale():
                FRAME_CLOCK.reset(client.samplerate)
            client.set_process_callback(lambda frames: self._process(frames, client))
            client.activate()
        except Exception:
            client.close()
            raise
        self.client = client
        deadline = time.monotonic() + LINE_WAIT_S
        while not FRAME_CLOCK.update() and time.monotonic() < deadline:  # the first cycles place the frames
            time.sleep(0.002)

    def _process(self, frames: int, client) -> None:
        """JACK's thread, once a cycle: the cycle for the frame clock, then each port's part."""
        try:
            now = time.perf_counter()
            start = client.last_frame_time
            FRAME_CLOCK.observe(start, now)
        except Exception:  # an exception would end the callbacks for good: both ports would go silent
            log.exception("JACK MIDI cycle")
            return
        for own, process in self.parts.values():
            process(frames, start, own)  # (each catches its own exceptions)
        self.cycles += 1


class _JackPort:
    """One MIDI port of the daemon's JACK client, virtual or connected to an existing port by substring, like
    midi_io._Port: `client` is None while the server is away (detach), reattach() joins the port to a new
    client. `process` (frames, the cycle's first frame, own port) is the owner's part of the process callback.
    Only the housekeeping thread changes the client (detach, reattach, close), so it reads it freely; nothing
    here locks what the callback needs."""

    def __init__(self, direction: str, wanted: str | None, process: Callable, shared: _JackClient,
                 quiet: bool = False):
        self.key = direction
        self.direction = "input" if direction == "in" else "output"
        self.wanted = wanted
        self.virtual_name = PORT_NAMES[direction]
        self.name = self.virtual_name if wanted is None else wanted
        self.connected_to: str | None = None
        self.api = "jack"
        self.process = process
        self.shared = shared
        self._open(required=True, quiet=quiet)

    @property
    def own(self):
        return self.shared.own(self.key)

    @property
    def client(self):
        """The JACK client while this port is on it, else None."""
        return self.shared.client if self.key in self.shared.parts else None

    def _open(self, required: bool, quiet: bool = False) -> None:
        self.shared.join(self.key, self.process, quiet)
        try:
            self._connect(required)
        except Exception:
            self.shared.leave(self.key)
            raise

    def _peers(self, client) -> list[str]:
        """The ports this one can connect to: other clients' MIDI inputs for the output, outputs for the input."""
        found = client.get_ports(is_midi=True, is_input=self.key == "out", is_output=self.key == "in")
        return [port.name for port in found]

    def _connect(self, required: bool) -> None:
        """Connect the named port; one that is not there yet is an error at startup (required) and waited for
        after a reconnect (check() connects it when it appears)."""
        if self.wanted is None:
            return
        peers = self._peers(self.client)
        try:
            target = peers[find_port(peers, self.wanted)]
        except MidiUnavailableError as error:
            if required:
                raise MidiError(f"{self.direction}: {error}") from error
            self.connected_to = None
            log.warning("MIDI %s port %r is not there yet; waiting for it", self.direction, self.wanted)
            return
        self._link(target)

    def _link(self, target: str) -> None:
        if self.key == "out":
            self.client.connect(self.own, target)
        else:
            self.client.connect(target, self.own)
        self.connected_to = self.name = target

    def check(self) -> None:
        """Reconnect a named port whose peer went away and came back (JACK itself drops the connection)."""
        client = self.client
        if self.wanted is None or client is None:
            return
        peers = self._peers(client)
        if self.connected_to in peers:
            return
        if self.connected_to is not None:
            log.warning("MIDI %s port %r went away; waiting for it to return", self.direction, self.connected_to)
            self.connected_to = None
        matches = [p for p in peers if port_matches(p, self.wanted)]
        if matches:
            self._link(matches[0])
            log.warning("MIDI %s port %r is back; reconnected", self.direction, matches[0])

    def detach(self) -> None:
        """The server went away: drop the dead client — the other port's too, dead as well (its own detach then
        finds nothing left to do)."""
        self.connected_to = None
        self.shared.drop()

    def reattach(self) -> None:
        """This port on a new client of the server that came back (the first port to come back makes it; its
        frames count from 0 again: the frame clock, stale since, learns them afresh)."""
        try:
            self._open(required=False)
        except (MidiUnavailableError, jack.JackError) as error:
            log.debug("MIDI %s port not re-created: %s", self.direction, error)
            raise MidiError(f"{self.direction}: {error}") from error

    def close(self) -> None:
        self.connected_to = None
        self.shared.leave(self.key)


def _write_nothing(frames: int, start: int, own) -> None:
    """A leaving output's part of the callback: an empty buffer each cycle."""
    try:
        own.clear_buffer()
    except Exception:  # an exception would end the callbacks for good: the other port would go silent
        log.exception("JACK MIDI output cycle")


def _close(client) -> None:
    """Close a JACK client; one whose server died may complain, and that changes nothing."""
    try:
        client.deactivate()
        client.close()
    except Exception:
        log.debug("closing a JACK client", exc_info=True)


class _Event:
    """One message handed to the output: its bytes, its due time (perf_counter seconds; None: as soon as
    possible), the frame it falls on (given by the sender, else set by the callback when it first sees it) and
    what it did to the sounding-note bookkeeping."""

    __slots__ = ("ticket", "data", "at", "on_input_time", "frame", "key", "effect", "timed_note_on")

    def __init__(self, ticket: int, data: bytes, at: float | None, on_input_time: bool, frame: int | None,
                 key: tuple[int, int] | None, effect: int):
        self.ticket, self.data, self.at, self.on_input_time, self.frame = ticket, data, at, on_input_time, frame
        self.key, self.effect = key, effect
        self.timed_note_on = at is not None and effect > 0


class JackMidiOutput:
    """The output port on JACK, with midi_io.MidiOutput's surface plus timed sends: send(message, at=seconds)
    returns a ticket, cancel(ticket) takes the event back while it is not written. Every note-on is remembered
    until its note-off, so nothing is left hanging; close() sends the note-offs of what still sounds. `client`:
    the JACK client to sit under (open_ports: the input's too), else one of its own."""

    def __init__(self, wanted: str | None = None, quiet: bool = False, client: _JackClient | None = None):
        self.lock = threading.RLock()  # senders among themselves (the bookkeeping); never the process callback's
        self.handed: deque[_Event] = deque()  # senders → callback
        self.unwritten: dict[int, _Event] = {}  # ticket → event, until the callback writes it or cancel() takes it
        self.queue: list[_Event] = []  # the callback's own: events seen, waiting for the cycle they fall in
        self.tickets = itertools.count(1)
        self.sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> note-ons not yet closed
        self.channels_sounded: set[int] = set()
        self.errors: deque[float] = deque(maxlen=200_000)  # timed note-ons: time written − due time, seconds
        self.sent = 0  # messages handed over (and not taken back)
        self.dropped = 0  # messages that found no MIDI system (while it was away)
        self.late_written = 0  # timed events written after their frame (handed over too late: at offset 0)
        self.closed = False
        self.lookahead_s = LATE_WAKE_S  # (until the period is known, just below)
        self.port = _JackPort("out", wanted, self._process, client or _JackClient(), quiet)
        self.api = "jack"
        self.timebase = JACK_TIMEBASE  # send()'s clock_time is in it
        self._set_lookahead(self.port.client.blocksize / self.port.client.samplerate)

    # ---- senders ------------------------------------------------------------------------------
    def _set_lookahead(self, period_s: float | None) -> None:
        if period_s:
            self.lookahead_s = HANDOVER_PERIODS * period_s + LATE_WAKE_S

    def set_cycle(self, seconds: float | None) -> None:
        """The server's cycle (buffer size / rate), told by the daemon when the server is (back) up."""
        self._set_lookahead(seconds)

    def send(self, message: list[int] | tuple[int, ...], at: float | None = None,
             clock_time: float | None = None, on_input_time: bool = False) -> int | None:
        """Hand a message over: at `at` (perf_counter seconds) on its frame, or None: in the next cycle;
        `clock_time`: the same moment on JACK_TIMEBASE (a Clock following a MIDI clock in frames:
        Clock.clock_time_at), which gives its frame exactly; `on_input_time`: `at` comes from a MIDI clock
        followed in wall-clock time from this backend's input (placed with the line its ticks were stamped with,
        FrameClock.smooth). Returns its ticket (None when the server is away and the message was dropped)."""
        frame = None
        if at is not None:
            FRAME_CLOCK.update()  # the cycles seen lately place the frame it falls on
            if clock_time is not None:
                frame = JACK_TIMEBASE.frame_of(clock_time)
        with self.lock:
            if self.port.client is None or self.closed:
                self.dropped += 1
                return None
            key, effect = track_note(self.sounding, self.channels_sounded, message)
            event = _Event(next(self.tickets), bytes(message), at, on_input_time, frame, key, effect)
            self.unwritten[event.ticket] = event
            self.handed.append(event)
            self.sent += 1
            return event.ticket

    def note_on(self, channel: int, pitch: int, velocity: int, at: float | None = None,
                clock_time: float | None = None, on_input_time: bool = False) -> int | None:
        return self.send((0x90 | channel, pitch, velocity), at, clock_time, on_input_time)

    def note_off(self, channel: int, pitch: int, at: float | None = None,
                 clock_time: float | None = None, on_input_time: bool = False) -> int | None:
        return self.send((0x80 | channel, pitch, 0), at, clock_time, on_input_time)

    def cancel(self, ticket: int | None) -> bool:
        """Take a handed-over event back; False when it was written already (or there is no such ticket)."""
        if ticket is None:
            return False
        with self.lock:
            event = self.unwritten.pop(ticket, None)
            if event is None:
                return False
            self._undo(event)
            return True

    def _undo(self, event: _Event) -> None:
        """What a taken-back event did to the bookkeeping, undone."""
        self.sent -= 1
        if event.effect > 0 and event.key in self.sounding:
            self.sounding[event.key] -= 1
            if self.sounding[event.key] <= 0:
                del self.sounding[event.key]
        elif event.effect < 0:
            self.sounding[event.key] = self.sounding.get(event.key, 0) + 1

    def _take_back_scheduled(self) -> None:
        """Every timed event not yet written is taken back, the newest first (so the bookkeeping unwinds in
        order); messages sent for "now" (--thru) stay: they were sent already, as far as anyone knows."""
        for ticket in sorted(self.unwritten, reverse=True):
            event = self.unwritten.get(ticket)
            if event is not None and event.at is not None and self.unwritten.pop(ticket, None) is not None:
                self._undo(event)

    def all_notes_off(self, channels: tuple[int, ...] = ()) -> int:
        """Take back every scheduled event, then a note-off for every sounding note and CC 123 on `channels` and
        on every channel that sounded since the last call; returns the number of notes closed. The callback
        writes at most PACE_MESSAGES a cycle, so a receiver gets a large burst in pieces it can take."""
        with self.lock:
            if self.port.client is None or self.closed:  # the server is away: they stay sounding until it is back
                return 0
            self._take_back_scheduled()
            offs, controls = closing_messages(self.sounding, self.channels_sounded, channels)
            for message in offs + controls:
                self.send(message)
            self.sounding.clear()
            self.channels_sounded.clear()
        return len(offs)

    def panic(self) -> None:
        """All sound off and all notes off on every channel."""
        with self.lock:
            self.all_notes_off(tuple(range(16)))
            for channel in range(16):
                self.send((0xB0 | channel, ALL_SOUND_OFF, 0))

    # ---- the process callback (JACK's thread) -------------------------------------------------
    def _process(self, frames: int, start: int, own) -> None:
        try:
            own.clear_buffer()
            queue, handed = self.queue, self.handed
            while handed:
                queue.append(handed.popleft())
            lines = FRAME_CLOCK.line, FRAME_CLOCK.smooth
            if queue:
                self._write_due(frames, FRAME_CLOCK.unwrap(start, lines[0]), own, lines)
        except Exception:  # an exception would end the callbacks for good: the port would go silent
            log.exception("JACK MIDI output cycle")

    def _write_due(self, frames: int, start: int, own, lines) -> None:
        """Write the events that fall in this cycle at their offsets (late ones at 0), in time order, then
        handing-over order; at most PACE_MESSAGES; the rest wait for their cycle. Frames are unwrapped here."""
        due = []
        for event in self.queue:
            if event.frame is None:
                line = lines[event.on_input_time]
                event.frame = FRAME_CLOCK.frame_at(event.at, line) if event.at is not None and line else start
            offset = event.frame - start
            if offset < frames:
                due.append((max(0, offset), event.ticket, event))
        if due:
            due.sort(key=lambda entry: (entry[0], entry[1]))
            written = 0
            for offset, ticket, event in due:
                if written == PACE_MESSAGES:
                    break
                if self.unwritten.pop(ticket, None) is None:
                    continue  # taken back
                try:
                    own.write_midi_event(offset, event.data)
                except jack.JackError:  # the port's buffer is full: the rest in the next cycle
                    self.unwritten[ticket] = event
                    break
                written += 1
                if event.at is not None and start + offset > event.frame:
                    self.late_written += 1
                if event.timed_note_on:
                    self.errors.append((start + offset - event.frame) / FRAME_CLOCK.rate)
        self.queue = [event for event in self.queue if event.ticket in self.unwritten]

    # ---- housekeeping -------------------------------------------------------------------------
    def check(self) -> None:
        self.port.check()

    def _forget_handed(self) -> None:
        """The callback runs no more (no client): what was handed over and not written never will be."""
        with self.lock:
            self._take_back_scheduled()
            self.unwritten.clear()
            self.handed.clear()
            self.queue = []

    def detach(self) -> None:
        self.port.detach()
        self._forget_handed()

    def reattach(self) -> None:
        self.port.reattach()
        self._set_lookahead(self.port.client.blocksize / self.port.client.samplerate)

    def close(self) -> None:
        """Note-offs for whatever still sounds, written before the client goes (idempotent)."""
        with self.lock:
            if self.closed:
                return
            if self.port.client is not None:
                self.all_notes_off()
            self.closed = True
        deadline = time.monotonic() + CLOSE_WAIT_S
        while self.unwritten and self.port.client is not None and time.monotonic() < deadline:
            time.sleep(0.002)
        self.port.close()
        self._forget_handed()


class JackMidiInput:
    """The input port on JACK, with midi_io.MidiInput's surface: `on_message(message, seconds)` runs on the
    poller thread, `seconds` the perf_counter time of the event's own frame (FrameClock.smooth). The process callback
    only queues each event with its frame; the poller drops what the daemon has no use for (sysex, active
    sensing) and hands on the rest. `client`: the JACK client to sit under (open_ports: the output's), else one
    of its own."""

    POLL_SECONDS = 0.001

    def __init__(self, wanted: str | None, on_message: Callable[[list[int], float], None], realtime: bool = False,
                 quiet: bool = False, client: _JackClient | None = None):
        self.realtime = realtime
        self.arrived: deque[tuple[int, bytes]] = deque(maxlen=MAX_QUEUED_INPUT)  # (raw frame, message)
        self.on_message = on_message
        self.received = 0  # messages handed to on_message
        self.ignored = 0  # messages dropped as unused (sysex, active sensing)
        self.last_time = float("-inf")  # the time handed on with the last message (the poller's)
        self.port = _JackPort("in", wanted, self._process, client or _JackClient(), quiet)
        self.api = "jack"
        self.running = True
        self.thread = threading.Thread(target=self._poll, name="midi-in", daemon=True)
        self.thread.start()

    def _process(self, frames: int, start: int, own) -> None:
        try:
            for offset, data in own.incoming_midi_events():
                self.arrived.append(((start + offset) & FRAME_MASK, bytes(data)))
        except Exception:  # an exception would end the callbacks for good: the port would go deaf
            log.exception("JACK MIDI input cycle")

    def _poll(self) -> None:
        if self.realtime:
            priority.become_realtime(priority.IO_AND_WORK, "midi-in")
        while self.running:
            FRAME_CLOCK.update()  # (this thread keeps the frame clock current for the output too)
            try:
                frame, data = self.arrived.popleft()
            except IndexError:
                time.sleep(self.POLL_SECONDS)
                continue
            message = list(data)
            if unused_input(message):
                self.ignored += 1
                continue
            self.received += 1
            try:
                line = FRAME_CLOCK.smooth
                # Never before the message before it: the line may drop between two messages of one cycle (a
                # Start and the note after it, both on one frame), and the note would land before the Start.
                # (A Clock on JACK_TIMEBASE reads the frame itself back from the time: stamp().)
                at = (JACK_TIMEBASE.stamp(FRAME_CLOCK.unwrap(frame, line), line, self.last_time) if line
                      else max(time.perf_counter(), self.last_time))
                self.last_time = at
                self.on_message(message, at)
            except Exception:  # input handling must never die; the message is lost, the daemon goes on
                log.exception("error while handling MIDI input %s", message)

    def check(self) -> None:
        self.port.check()

    def detach(self) -> None:
        self.port.detach()

    def reattach(self) -> None:
        self.port.reattach()

    def stop(self) -> None:
        self.running = False
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=1)

    def close(self) -> None:
        self.stop()
        self.port.close()


def open_ports(api: str, midi_in: str | None, midi_out: str | None,
               on_message: Callable[[list[int], float], None], realtime: bool = False):
    """(output, input, what was opened) on one JACK client of their own; None where `api` is "auto" and it
    cannot be had (no JACK server; JACK-Client without libjack): the caller then goes on with python-rtmidi's
    choice."""
    quiet = api == "auto"
    if jack is None:
        if quiet:
            return None
        log.warning("JACK MIDI through python-rtmidi, a period's timing only (%s): install libjack "
                    "(Debian: libjack-jackd2-0) for frame-accurate MIDI", UNAVAILABLE)
        return None
    output = midi_input = None
    client = _JackClient()
    try:
        output = JackMidiOutput(midi_out, quiet, client)
        midi_input = JackMidiInput(midi_in, on_message, realtime, quiet, client)
    except MidiUnavailableError as error:
        _close_all(midi_input, output)
        if quiet:
            return None
        raise MidiError(str(error)) from error
    except Exception:
        _close_all(midi_input, output)
        raise
    return output, midi_input, f"MIDI (jack, frame-accurate): in {midi_input.port.name!r}, out {output.port.name!r}"


def _close_all(*ports) -> None:
    for port in ports:
        if port is not None:
            port.close()
