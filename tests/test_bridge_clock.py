"""The clock's arithmetic on exact, synthetic tick times (the JACK tests play the same cases for real)."""

from __future__ import annotations

import numpy as np
import pytest

from musicbridge.bridge.clock import TICKS_PER_BEAT, Clock

INTERVAL_120 = 60.0 / (120 * TICKS_PER_BEAT)


def tick_times(bpm_of_tick, n: int, start: float = 10.0) -> list[float]:
    times, t = [], start
    for k in range(n):
        times.append(t)
        t += 60.0 / (bpm_of_tick(k) * TICKS_PER_BEAT)
    return times


def run_clock(times, events=None, drop=()):
    """A MIDI clock fed Start at the first tick's time and the ticks (minus `drop`); records its events."""
    events = [] if events is None else events
    clock = Clock("midi", 120.0, on_event=lambda kind, beat: events.append((kind, beat)))
    clock.midi_start(times[0] - 0.005)
    for k, t in enumerate(times):
        if k not in drop:
            clock.midi_tick(t)
    return clock


def phase_error_ms(clock, times, ticks) -> float:
    """Largest |beat_at(tick time) − tick's beat| over `ticks`, in milliseconds at the local tempo."""
    worst = 0.0
    for k in ticks:
        beat_error = clock.beat_at(times[k]) - k / TICKS_PER_BEAT
        worst = max(worst, abs(beat_error) * 60.0 / clock.tempo() * 1000)
    return worst


def test_steady_clock_gives_tempo_and_phase():
    times = tick_times(lambda k: 120.0, 200)
    clock = run_clock(times)
    assert clock.playing
    assert clock.tempo() == pytest.approx(120.0, rel=1e-6)
    assert clock.beat_at(times[-1]) == pytest.approx(199 / 24, abs=1e-6)
    assert clock.time_at(10.0) == pytest.approx(times[0] + 10 * 0.5, abs=1e-6)  # extrapolated ahead


def test_jittery_ticks_average_out():
    rng = np.random.default_rng(0)
    exact = tick_times(lambda k: 120.0, 400)
    jittery = [t + rng.normal(0, 0.001) for t in exact]  # 1 ms of jitter per tick
    clock = Clock("midi", 100.0)  # a wrong starting guess must not matter
    clock.midi_start(exact[0] - 0.01)
    errors = []
    for k, t in enumerate(jittery[:-1]):
        clock.midi_tick(t)
        if k > 48:  # after two beats: predict the next tick's time
            errors.append(abs(clock.time_at((k + 1) / TICKS_PER_BEAT) - exact[k + 1]))
    raw = np.abs(np.array(jittery) - np.array(exact))
    assert clock.tempo() == pytest.approx(120.0, rel=0.01)
    assert np.mean(errors) < 0.5 * np.mean(raw)  # the fit is steadier than the ticks themselves
    assert max(errors) < 0.5 * max(raw)
    assert clock.ticks.lost_ticks == 0


def test_tempo_change_is_followed_within_a_beat():
    change_tick = 96
    times = tick_times(lambda k: 120.0 if k < change_tick else 90.0, 200)
    clock = Clock("midi", 120.0)
    clock.midi_start(times[0] - 0.005)
    for k, t in enumerate(times):
        clock.midi_tick(t)
        if k == change_tick + TICKS_PER_BEAT:
            assert clock.tempo() == pytest.approx(90.0, rel=0.005)
            assert abs(clock.time_at((k + 1) / TICKS_PER_BEAT) - times[k + 1]) < 0.0005
    assert clock.beat_at(times[-1]) == pytest.approx(199 / 24, abs=1e-4)


def test_a_lost_tick_does_not_shift_the_count():
    times = tick_times(lambda k: 120.0, 150)
    clock = run_clock(times, drop={60, 100})
    assert clock.ticks.lost_ticks == 2
    assert phase_error_ms(clock, times, [149]) < 0.1


def test_a_tick_lost_while_stopped_is_counted_once():
    """Clock without Start keeps the tempo fresh; a tick lost then is one lost tick, not one every third tick
    from then on (the count once went on from the number expected instead of the number read)."""
    times = tick_times(lambda k: 120.0, 200)
    clock = Clock("midi", 120.0)
    for k, t in enumerate(times):
        if k != 60:
            clock.midi_tick(t)
    assert not clock.playing
    assert clock.ticks.lost_ticks == 1
    assert clock.tempo() == pytest.approx(120.0, rel=1e-6)


def test_a_late_tick_is_not_taken_for_a_lost_one():
    times = tick_times(lambda k: 120.0, 150)
    times[70] += 0.8 * INTERVAL_120  # arrives almost two intervals after the one before
    times[110] += 0.012
    clock = run_clock(times)
    assert clock.ticks.lost_ticks == 0
    assert phase_error_ms(clock, times, [149]) < 0.1


def test_stop_continue_and_song_position():
    events = []
    times = tick_times(lambda k: 120.0, 400)
    clock = Clock("midi", 120.0, on_event=lambda kind, beat: events.append((kind, round(beat, 4))))
    clock.midi_start(times[0] - 0.005)
    for t in times[:96]:  # 4 beats
        clock.midi_tick(t)
    clock.midi_stop(times[96] - 0.001)
    assert not clock.playing
    assert clock.beat_at(times[150]) == pytest.approx(4.0)  # stopped: the position stays
    for t in times[96:120]:  # many DAWs keep sending clock while stopped: the position must not move
        clock.midi_tick(t)
    assert clock.beat_at(times[120]) == pytest.approx(4.0)
    clock.midi_start(times[120] + 0.001, position_ticks=None)  # Continue
    clock.midi_tick(times[121])
    assert clock.playing
    assert clock.beat_at(times[121]) == pytest.approx(4.0, abs=1e-6)
    clock.midi_tick(times[122])
    clock.midi_stop(times[123])
    clock.midi_song_position(32 * 4, times[130])  # SPP counts 16ths: bar 9 = beat 32
    assert clock.beat_at(times[131]) == pytest.approx(32.0)
    clock.midi_start(times[140], position_ticks=None)
    clock.midi_tick(times[141])
    assert clock.beat_at(times[141] + 0.5) == pytest.approx(33.0, abs=1e-6)
    kinds = [kind for kind, _ in events]
    assert kinds == ["start", "stop", "start", "stop", "relocate", "start"]
    assert events[4] == ("relocate", 32.0)


def test_internal_clock_tempo_and_position():
    events = []
    clock = Clock("internal", 120.0, on_event=lambda kind, beat: events.append((kind, beat)))
    clock.start_internal(100.0)
    assert clock.beat_at(101.0) == pytest.approx(2.0)
    assert clock.time_at(8.0) == pytest.approx(104.0)
    clock.set_tempo(60.0, 101.0)  # the position is continuous across a tempo change
    assert clock.beat_at(101.0) == pytest.approx(2.0)
    assert clock.beat_at(102.0) == pytest.approx(3.0)
    clock.stop(102.0)
    assert clock.beat_at(200.0) == pytest.approx(3.0)
    clock.play(300.0)
    assert clock.beat_at(301.0) == pytest.approx(4.0)
    clock.set_position(4.1, 301.0)  # a small error is corrected by a quarter (phase lock), no relocation
    assert clock.beat_at(301.0) == pytest.approx(4.025)
    clock.set_position(16.0, 302.0)  # a jump relocates
    assert clock.beat_at(302.0) == pytest.approx(16.0)
    assert [kind for kind, _ in events] == ["start", "tempo", "stop", "start", "relocate"]


def test_auto_clock_hands_over_to_midi_clock():
    events = []
    clock = Clock("auto", 100.0, on_event=lambda kind, beat: events.append(kind))
    clock.start_internal(0.0)
    assert clock.playing and clock.source == "internal"
    clock.midi_tick(5.0)  # ticks arrive: follow them (stopped until Start)
    assert clock.source == "midi" and not clock.playing
    clock.set_tempo(150.0, 5.01)  # OSC transport is ignored while MIDI clock leads
    assert clock.tempo() != 150.0
    assert events == ["start", "stop"]


def test_late_ticks_in_a_row_are_not_taken_for_lost_ones():
    times = tick_times(lambda k: 120.0, 150)
    times[80] += 0.014  # a stalled machine delivers two ticks late, the second a little less
    times[81] += 0.008
    clock = run_clock(times)
    assert clock.ticks.lost_ticks == 0
    assert phase_error_ms(clock, times, [82, 149]) < 0.1


@pytest.mark.parametrize("new_bpm", [70.0, 200.0])
def test_a_big_tempo_jump_is_a_tempo_change_not_lost_ticks(new_bpm):
    times = tick_times(lambda k: 120.0 if k < 96 else new_bpm, 200)
    clock = run_clock(times)
    assert clock.ticks.lost_ticks == 0
    assert clock.tempo() == pytest.approx(new_bpm, rel=0.005)
    assert phase_error_ms(clock, times, [199]) < 0.1


@pytest.mark.parametrize("seed", range(5))
def test_lost_ticks_amid_jitter_are_counted(seed):
    rng = np.random.default_rng(seed)
    exact = tick_times(lambda k: 180.0, 300)
    jittery = [t + rng.uniform(-0.002, 0.002) for t in exact]
    clock = run_clock(jittery, drop={60, 200})
    assert clock.ticks.lost_ticks == 2
    beat_error = clock.beat_at(exact[299]) - 299 / TICKS_PER_BEAT
    assert abs(beat_error) * 60 / 180 < 0.002  # within 2 ms at the end: the count is right
