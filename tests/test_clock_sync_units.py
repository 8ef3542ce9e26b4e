"""Sync to an outside clock, the arithmetic: arrival times that ignored messages cannot move, a running clock
that goes silent (reported once, followed again), Start/Stop/Continue/Song Position Pointer in the order
jack_midi_clock sends them, and how the daemon's thread priorities are chosen. Exact synthetic times; the JACK
tests (tests/test_clock_sync.py) play the same against real clients."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from musicbridge.bridge import priority
from musicbridge.bridge.clock import PERF_COUNTER, SILENT_TICKS, TICKS_PER_BEAT, Clock, Timebase
from musicbridge.bridge.midi_io import ArrivalClock, unused_input

BPM = 120.0
INTERVAL = 60.0 / (BPM * TICKS_PER_BEAT)


def running_clock(events: list, ticks: int = 96, start: float = 10.0) -> tuple[Clock, float]:
    """A MIDI clock started and fed `ticks` ticks at BPM; returns it and the time of the next tick."""
    clock = Clock("midi", BPM, on_event=lambda kind, beat: events.append((kind, round(beat, 4))))
    clock.midi_start(start - 0.001)
    for k in range(ticks):
        clock.midi_tick(start + k * INTERVAL)
    return clock, start + ticks * INTERVAL


# ---- arrival times ----------------------------------------------------------------------------------------------
def _stream(deltas, true_times, lags):
    """Arrival times an ArrivalClock gives for rtmidi deltas polled at true time + lag."""
    clock = ArrivalClock()
    return np.array([clock.arrival(d, t + lag) for d, t, lag in zip(deltas, true_times, lags, strict=True)])


def test_a_delta_lost_once_heals_within_the_window():
    """rtmidi counted a message it then dropped (its queue was full): every later delta sum is 30 ms short.
    The times stay right before it, and are right again once the window has moved past it."""
    rng = np.random.default_rng(0)
    n = int(8 / INTERVAL)  # 8 s of ticks
    true = 5.0 + np.arange(n) * INTERVAL
    deltas = np.diff(true, prepend=true[0])
    lost_at = n // 4
    deltas[lost_at] -= 0.030
    lags = rng.uniform(0.0, 0.001, n)  # 1 ms polls
    lags[::10] = 0.00005  # now and then a prompt one
    errors = _stream(deltas, true, lags) - true
    assert np.abs(errors[:lost_at]).max() < 0.0002
    healed = true > true[lost_at] + ArrivalClock.WINDOW_S + 0.1
    assert np.abs(errors[healed]).max() < 0.0002
    assert errors[lost_at] < -0.02  # it was wrong meanwhile: the window is what healed it


def test_a_poll_never_makes_an_arrival_later_than_it_was_polled():
    rng = np.random.default_rng(1)
    true = 1.0 + np.cumsum(rng.uniform(0.0005, 0.05, 500))
    lags = rng.uniform(0.0, 0.003, 500)
    times = _stream(np.diff(true, prepend=true[0]), true, lags)
    assert np.all(times <= true + lags + 1e-12)


def test_sysex_and_active_sensing_are_dropped_after_their_time_is_counted():
    for message in ([0xFE], [0xF0, 0x7D, 1, 2, 0xF7], [0xF7], [0x12, 0x34], []):
        assert unused_input(message), message
    for message in ([0xF8], [0xFA], [0xFB], [0xFC], [0xF2, 0, 1], [0x90, 60, 100], [0x80, 60, 0], [0xB0, 1, 2]):
        assert not unused_input(message), message


# ---- a running clock that goes silent ---------------------------------------------------------------------------
def test_silence_is_reported_once_after_a_beat_of_missing_ticks():
    events = []
    clock, next_t = running_clock(events)
    last = next_t - INTERVAL
    assert not clock.check_input(last + (SILENT_TICKS - 1) * INTERVAL)
    assert clock.check_input(last + (SILENT_TICKS + 1) * INTERVAL)
    assert not clock.check_input(last + 3 * SILENT_TICKS * INTERVAL)  # once
    assert clock.input_silent and clock.silences == 1
    assert [kind for kind, _ in events] == ["start", "input_silent"]
    assert "no MIDI clock" in clock.input_report and "connected" in clock.input_report
    assert clock.playing  # the flywheel: the music goes on at the last tempo


def test_a_stopped_clock_is_not_silent():
    events = []
    clock, next_t = running_clock(events)
    clock.midi_stop(next_t)
    assert not clock.check_input(next_t + 100 * SILENT_TICKS * INTERVAL)
    assert Clock("midi", BPM).check_input(100.0) is False  # never started
    internal = Clock("internal", BPM)
    internal.start_internal(0.0)
    assert not internal.check_input(100.0)


def test_ticks_lost_on_the_way_are_counted_and_the_music_goes_on():
    """The sender kept time; only its ticks were lost (a cable, an overflowing input): counted, no jump."""
    events = []
    clock, next_t = running_clock(events)
    missing = 2 * SILENT_TICKS + 5
    clock.check_input(next_t + missing * INTERVAL)
    back = next_t + missing * INTERVAL
    for k in range(48):
        clock.midi_tick(back + k * INTERVAL)
    assert clock.ticks.lost_ticks == missing
    assert clock.beat_at(back) == pytest.approx((96 + missing) / TICKS_PER_BEAT, abs=1e-6)
    assert [kind for kind, _ in events] == ["start", "input_silent", "input_back"]
    assert not clock.input_silent


@pytest.mark.parametrize("system", ["alsa", "jack"])
def test_a_sender_that_paused_is_followed_from_where_it_stopped(system):
    """Ticks resume off the old grid (the sender paused, as a stalled JACK cycle delays its transport): the
    count goes on from the last tick, and the position goes back there (a relocation, once)."""
    events = []
    clock, next_t = running_clock(events)
    clock.set_midi_system(system)
    pause = 2.37  # seconds, not a whole number of intervals
    clock.check_input(next_t + 1.0)
    for k in range(48):
        clock.midi_tick(next_t + pause + k * INTERVAL)
    assert clock.ticks.lost_ticks == 0
    assert clock.beat_at(next_t + pause) == pytest.approx(96 / TICKS_PER_BEAT, abs=1e-6)
    assert [kind for kind, _ in events] == ["start", "input_silent", "input_back", "relocate"]
    assert events[-1] == ("relocate", 4.0)


def test_on_jack_ticks_whole_intervals_late_are_the_sender_slipping():
    """A JACK cycle stalled one tick interval: the ticks after it are late, none is lost. On JACK that moves the
    phase (the answers follow the sender); elsewhere three such ticks read as one lost tick."""
    late_from = 100
    times = [10.0 + k * INTERVAL + (INTERVAL if k >= late_from else 0.0) for k in range(200)]
    for system, lost in (("jack", 0), ("alsa", 1)):
        clock = Clock("midi", BPM)
        clock.set_midi_system(system)
        clock.midi_start(9.999)
        for t in times:
            clock.midi_tick(t)
        assert clock.ticks.lost_ticks == lost, system
        assert clock.beat_at(times[-1]) == pytest.approx((199 + lost) / TICKS_PER_BEAT, abs=1e-4), system


# ---- transport messages as jack_midi_clock sends them -----------------------------------------------------------
class SteppingTime(Timebase):
    """A MIDI system's time that falls STEP seconds behind the wall clock every second (a dummy JACK driver that
    restarts its schedule after a late cycle)."""

    STEP = 0.010

    def inward(self, t: float) -> float:
        return t - self.STEP * np.floor(t)

    def outward(self, x: float) -> float:
        t = x
        for _ in range(3):  # (a fixed point: the steps are far apart)
            t = x + self.STEP * np.floor(t)
        return t


@pytest.mark.parametrize("regular_in", ["wall", "system"])
def test_a_midi_clock_is_followed_in_the_time_its_ticks_are_regular_in(regular_in):
    """Offered the MIDI system's time beside the wall clock, a Clock fits the ticks in both and follows the one
    they are regular in (after two beats, at a beat): a sender on the wall clock jumps 10 ms in the system's time
    every second, a sender in the system's time (the MIDI graph itself) on the wall clock. Its beats are then the
    sender's, in the sender's time; the status names the time."""
    system = SteppingTime()
    clock = Clock("midi", BPM)
    clock.offer_timebase(system)
    assert clock.midi_timebase is system
    start = 10.3

    def sent(k: int) -> float:  # tick k's wall-clock time
        return start + k * INTERVAL if regular_in == "wall" else system.outward(start + k * INTERVAL)

    clock.midi_start(sent(0) - 0.001)
    ticks = 24 * 12  # 6 s: six steps
    for k in range(ticks):
        clock.midi_tick(sent(k))
    if regular_in == "wall":
        assert clock.midi_timebase is PERF_COUNTER and clock.timebase_name() == "wall"
        assert clock.timebase_switches == 1
    else:
        assert clock.midi_timebase is system and clock.timebase_switches == 0
        assert clock.timebase_name() == "system"
    for k in range(ticks, ticks + 2 * TICKS_PER_BEAT, 6):  # the next two beats, by 16ths: where the sender has them
        assert clock.time_at(k / TICKS_PER_BEAT) == pytest.approx(sent(k), abs=0.0002)


def test_a_clock_told_its_time_does_not_choose():
    """serve --clock-time wall / frames: set_timebase, and the other time is never tried."""
    system = SteppingTime()
    clock = Clock("midi", BPM)
    clock.offer_timebase(system)
    clock.set_timebase(PERF_COUNTER)
    assert clock.shadow is None and clock.system_timebase is None
    clock.midi_start(9.999)
    for k in range(24 * 8):
        clock.midi_tick(system.outward(10.0 + k * INTERVAL))
    assert clock.midi_timebase is PERF_COUNTER and clock.timebase_switches == 0


def test_start_stop_song_position_continue_in_jack_midi_clock_order():
    """Start then a tick at once; on stop: Stop and the Song Position Pointer where it stopped; a relocation:
    another Song Position Pointer; play: Continue after a pause, then ticks from that position."""
    events = []
    clock, next_t = running_clock(events, ticks=100)  # stopped just after beat 4 (tick 100)
    clock.midi_stop(next_t)
    clock.handle_midi([0xF2, 16, 0], next_t + 0.0001)  # 16 sixteenths: beat 4 (where the stopped clock stands)
    clock.handle_midi([0xF2, 64, 0], next_t + 1.0)  # located to bar 5: 64 sixteenths = beat 16
    assert not clock.playing and clock.beat_at(next_t + 1.5) == pytest.approx(16.0)
    resume = next_t + 3.0
    clock.handle_midi([0xFB], resume - 0.5)  # Continue
    assert not clock.playing  # until the first tick
    for k in range(50):
        clock.handle_midi([0xF8], resume + k * INTERVAL)
    assert clock.playing
    assert clock.beat_at(resume) == pytest.approx(16.0, abs=1e-6)
    assert clock.beat_at(resume + 49 * INTERVAL) == pytest.approx(16 + 49 / TICKS_PER_BEAT, abs=1e-6)
    assert [kind for kind, _ in events] == ["start", "stop", "relocate", "relocate", "start"]
    assert [beat for kind, beat in events if kind == "relocate"] == [4.0, 16.0]


def test_song_position_while_running_takes_effect_at_the_next_tick():
    events = []
    clock, next_t = running_clock(events)
    clock.handle_midi([0xF2, 32, 0], next_t - 0.001)  # beat 8
    clock.handle_midi([0xF8], next_t)
    assert clock.beat_at(next_t) == pytest.approx(8.0, abs=1e-6)
    assert ("relocate", 8.0) in events


# ---- thread priorities --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("jack", "on_jack", "expected"), [
    (None, False, (4, 3)),  # ALSA, CoreMIDI, OSC only: low real-time, below jackd's default client threads
    (priority.JackState(True, 5), True, (4, 3)),  # jackd -R (default -P 10): clients at 5
    (priority.JackState(True, 70), True, (4, 3)),  # a high server: no reason to climb with it
    (priority.JackState(True, 3), True, (2, 1)),  # always below JACK's client threads
    (priority.JackState(True, 2), True, (1, 1)),
    (priority.JackState(True, 1), True, (0, 0)),  # no room below: ordinary
    (priority.JackState(False, -1), True, (0, 0)),  # jackd --no-realtime: its threads are ordinary, so are ours
    (None, True, (0, 0)),  # on JACK but cannot ask: the safe side
])
def test_priorities_stay_below_the_midi_systems_threads(jack, on_jack, expected):
    plan = priority.decide(jack, on_jack)
    assert (plan.scheduler, plan.io_and_work) == expected
    assert plan.realtime == (expected[0] > 0)
    if jack is not None and jack.realtime:
        assert plan.scheduler < jack.client_priority and plan.io_and_work < jack.client_priority
    assert plan.why


def _run_in_thread(role: str, until: threading.Event) -> threading.Thread:
    ready = threading.Event()

    def body():
        priority.become_realtime(role, "test")
        ready.set()
        until.wait(10)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    ready.wait(5)
    return thread


def _can_be_realtime() -> bool:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return True
    except (AttributeError, OSError):
        return False


def test_an_ordinary_plan_leaves_no_thread_real_time():
    """Under an ordinary plan (JACK not real-time) a thread asking for real-time stays ordinary, and one that got
    it under an earlier plan loses it when the plan changes."""
    before = priority.current()
    done = threading.Event()
    priority.adopt(priority.Plan(0, 0, "test: ordinary"))
    thread = _run_in_thread(priority.SCHEDULER, done)
    try:
        assert thread.native_id not in priority.realtime_threads()
        if _can_be_realtime():
            priority.adopt(priority.Plan(2, 1, "test: real-time"))
            assert priority.realtime_threads().get(thread.native_id) == 2
            priority.adopt(priority.Plan(0, 0, "test: ordinary again"))
            assert thread.native_id not in priority.realtime_threads()
    finally:
        done.set()
        thread.join(5)
        priority.adopt(before)
    assert not priority.realtime_threads()  # the test process itself is left as it was
