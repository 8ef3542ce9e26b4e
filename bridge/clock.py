"""Musical time: which beat it is at a wall-clock time (perf_counter seconds), and when a beat will be.

Three sources drive it:
- internal: free-running at a tempo; OSC transport messages may set tempo, play, stop and position;
- osc: the same, but stopped until /musicbridge/transport/play (a DAW device drives it);
- midi: MIDI clock, 24 ticks per quarter note, with Start / Continue / Stop and Song Position Pointer.
`auto` starts internal and follows MIDI clock as soon as ticks arrive.

MIDI clock tempo and phase come from a least-squares line through the last two beats of ticks
(time = a + b·tick), which averages out jitter; where the ticks wander off the line (a sender whose tempo
wobbles), the phase follows them (TickTempo.gain). Ticks far off the line (more than 15 % of a tick interval or
2 ms) are held out of the fit until they show what happened: back on the line, they were merely late; three
in a row a whole interval (or two, three) late and close to the line so moved (grid_tolerance), ticks were lost
and the count moves on (not on JACK, where that is the sender slipping: set_midi_system); four in a row drifting
further away, the tempo changed (the fit restarts from them, so a new tempo is followed within a few ticks);
eight in a row at a steady offset, the phase moved. While ticks are held the position comes from the line,
so a late or lost tick never moves the music.

On JACK, whose input events carry their frames, a MIDI clock is fitted both in frames and on the wall clock, and
followed in the time its ticks are more regular in (Clock.offer_timebase): exact in frames for a clock the JACK
graph writes (a DAW), however late the audio cycles run.

A running clock whose ticks stop coming (a pulled cable, a starved MIDI system) is a flywheel: the music goes
on at the last tempo, and check_input() (called now and then) reports the silence once it has lasted
SILENT_TICKS expected ticks ("input_silent"). When ticks return after more than PAUSE_INTERVALS, the fit
restarts from the new tick; the count moves on by the ticks missed when the new tick lies on the old grid (the
sender kept time, its ticks were lost), else from the last tick (the sender paused). After a reported silence
that is "input_back", and "relocate" too when the position differs from where the flywheel got to.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from musicbridge.codecs import STEP_BEATS

log = logging.getLogger(__name__)

TICKS_PER_BEAT = 24  # MIDI clock
POSITION_GAIN = 0.25  # the share of a small song-position error corrected at once

SILENT_TICKS = TICKS_PER_BEAT  # a running clock silent for this many expected ticks is reported
PAUSE_INTERVALS = 4.5  # a gap longer than this many intervals restarts the fit from the tick after it
MIN_GRID_TOLERANCE = 0.0015  # seconds (TickTempo.grid_tolerance)
STEP_MEMORY = 4 * TICKS_PER_BEAT  # ticks over which the sizes of jitter and wander are read (TickTempo.gain)
MIN_STEPS = TICKS_PER_BEAT  # ticks before the phase follows any wander

MISS_MEMORY = 2 * TICKS_PER_BEAT  # ticks over which a fit's misses are averaged (TickTempo.miss_square)
SWITCH_SHARE = 0.6  # a MIDI clock is followed in the other time once its ticks miss the fit there by at most
# this share of the misses here (RMS): a clear difference, so the choice does not flap between two near equals
MIN_MISSES = 2 * TICKS_PER_BEAT  # misses each fit must have seen before they are compared

MIN_INTERVAL = 60.0 / (400 * TICKS_PER_BEAT)  # tempi outside 10–400 bpm are taken for noise
MAX_INTERVAL = 60.0 / (10 * TICKS_PER_BEAT)


def _line(points) -> tuple[float, float] | None:
    """Least-squares (origin, interval) of time = origin + interval · tick, or None when degenerate."""
    n = len(points)
    if n < 2:
        return None
    mean_i = sum(i for i, _ in points) / n
    mean_t = sum(t for _, t in points) / n
    var = sum((i - mean_i) ** 2 for i, _ in points)
    if var == 0:
        return None
    slope = sum((i - mean_i) * (t - mean_t) for i, t in points) / var
    if not MIN_INTERVAL <= slope <= MAX_INTERVAL:
        return None
    return mean_t - slope * mean_i, slope


def _wander(residuals: list[float], gain: float) -> float:
    """Where the clock's phase is now, off the fitted line: the ticks' distances from it (oldest first) through
    a steady-state Kalman filter of `gain` (TickTempo.gain)."""
    level = 0.0
    for residual in residuals:
        level += gain * (residual - level)
    return level


class TickTempo:
    """Tempo and phase of a MIDI clock from tick times (the fit over the last `window` ticks)."""

    SUSPECTS_FOR_TEMPO = 4  # far-off ticks in a row, drifting further: a new tempo
    SUSPECTS_FOR_LOST = 3  # far-off ticks in a row, all about whole intervals late: ticks were lost
    SUSPECTS_FOR_PHASE = 8  # far-off ticks in a row, steadily: the clock's phase moved

    def __init__(self, bpm: float = 120.0, window: int = 2 * TICKS_PER_BEAT, count_lost: bool = True):
        self.window = window
        self.count_lost = count_lost  # False: ticks whole intervals late are the sender slipping, never lost ones
        self.points: deque[tuple[int, float]] = deque(maxlen=window)
        self.interval = 60.0 / (bpm * TICKS_PER_BEAT)  # seconds per tick
        self.origin = 0.0  # the fit: time(tick) = origin + interval * tick
        self.last: tuple[int, float] | None = None  # the last tick received: (the number it was read as, time)
        self.suspects: list[tuple[int, float, float]] = []  # (tick, time, residual) far off the fit, held out
        self.spread = 0.0  # RMS distance of the fitted ticks from the line (seconds): how jittery the clock is
        self.step_square = 0.0  # mean over the last STEP_MEMORY ticks of step², step = tick-to-tick time − interval
        self.step_product = 0.0  # … and of step × the step before it
        self.steps_seen = 0
        self.previous_step: float | None = None
        self.lost_ticks = 0
        self.miss_square = 0.0  # mean over the last MISS_MEMORY ticks of miss², miss = its time − the fit's
        # prediction of it (capped at a quarter interval): how well the fit foresees the clock (Clock's timebases)
        self.misses_seen = 0

    def reset(self) -> None:
        self.points.clear()
        self.suspects.clear()
        self.last = None
        self.previous_step = None

    def carry(self, convert: Callable[[float], float]) -> None:
        """Every time held, carried into another timebase by `convert` (Clock.set_timebase)."""
        self.points = deque(((i, convert(t)) for i, t in self.points), maxlen=self.window)
        self.suspects = [(i, convert(t), r) for i, t, r in self.suspects]
        self.last = None if self.last is None else (self.last[0], convert(self.last[1]))
        self.origin = convert(self.origin)

    def add(self, index: int, t: float) -> int:
        """Add the tick expected to be number `index` at time t; returns the number it was read as."""
        if self.last is not None and t - self.last[1] > PAUSE_INTERVALS * self.interval:
            self.points.clear()  # the ticks stopped a while: restart the fit from here
            self.suspects.clear()
        held = False
        if len(self.points) >= 3:
            self._note_miss(t - self.time_of(index))
            held, index = self._suspect(index, t)
        # The number it was read as: the clock while stopped counts on from it, so a lost tick is counted once
        # (counting on from the number expected, every later tick would look lost again).
        self.last = (index, t)
        if not held:
            self._note_step(index, t)
            self.points.append((index, t))
            self._fit()
        return index

    def _suspect(self, index: int, t: float) -> tuple[bool, int]:
        """Hold ticks far off the line out of the fit, until they show what happened:
        back on the line → they were late (or early); a steady offset of whole intervals → ticks were lost;
        drifting further → a new tempo; any other steady offset → the phase moved. Returns (held, index)."""
        residual = t - self.time_of(index)
        if abs(residual) <= max(0.15 * self.interval, 0.002):
            self.suspects.clear()
            return False, index
        if self.suspects and (residual > 0) != (self.suspects[-1][2] > 0):
            self.suspects.clear()
        self.suspects.append((index, t, residual))
        residuals = [r for _, _, r in self.suspects]
        recent = residuals[-self.SUSPECTS_FOR_LOST:]
        lost = round(float(np.median(recent)) / self.interval)
        tolerance = 0.35 * self.interval
        on_grid = self.grid_tolerance()
        if self.count_lost and len(recent) == self.SUSPECTS_FOR_LOST and 1 <= lost <= 3 \
                and abs(recent[-1] - recent[0]) < tolerance and all(abs(r - lost * self.interval) < on_grid for r in recent):
            self.lost_ticks += lost
            for i, tt, r in self.suspects:
                if abs(r - lost * self.interval) < 0.35 * self.interval:
                    self.points.append((i + lost, tt))
            self.suspects.clear()
            self._fit()
            return True, index + lost
        sizes = [abs(r) for r in residuals]
        drifting = len(sizes) >= self.SUSPECTS_FOR_TEMPO and sizes[-1] - sizes[0] >= tolerance and \
            all(b > a for a, b in zip(sizes, sizes[1:], strict=False))
        if drifting or len(sizes) >= self.SUSPECTS_FOR_PHASE:
            line = _line([(i, tt) for i, tt, _ in self.suspects])
            if line is not None:
                self.points.clear()
                self.points.extend((i, tt) for i, tt, _ in self.suspects)
                self.origin, self.interval = line
            self.suspects.clear()
        return True, index

    def _note_miss(self, miss: float) -> None:
        miss = min(abs(miss), 0.25 * self.interval)  # a stall counts, but one does not outweigh a beat of ticks
        self.misses_seen += 1
        self.miss_square += (miss * miss - self.miss_square) / min(self.misses_seen, MISS_MEMORY)

    def _note_step(self, index: int, t: float) -> None:
        """Track the sizes of the steps between successive ticks (for gain())."""
        if not self.points or self.points[-1][0] != index - 1:
            self.previous_step = None
            return
        step = t - self.points[-1][1] - self.interval
        if self.previous_step is not None:
            share = 1.0 / min(self.steps_seen + 1, STEP_MEMORY)
            self.step_square += share * (step * step - self.step_square)
            self.step_product += share * (step * self.previous_step - self.step_product)
            self.steps_seen += 1
        self.previous_step = step

    def gain(self) -> float:
        """How far the phase follows the newest ticks off the line: the steady-state Kalman gain of a phase that
        wanders (a random walk: a sender whose tempo wobbles, jack_midi_clock -J) seen through jitter of its own
        (white: USB, a busy sender, JACK's cycles). Steps of a walk are independent; white jitter makes successive
        steps anti-correlated by its variance: so jitter = −E[step·previous step], walk = E[step²] − 2·jitter,
        less two standard errors (a walk must show, not be guessed from noise). 0 for white jitter alone (the line
        is the best guess), towards 1 for a pure walk (the newest tick is). Measured on jack_midi_clock's ticks at
        120 bpm, -J 5 / -J 10: answer jitter p99 4.4 / 9.1 ms with the line alone, 1.8 / 2.4 ms with the gain."""
        if self.steps_seen < MIN_STEPS:
            return 0.0
        jitter = max(-self.step_product, 1e-12)
        seen = min(self.steps_seen, 2 * STEP_MEMORY)
        walk = max(self.step_square * (1.0 - 2.0 * math.sqrt(2.0 / seen)) - 2.0 * jitter, 0.0)
        prior = (walk + math.sqrt(walk * walk + 4.0 * walk * jitter)) / 2.0
        return prior / (prior + jitter)

    def grid_tolerance(self) -> float:
        """How close to the line, a whole number of intervals on, a late tick must be to be read as following lost
        ones (the sender kept time) rather than as the sender slipping (a stalled MIDI system: JACK's transport
        itself waits). Four times the clock's own spread, at least 1.5 ms (JACK stamps a tick at its cycle, up to
        1.33 ms off) and at most 35 % of an interval. A loose fixed bound misread stalls: one read as a lost tick
        puts every later answer a tick early (measured on JACK: −20.7 ms median at 120 bpm)."""
        return min(0.35 * self.interval, max(MIN_GRID_TOLERANCE, 4.0 * self.spread))

    def _fit(self) -> None:
        line = _line(self.points) if len(self.points) >= 3 else None
        if line is not None:
            origin, self.interval = line
            residuals = [t - (origin + self.interval * i) for i, t in sorted(self.points)]
            self.spread = math.sqrt(sum(r * r for r in residuals) / len(residuals))
            self.origin = origin + _wander(residuals, self.gain())
        else:  # too few ticks for a line: keep the tempo, take the phase from the newest tick
            last_index, last_t = self.points[-1]
            self.origin = last_t - self.interval * last_index

    @property
    def bpm(self) -> float:
        return 60.0 / (self.interval * TICKS_PER_BEAT)

    def time_of(self, tick: float) -> float:
        return self.origin + self.interval * tick


class Timebase:
    """The time a Clock keeps a MIDI clock's state in, and its conversions from and to perf_counter seconds.
    This one is perf_counter itself. A MIDI system whose events carry their own sample frames (bridge/jack_midi.py
    JackTimebase) counts in frames instead: a clock source's ticks are exact there, the output is placed on
    frames, and a conversion through wall-clock time (which a late audio cycle moves) would add its error twice.
    Every method is thread-safe."""

    def inward(self, t: float) -> float:
        """The timebase's time at perf_counter time t."""
        return t

    def outward(self, x: float) -> float:
        """The perf_counter time of the timebase's time x."""
        return x

    def pace(self) -> float:
        """The timebase's seconds per perf_counter second (a tempo in it × this: the tempo on the wall clock)."""
        return 1.0


PERF_COUNTER = Timebase()


def _name_of(timebase: Timebase) -> str:
    """A timebase in the status's words: "wall" for perf_counter, else its own name ("frames" on JACK)."""
    return "wall" if timebase is PERF_COUNTER else getattr(timebase, "name", "system")


class Clock:
    """beat_at(t) / time_at(beat) while playing, for every source; t in perf_counter seconds (a MIDI clock's
    state in the MIDI system's time: set_timebase). Thread-safe."""

    def __init__(self, source: str = "auto", bpm: float = 120.0, on_event: Callable[[str, float], None] | None = None):
        if source not in ("auto", "internal", "midi", "osc"):
            raise ValueError(f"unknown clock source {source!r}")
        self.requested = source
        self.source = "midi" if source == "midi" else "internal"
        self.lock = threading.RLock()
        self.midi_timebase = PERF_COUNTER  # the time a MIDI clock's state is kept in (set_timebase); others: perf
        self.system_timebase: Timebase | None = None  # the MIDI system's own time, offered (offer_timebase)
        self.shadow: TickTempo | None = None  # the same ticks fitted in the other of perf_counter's and the system's
        # time, while both are candidates: the clock follows the one its ticks are regular in (_choose_timebase)
        self.shadow_time = 0.0  # the tick being taken in, on the shadow's time
        self.timebase_switches = 0
        self.tick_stamps: deque[tuple[float, float]] = deque(maxlen=2 * TICKS_PER_BEAT)  # (its time, perf) per tick
        self.on_event = on_event or (lambda kind, beat: None)
        self.bpm = bpm
        self.anchor_time = 0.0  # internal: beat(t) = anchor_beat + (t - anchor_time) * bpm / 60
        self.anchor_beat = 0.0
        self.playing = False
        self.count_lost = True  # MIDI: whether ticks can be lost on the way (set_midi_system)
        self.ticks = TickTempo(bpm)
        self.next_tick = 0  # MIDI: number of the next tick while running
        self.tick_count = 0  # MIDI: ticks received
        self.waiting_first_tick = False  # MIDI: Start/Continue received, the next tick starts the music
        self.midi_running = False
        self.last_clock_message = None  # MIDI: time of the last tick, Start or Continue (silence is measured from it)
        self.input_silent = False  # MIDI: the clock ran and its ticks stopped coming (check_input)
        self.silences = 0  # times that happened
        self.input_report = ""  # the last silence or return, in words (for the log and /musicbridge/error)
        self.pending: list[tuple[str, float]] = []  # events to emit once the lock is released

    # ---- reading the time ---------------------------------------------------------------------
    def _timebase(self) -> Timebase:
        """The time the current source's state is in: the MIDI system's for a MIDI clock, else perf_counter."""
        return self.midi_timebase if self.source == "midi" else PERF_COUNTER

    def beat_at(self, t: float) -> float:
        """The beat at perf_counter time t."""
        with self.lock:
            return self._beat_at(self._timebase().inward(t))

    def _beat_at(self, t: float) -> float:
        """The beat at time t of the source's timebase (_timebase)."""
        with self.lock:
            if not self.playing:
                return self.anchor_beat
            if self.source == "midi":
                return (t - self.ticks.origin) / self.ticks.interval / TICKS_PER_BEAT
            return self.anchor_beat + (t - self.anchor_time) * self.bpm / 60.0

    def time_at(self, beat: float) -> float | None:
        """Wall-clock (perf_counter) time of `beat` at the current tempo, or None while stopped."""
        with self.lock:
            at = self.clock_time_at(beat)
            return None if at is None else self._timebase().outward(at)

    def clock_time_at(self, beat: float) -> float | None:
        """`beat`'s time on the source's timebase (_timebase), or None while stopped: what a timed output
        places exactly (a MIDI clock on JACK: the frame it falls on)."""
        with self.lock:
            if not self.playing:
                return None
            if self.source == "midi":
                return self.ticks.time_of(beat * TICKS_PER_BEAT)
            return self.anchor_time + (beat - self.anchor_beat) * 60.0 / self.bpm

    def tempo(self) -> float:
        """Beats per minute of wall-clock (perf_counter) time."""
        with self.lock:
            return self.ticks.bpm * self._pace() if self.source == "midi" else self.bpm

    def _pace(self) -> float:
        """The MIDI timebase's seconds per wall-clock second over the last ticks (the ones the tempo is fitted
        on: a driver that ran late now and then makes the pace of the last seconds, not of a longer span)."""
        if self.midi_timebase is PERF_COUNTER:
            return 1.0
        if len(self.tick_stamps) >= 2:
            (x0, t0), (x1, t1) = self.tick_stamps[0], self.tick_stamps[-1]
            if t1 - t0 > 0 and x1 - x0 > 0:
                return (x1 - x0) / (t1 - t0)
        return self.midi_timebase.pace()

    def state(self, t: float) -> tuple[bool, float, float]:
        """(playing, beat, bpm) at time t."""
        with self.lock:
            return self.playing, self.beat_at(t), self.tempo()

    def _emit(self, kind: str, beat: float) -> None:
        try:
            self.on_event(kind, beat)
        except Exception:
            log.exception("error in clock %s handler", kind)

    # ---- internal / OSC transport -------------------------------------------------------------
    def start_internal(self, t: float) -> None:
        """Begin running (the `internal` and `auto` sources start playing at launch)."""
        if self.requested in ("internal", "auto"):
            self.play(t)

    def _osc_allowed(self) -> bool:
        if self.source == "midi":
            log.debug("ignoring OSC transport: following MIDI clock")
            return False
        return True

    def set_tempo(self, bpm: float, t: float) -> None:
        with self.lock:
            if not self._osc_allowed():
                return
            self.anchor_beat, self.anchor_time, self.bpm = self._beat_at(t), t, bpm
        self._emit("tempo", self.anchor_beat)

    def play(self, t: float) -> None:
        with self.lock:
            if not self._osc_allowed() or self.playing:
                return
            self.anchor_time, self.playing = t, True
        self._emit("start", self.anchor_beat)

    def stop(self, t: float) -> None:
        with self.lock:
            if not self._osc_allowed() or not self.playing:
                return
            self.anchor_beat, self.playing = self._beat_at(t), False
        self._emit("stop", self.anchor_beat)

    def set_position(self, beat: float, t: float) -> None:
        """A song position report: an error under a 16th is corrected gently (phase-locked), a jump relocates."""
        with self.lock:
            if not self._osc_allowed():
                return
            error = beat - self._beat_at(t)
            if self.playing and abs(error) < STEP_BEATS:  # part of the error at a time: UDP jitter averages out
                self.anchor_beat, self.anchor_time = self._beat_at(t) + POSITION_GAIN * error, t
                return
            self.anchor_beat, self.anchor_time = beat, t
        self._emit("relocate", beat)

    # ---- MIDI clock ---------------------------------------------------------------------------
    def set_midi_system(self, api: str) -> None:
        """The MIDI system the ticks come through ("jack", "alsa", …). On JACK a tick whole intervals late is
        taken for the sender slipping, never for lost ticks: a stalled JACK cycle delays the clock's source
        itself, and such stalls far outnumber lost ticks (measured on a loaded 2-core machine, 15 s at 120 bpm:
        39 stalls and no lost tick with jackd --sync, 32 and 5 in its default asynchronous mode). One stall taken
        for a lost tick puts every later answer a tick early (measured: −20.7 ms median at 120 bpm)."""
        with self.lock:
            self.count_lost = api != "jack"
            self.ticks.count_lost = self.count_lost

    def set_timebase(self, timebase: Timebase) -> None:
        """Keep a MIDI clock's state in `timebase`'s time from now on, whatever its ticks do (serve --clock-time
        frames / wall); what was learnt is carried over. The internal and OSC sources stay on perf_counter: their
        times are the system clock's."""
        with self.lock:
            self.system_timebase = self.shadow = None
            if timebase is self.midi_timebase:
                return

            def carry(x: float) -> float:
                return timebase.inward(self.midi_timebase.outward(x))

            if self.last_clock_message is not None:
                self.last_clock_message = carry(self.last_clock_message)
            self.ticks.carry(carry)
            self.midi_timebase = timebase
            self.tick_stamps.clear()

    def offer_timebase(self, timebase: Timebase) -> None:
        """The MIDI system's own time (the daemon, once its ports are open: JACK's frames), beside perf_counter's:
        a MIDI clock is fitted in both, and followed in the one its ticks are more regular in (_choose_timebase).
        A clock written by the MIDI system's graph itself (a DAW, jack_midi_clock) is exact in its frames, which
        a late audio cycle does not move; one sent by a program on the wall clock is shifted in frames by every
        stalled cycle it crosses, and may be more regular on the wall clock."""
        with self.lock:
            if timebase is self.system_timebase or timebase is PERF_COUNTER:
                return
            self.set_timebase(timebase)  # (first the system's: a clock from the MIDI graph is followed at once)
            self.system_timebase = timebase
            self.shadow = TickTempo(self.ticks.bpm, count_lost=self.count_lost)

    def _other_timebase(self) -> Timebase:
        return PERF_COUNTER if self.midi_timebase is self.system_timebase else self.system_timebase

    def _add_tick(self, index: int, t: float) -> int:
        """Fit the tick expected to be number `index` at t (and in the shadow's time); the number it was read as."""
        index = self.ticks.add(index, t)
        if self.shadow is not None:
            self.shadow.add(index, self.shadow_time)
        return index

    def _reset_ticks(self) -> None:
        self.ticks.reset()
        if self.shadow is not None:
            self.shadow.reset()

    def _choose_timebase(self) -> None:
        """Once a beat, follow the clock in the other candidate time when its ticks miss the fit there by at most
        SWITCH_SHARE of the misses here (each fit's own prediction of the tick it is about to take in: what an
        answer placed on it would be off by). Measured on JACK's dummy driver on a busy VM (bench-clock, 12 runs):
        jack_midi_clock's ticks miss by 0.0–0.85 ms RMS in frames, 0.28–4.4 ms on the wall clock."""
        here, there = self.ticks, self.shadow
        if there is None or self.tick_count % TICKS_PER_BEAT or min(here.misses_seen, there.misses_seen) < MIN_MISSES:
            return
        if there.miss_square > SWITCH_SHARE ** 2 * here.miss_square:
            return
        timebase = self._other_timebase()
        self.last_clock_message = self.shadow_time  # (the tick just taken in, exactly, on the other time)
        self.ticks, self.shadow, self.midi_timebase = there, here, timebase
        self.tick_stamps.clear()
        self.timebase_switches += 1
        log.info("MIDI clock: following it in %s time now (its ticks miss the fit there by %.2f ms RMS, here by "
                 "%.2f ms)", self.timebase_name(), 1000 * math.sqrt(there.miss_square),
                 1000 * math.sqrt(here.miss_square))

    def timebase_misses(self) -> dict[str, float]:
        """RMS miss (ms) of the MIDI clock's ticks against the fit, in each time it is fitted in (the status)."""
        with self.lock:
            fits = [(self.timebase_name(), self.ticks)]
            if self.shadow is not None:
                fits.append((_name_of(self._other_timebase()), self.shadow))
            return {name: round(1000 * math.sqrt(fit.miss_square), 3) for name, fit in fits if fit.misses_seen}

    def timebase_name(self) -> str:
        """The time a MIDI clock is followed in: "wall" (perf_counter) or the MIDI system's ("frames")."""
        return _name_of(self.midi_timebase)

    # Each MIDI handler changes the state under the lock and queues its events; they are emitted after the
    # lock is released, because listeners flush the scheduler, whose thread reads this clock under its own lock.
    def _follow_midi(self, t: float) -> None:
        """auto: the first MIDI clock message hands the transport to the MIDI source."""
        if self.source == "midi":
            return
        log.info("MIDI clock detected: following it")
        was_playing = self.playing
        self.anchor_beat, self.playing, self.source = self._beat_at(t), False, "midi"
        self.ticks = TickTempo(self.bpm, count_lost=self.count_lost)
        if self.shadow is not None:
            self.shadow = TickTempo(self.bpm, count_lost=self.count_lost)
        if was_playing:
            self.pending.append(("stop", self.anchor_beat))

    def _emit_pending(self) -> None:
        with self.lock:
            events, self.pending = self.pending, []
        for kind, beat in events:
            self._emit(kind, beat)

    def _midi_allowed(self, t: float) -> bool:
        if self.requested not in ("auto", "midi"):
            return False
        self._follow_midi(t)
        return True

    def midi_tick(self, t: float) -> None:
        with self.lock:
            if self._midi_allowed(t):
                x = self.midi_timebase.inward(t)
                self.tick_stamps.append((x, t))
                if self.shadow is not None:
                    self.shadow_time = self._other_timebase().inward(t)
                self.tick_count += 1
                self._tick(x)
                self._choose_timebase()
        self._emit_pending()

    def _heard(self, t: float) -> bool:
        """A MIDI clock message arrived: the input is not silent. True when it had been (and is back now)."""
        was_silent = self.input_silent
        if was_silent:
            self._input_back(t)
        self.last_clock_message = t
        return was_silent

    def _tick(self, t: float) -> None:
        flywheel = self._beat_at(t)  # where the music got to without ticks
        if self._heard(t) and self.playing and not self.waiting_first_tick:
            self._tick_running(t)
            if abs(self._beat_at(t) - flywheel) >= 1 / TICKS_PER_BEAT:  # the sender paused: go back to it
                self.pending.append(("relocate", self._beat_at(t)))
            return
        if not self.midi_running:  # clock while stopped: keep the tempo fresh, the position stays
            self._add_tick(self.ticks.last[0] + 1 if self.ticks.last else 0, t)
            return
        if self.waiting_first_tick:  # the first tick after Start / Continue is the song position
            self._reset_ticks()
            self.waiting_first_tick = False
            self._add_tick(self.next_tick, t)
            self.playing = True
            self.pending.append(("start", self.next_tick / TICKS_PER_BEAT))
            self.next_tick += 1
        else:
            self._tick_running(t)

    def _tick_running(self, t: float) -> None:
        last = self.ticks.last
        if last is not None and t - last[1] > PAUSE_INTERVALS * self.ticks.interval:
            self.next_tick += self._missed_in_gap(t)
        self.next_tick = self._add_tick(self.next_tick, t) + 1

    def _missed_in_gap(self, t: float) -> int:
        """Ticks lost in a gap, from the first tick after it: on the line a whole number of intervals on, the
        sender kept time and only its ticks were lost (a cable, a starved or overflowing MIDI input): they are
        counted and the music, which kept that time, goes on. Off the line (TickTempo.grid_tolerance), or on JACK
        (set_midi_system), the sender itself paused (a stalled MIDI system delivers its ticks late, not lost): its
        count goes on from its last tick."""
        if not self.count_lost:
            return 0
        interval = self.ticks.interval
        ahead = (t - self.ticks.origin) / interval - self.next_tick  # intervals past the tick expected next
        missed = round(ahead)
        if missed < 1 or abs(ahead - missed) * interval > self.ticks.grid_tolerance():
            log.info("MIDI clock resumed off its old grid: counting on from its last tick")
            return 0
        self.ticks.lost_ticks += missed
        return missed

    def _input_back(self, t: float) -> None:
        silent_for = t - self.last_clock_message
        self.input_silent = False
        self.input_report = f"MIDI clock back after {silent_for:.1f} s of silence: following it again"
        log.warning("%s", self.input_report)
        self.pending.append(("input_back", self._beat_at(t)))

    def check_input(self, t: float) -> bool:
        """Notice a running MIDI clock whose ticks stopped coming (SILENT_TICKS expected ticks without one):
        logged, and emitted once as "input_silent"; True then. Called now and then (the daemon's housekeeping)."""
        with self.lock:
            if self.source != "midi" or not self.midi_running or self.input_silent or self.last_clock_message is None:
                return False
            t = self.midi_timebase.inward(t)
            silent_for = t - self.last_clock_message
            if silent_for < SILENT_TICKS * self.ticks.interval:
                return False
            self.input_silent = True
            self.silences += 1
            self.input_report = (
                f"no MIDI clock for {silent_for:.1f} s while it was running (a tick was due every "
                f"{self.ticks.interval * 1000:.1f} ms): check that the clock source still plays and is connected "
                "to the MIDI input; the music keeps the last tempo until the ticks return")
            log.warning("%s", self.input_report)
            self.pending.append(("input_silent", self._beat_at(t)))
        self._emit_pending()
        return True

    def midi_start(self, t: float, position_ticks: int | None = 0) -> None:
        """Start (from 0) or Continue (position_ticks=None: from the current song position)."""
        with self.lock:
            if self._midi_allowed(t):
                if position_ticks is not None:
                    self.next_tick = position_ticks
                self._heard(self.midi_timebase.inward(t))
                self.midi_running, self.waiting_first_tick = True, True
                self.anchor_beat = self.next_tick / TICKS_PER_BEAT
        self._emit_pending()

    def midi_stop(self, t: float) -> None:
        with self.lock:
            if self._midi_allowed(t):
                self._heard(self.midi_timebase.inward(t))
                was_playing = self.playing
                self.midi_running = self.waiting_first_tick = self.playing = False
                self.anchor_beat = self.next_tick / TICKS_PER_BEAT
                if was_playing:
                    self.pending.append(("stop", self.anchor_beat))
        self._emit_pending()

    def midi_song_position(self, sixteenths: int, t: float) -> None:
        with self.lock:
            if self._midi_allowed(t):
                self._heard(self.midi_timebase.inward(t))
                self.next_tick = sixteenths * 6
                self.anchor_beat = self.next_tick / TICKS_PER_BEAT
                if self.playing:  # SPP while running (rare): continue from there with the next tick
                    self.waiting_first_tick = True
                self.pending.append(("relocate", self.anchor_beat))
        self._emit_pending()

    def handle_midi(self, message: list[int], t: float) -> bool:
        """Feed a MIDI system real-time/common message; returns True when it was a clock message."""
        status = message[0]
        if status == 0xF8:
            self.midi_tick(t)
        elif status == 0xFA:
            self.midi_start(t, 0)
        elif status == 0xFB:
            self.midi_start(t, None)
        elif status == 0xFC:
            self.midi_stop(t)
        elif status == 0xF2 and len(message) >= 3:
            self.midi_song_position(message[1] | (message[2] << 7), t)
        else:
            return False
        return True
