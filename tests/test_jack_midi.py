"""JACK's own MIDI clients (bridge/jack_midi.py) on a real JACK server, recorded by Debian's jack_midi_dump -a
(every event with its frame): timed notes land on their exact frames, input events carry the frames their
sender wrote them at, handed-over events can be taken back until they are written, close() leaves nothing
sounding, the scheduler's cut and flush hold with events handed over ahead and one handed over late still lands
on its frame, and both ports sit under one client. Checked in frames and events; the milliseconds are
benchmarks/bench_clock.py's."""

from __future__ import annotations

import subprocess
import threading
import time

import numpy as np
import pytest
from bridge_harness import wait_until

from musicbridge.benchmarks.jack_rig import CLOCK_PORT, JackMidiClock, JackTransport, MidiDump
from musicbridge.bridge.clock import TICKS_PER_BEAT, Clock
from musicbridge.bridge.jack_midi import (
    CLIENT_NAME,
    FRAME_CLOCK,
    FRAME_MASK,
    HANDOVER_PERIODS,
    LATE_WAKE_S,
    FrameClock,
    JackMidiInput,
    JackMidiOutput,
    JackTimebase,
)
from musicbridge.bridge.midi_io import IN_PORT_NAME, OUT_PORT_NAME, open_ports
from musicbridge.bridge.scheduler import OUTPUT_LEAD_S, Scheduler
from musicbridge.notes import Note

ALL_NOTES_OFF = 123
SPACING = 37  # frames between the timed notes: never a whole period (64), so a period-quantised output fails


def recorded_output(jack_server, name: str) -> tuple[JackMidiOutput, MidiDump]:
    output = JackMidiOutput()
    dump = MidiDump(jack_server, name)
    jack_server.connect(f":{OUT_PORT_NAME}", dump.port)
    time.sleep(0.2)  # the first message after a new connection can be lost
    return output, dump


def notes(dump: MidiDump) -> list[tuple[str, int]]:
    return [("on" if m[0] & 0xF0 == 0x90 and m[2] else "off", m[1]) for _, m in dump.events()
            if len(m) == 3 and m[0] & 0xF0 in (0x80, 0x90)]


def test_timed_notes_land_on_their_frames(jack_server):
    output, dump = recorded_output(jack_server, "frames-dump")
    try:
        first = FRAME_CLOCK.frame_at(time.perf_counter()) + 20 * jack_server.period  # some cycles ahead of now
        targets = [first + SPACING * i for i in range(16)]
        due = [FRAME_CLOCK.time_of(frame) for frame in targets]  # perf_counter times of exact frames
        for i, at in enumerate(due):
            output.note_on(0, 60 + i, 100, at=at)
        output.note_on(0, 90, 100, at=time.perf_counter() - 1.0)  # already late: the next cycle, at its start
        wait_until(lambda: len(dump.events()) == len(targets) + 1, 5, what="the timed notes")
        played = dict((m[1], frame) for frame, m in dump.events())
        landed = np.array([played[60 + i] - played[60] for i in range(len(targets))])
        assert np.abs(landed - (np.array(targets) - targets[0])).max() <= 1  # every one on its frame
        assert len({frame % jack_server.period for frame in played.values()}) > 4  # not on cycle boundaries
        assert 90 in played and output.late_written == 1
        assert len(output.errors) == len(targets) + 1
    finally:
        output.close()
        dump.close()


def test_a_handed_over_event_is_taken_back_until_written(jack_server):
    output, dump = recorded_output(jack_server, "cancel-dump")
    try:
        soon = time.perf_counter() + 0.3
        on, kept = output.note_on(0, 70, 100, at=soon), output.note_on(0, 72, 100, at=soon)
        assert output.sounding == {(0, 70): 1, (0, 72): 1}
        off = output.note_off(0, 70, at=soon + 0.1)
        assert output.cancel(off) and output.sounding == {(0, 70): 1, (0, 72): 1}  # its note-off undone
        assert output.cancel(on) and output.sounding == {(0, 72): 1}
        assert not output.cancel(on)  # once
        wait_until(lambda: ("on", 72) in notes(dump), 5, what="the note not taken back")
        assert not output.cancel(kept)  # written: too late to take back
        time.sleep(0.3)
        assert notes(dump) == [("on", 72)]  # nothing of note 70
    finally:
        output.close()
        dump.close()
    assert notes(dump) == [("on", 72), ("off", 72)]  # close() closed the one left sounding


def test_close_sends_the_note_offs_and_takes_back_what_is_not_due(jack_server):
    output, dump = recorded_output(jack_server, "close-dump")
    try:
        output.note_on(3, 64, 90)  # now
        output.note_on(3, 67, 90, at=time.perf_counter() + 10.0)  # far ahead: never written
        wait_until(lambda: ("on", 64) in notes(dump), 5, what="the note-on")
        output.close()
        output.close()  # idempotent
        time.sleep(0.2)
        assert notes(dump) == [("on", 64), ("off", 64)]
        assert [m for _, m in dump.events() if m[0] & 0xF0 == 0xB0] == [[0xB3, ALL_NOTES_OFF, 0]]
        assert output.note_on(3, 60, 90) is None and output.dropped == 1  # a closed port sends nothing
    finally:
        output.close()
        dump.close()


def test_input_times_are_the_frames_the_sender_wrote(jack_server):
    """jack_midi_clock with -J jitter writes each tick on its own frame; the daemon's input times, put back into
    frames as they arrive (the frame clock the output places notes with), are those frames (the dump's record
    of the same ticks)."""
    ticks: list[int] = []

    def heard(message: list[int], t: float) -> None:
        if message == [0xF8]:
            ticks.append(FRAME_CLOCK.frame_at(t, FRAME_CLOCK.smooth))  # the line input is stamped with

    output, midi_input, _ = open_ports("jack", None, None, heard)  # the daemon's own choice on JACK
    parts = [MidiDump(jack_server, "input-dump")]
    time.sleep(FrameClock.FIT_SPAN_S)  # the frame clock has learnt the cycles (as a daemon has, long before)
    try:
        assert isinstance(midi_input, JackMidiInput)
        parts.append(JackMidiClock(jack_server, 150.0, jitter_percent=5.0))
        for destination in (f":{IN_PORT_NAME}", parts[0].port):
            jack_server.connect(CLOCK_PORT, destination)
        parts.append(JackTransport(jack_server, 150.0))
        time.sleep(0.2)
        parts[-1].play()
        wait_until(lambda: len(ticks) > 60, 10, what="the clock's ticks")
        parts[-1].stop()
        time.sleep(0.3)
        sent = [frame for frame, m in parts[0].events() if m == [0xF8]]
        assert len(sent) == len(ticks) > 60
        intervals_sent, intervals_heard = np.diff(sent), np.diff(ticks)
        assert len(set(intervals_sent % jack_server.period)) > 4  # -J moved the ticks off the cycles' grid
        assert np.abs(intervals_heard - intervals_sent).max() <= 1  # frames
    finally:
        for part in reversed(parts):
            part.close()
        output.close()
        midi_input.close()


class MidiClockFeed:
    """MIDI clock at 240 bpm (4 beats a second) into a Clock, as the daemon's input hands it on: Start, then a
    tick every 1/96 s, from a thread, until stop()."""

    def __init__(self, clock: Clock):
        self.clock, self.running = clock, True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        self.clock.handle_midi([0xFA], t0)
        tick = 0
        while self.running:
            at = t0 + tick / 96
            time.sleep(max(0.0, at - time.perf_counter()))
            self.clock.handle_midi([0xF8], at)
            tick += 1

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)


def test_scheduler_cut_and_flush_take_back_what_was_handed_over(jack_server):
    """Following a MIDI clock, the scheduler hands notes over ahead (here 0.4 s: plenty of time to cut them)."""
    output, dump = recorded_output(jack_server, "sched-dump")
    time.sleep(FrameClock.FIT_SPAN_S)  # the frame clock has learnt the cycles (0.4 s ahead, its slope counts)
    output.lookahead_s = 0.4
    clock = Clock("midi", 240.0)
    scheduler = Scheduler(clock, output)
    assert scheduler.timed
    scheduler.start()
    feed = MidiClockFeed(clock)
    try:
        wait_until(lambda: clock.beat_at(time.perf_counter()) > 1.0, 5, what="the clock running")
        start = clock.beat_at(time.perf_counter()) + 2.0
        scheduler.add_phrase([Note(61, 90, 0.0, 0.25), Note(62, 90, 1.0, 3.0)], start, 1, channel=0)
        wait_until(lambda: output.sounding.get((0, 62)), 5, what="note 62 handed over")  # not yet due
        assert ("on", 62) not in notes(dump)
        # A newer phrase from start + 0.5 beat: 62 (at start + 1) was handed over, not written: taken back.
        scheduler.add_phrase([Note(64, 90, 0.0, 0.25)], start + 0.5, 2, channel=0)
        wait_until(lambda: ("off", 64) in notes(dump), 5, what="the second phrase")
        time.sleep(0.5)
        assert notes(dump) == [("on", 61), ("off", 61), ("on", 64), ("off", 64)]
        # A flush takes back what waits with the output and closes what sounds: nothing plays afterwards.
        output.lookahead_s = 2.0  # 71 and both note-offs are handed over at once
        now = clock.beat_at(time.perf_counter())
        scheduler.add_phrase([Note(70, 90, 0.0, 6.0), Note(71, 90, 2.0, 3.0)], now + 0.5, 3, channel=0)
        wait_until(lambda: ("on", 70) in notes(dump), 5, what="note 70")
        assert len(output.unwritten) == 3  # 71's note-on and note-off, 70's note-off
        assert scheduler.flush((0,)) == 1
        time.sleep(0.6)
        assert notes(dump)[-2:] == [("on", 70), ("off", 70)] and ("on", 71) not in notes(dump)
        assert output.sounding == {} and not output.unwritten
    finally:
        feed.stop()
        scheduler.stop()
        output.close()
        dump.close()


def test_a_note_handed_over_late_still_lands_on_its_frame(jack_server):
    """Following a MIDI clock, a phrase whose notes are due sooner than the lookahead (as after a late wake of the
    scheduler thread) is handed over at once, each note with its due time: every one is written on its own
    frame, none at the start of a cycle after it (late_written)."""
    output, dump = recorded_output(jack_server, "late-dump")
    time.sleep(FrameClock.FIT_SPAN_S)  # the frame clock has learnt the cycles
    output.lookahead_s = 0.5  # two beats at 240 bpm: every note below is "late" when handed over
    clock = Clock("midi", 240.0)
    scheduler = Scheduler(clock, output)
    scheduler.start()
    feed = MidiClockFeed(clock)
    try:
        wait_until(lambda: clock.beat_at(time.perf_counter()) > 1.0, 5, what="the clock running")
        start = clock.beat_at(time.perf_counter()) + 0.5  # 125 ms ahead: well inside the lookahead
        phrase = [Note(60 + i, 90, i * 0.25, i * 0.25 + 0.125) for i in range(6)]
        assert scheduler.add_phrase(phrase, start, 1, channel=0) == (6, 0)
        wait_until(lambda: len(notes(dump)) == 12, 5, what="the phrase written")
        assert output.late_written == 0  # each on its frame, though handed over after due − lookahead
        ons = [frame for frame, m in dump.events() if m[0] & 0xF0 == 0x90]
        assert len(ons) == len(output.errors) == 6
        assert len({frame % jack_server.period for frame in ons}) > 1  # inside cycles, not at their starts
    finally:
        feed.stop()
        scheduler.stop()
        output.close()
        dump.close()


def test_the_lookahead_applies_only_while_following_a_midi_clock(jack_server):
    """Events go to JACK ahead (and an answer's deadline moves earlier by as much) only on a MIDI clock; on the
    internal clock they are sent when due, so its answers' latency is not touched."""
    output = JackMidiOutput()
    try:
        period_s = jack_server.period / jack_server.rate
        assert output.lookahead_s == pytest.approx(HANDOVER_PERIODS * period_s + LATE_WAKE_S)
        internal = Clock("internal", 240.0)
        internal.start_internal(time.perf_counter())
        on_internal = Scheduler(internal, output)
        assert on_internal.timed
        assert on_internal.deadline(8.0) == internal.time_at(8.0) - OUTPUT_LEAD_S
        midi = Clock("midi", 240.0)
        feed = MidiClockFeed(midi)
        try:
            wait_until(lambda: midi.beat_at(time.perf_counter()) > 1.0, 5, what="the MIDI clock running")
        finally:
            feed.stop()  # (it plays on from its last ticks: time_at stays put)
        assert Scheduler(midi, output).deadline(8.0) == midi.time_at(8.0) - OUTPUT_LEAD_S - output.lookahead_s
    finally:
        output.close()


def test_both_ports_share_one_client_and_answer_to_their_old_names(jack_server):
    """One JACK client carries both ports (one process callback a cycle); each still answers to the name it had
    with a client of its own (an alias), and after the server's loss both come back on one new client."""
    output, midi_input, _ = open_ports("jack", None, None, lambda message, t: None)
    dump = MidiDump(jack_server, "alias-dump")
    try:
        assert output.port.client is midi_input.port.client is not None
        client = output.port.client.name
        ports = jack_server.ports()
        assert f"{client}:{IN_PORT_NAME}" in ports and f"{client}:{OUT_PORT_NAME}" in ports
        assert not any(p.startswith((f"{IN_PORT_NAME}:", f"{OUT_PORT_NAME}:")) for p in ports)  # no 2nd client
        old_name = f"{OUT_PORT_NAME}{client[len(CLIENT_NAME):]}:{OUT_PORT_NAME}"  # (JACK's "-01" for a 2nd daemon)
        connect = subprocess.run(["jack_connect", old_name, dump.port], env=jack_server.env, capture_output=True,
                                 text=True)
        assert connect.returncode == 0, connect.stderr  # found by its old name
        time.sleep(0.2)
        output.note_on(0, 61, 90)
        wait_until(lambda: ("on", 61) in notes(dump), 5, what="the note through the alias")
        for port in (midi_input, output):  # as the daemon does when the server went away, then came back
            port.detach()
        assert output.port.client is None and midi_input.port.client is None
        assert output.note_on(0, 62, 90) is None  # nothing to send with
        for port in (output, midi_input):
            port.reattach()
        assert output.port.client is midi_input.port.client is not None
        jack_server.connect(f"{client}:{OUT_PORT_NAME}", dump.port)
        time.sleep(0.2)
        output.note_on(0, 63, 90)
        wait_until(lambda: ("on", 63) in notes(dump), 5, what="the note after the reattach")
    finally:
        midi_input.close()
        output.close()
        dump.close()
    assert not any(OUT_PORT_NAME in p or IN_PORT_NAME in p for p in jack_server.ports())  # both gone


def feed(clock: FrameClock, cycles: range, true_time, lateness) -> np.ndarray:
    """Cycles of 64 frames at 48 kHz whose callbacks run `lateness(n)` after `true_time(n)`; the clock takes them
    in every 8 cycles. Returns rows of (cycle, true time, where `line` placed it, where `smooth` did), then."""
    placed = []
    for n in cycles:
        clock.observe((n * 64) & FRAME_MASK, true_time(n) + lateness(n))
        if n % 8 == 7:
            clock.update()
            frame = clock.unwrap((n * 64) & FRAME_MASK)
            placed.append((frame // 64, true_time(n), clock.time_of(frame, clock.line),
                           clock.time_of(frame, clock.smooth)))
    return np.array(placed)


def test_the_frame_clock_places_frames_on_the_cycles_and_follows_a_driver_that_falls_behind():
    """No server: cycles made up, with a busy machine's late callbacks and a dummy driver's steps (2 ms, then a
    20 ms stall). Frames are placed where the cycles begin (never later: events are handed over in time);
    `line` follows a step at once (due times on the system clock), `smooth` (input stamps, and due times on a
    MIDI clock followed from them) follows a small step gently — ticks stamped with it change tempo a little,
    they do not jump — and a stall as soon as it is sure of it; frames and times convert back exactly; a count
    that wraps at 2^32 or starts again (a new server) is followed."""
    rng = np.random.default_rng(1)
    late = rng.exponential(0.0008, 20_000) * (rng.random(20_000) > 0.1)  # 1 callback in 10 on time
    first = (1 << 32) // 64 - 3000  # the frame count wraps 4 s in
    step, stall = first + 3000, first + 6000  # the driver falls 2 ms behind, then 20 ms more
    clock = FrameClock()
    clock.reset(48_000)

    def true_time(n: int) -> float:
        return 100.0 + (n - first) * 64 / 48_000 + (0.002 if n >= step else 0.0) + (0.02 if n >= stall else 0.0)

    placed = feed(clock, range(first, first + 9000), true_time, lambda n: late[n - first])
    cycles, truth, line, smooth = placed.T
    assert np.all(np.diff(cycles) == 8)  # through the wrap: one count
    settled = (cycles >= first + 1000) & (cycles < step)
    for at in (line, smooth):
        assert np.abs(at - truth)[settled].max() < 0.0005  # on the cycles' starts (half a ms: 24 frames)
        assert (at - truth).max() < 0.0005  # never (much) later than a cycle begins: events handed over in time
    after_step = ((cycles >= step + 300) & (cycles < stall)) | (cycles >= stall + 300)  # 0.4 s after each
    assert np.abs(line - truth)[after_step].max() < 0.0005  # `line` has followed
    nominal = smooth - (100.0 + (cycles - first) * 64 / 48_000)  # `smooth`'s placing, beyond the nominal rate
    moves = np.abs(np.diff(nominal))[(cycles[1:] >= step - 8) & (cycles[1:] < stall - 8)]
    assert 0 < moves.max() < 0.001  # the 2 ms step taken in pieces
    followed = ((cycles >= step + 1125) & (cycles < stall)) | (cycles >= stall + 750)
    assert np.abs(smooth - truth)[followed].max() < 0.001  # 1.5 s after the step, 1 s after the stall
    frame = int(cycles[-1]) * 64 + 12345
    assert clock.frame_at(clock.time_of(frame)) == frame
    # A new server: frames from 0 again, a second later.
    restart = feed(clock, range(0, 3000), lambda n: true_time(first + 9000) + 1.0 + n * 64 / 48_000,
                   lambda n: late[n])
    assert abs(restart[-1, 2] - restart[-1, 1]) < 0.0005


def play_graph_clock(clock, timebase, now, true_time, rng, cycles: int, first_frame: int, per_tick: int) -> int:
    """Run `cycles` made-up cycles of 64 frames (cycle n begins at true_time(n), its callback a little later) through
    timebase's frame clock, and feed `clock` a tick every `per_tick` frames from `first_frame` (jack_midi_clock:
    ticks on the frames the graph writes them), stamped as the JACK input stamps them. Returns the ticks fed."""
    frames, ticks = timebase.frames, 0
    for n in range(cycles):
        now[0] = true_time(n) + rng.exponential(0.0008)
        frames.observe((n * 64) & FRAME_MASK, now[0])
        frames.update()
        while first_frame + ticks * per_tick < (n + 1) * 64:
            frame = first_frame + ticks * per_tick
            clock.handle_midi([0xF8], timebase.stamp(frames.unwrap(frame & FRAME_MASK), frames.smooth))
            ticks += 1
    return ticks


def test_a_midi_clock_on_jack_is_fitted_and_answered_on_its_own_frames_whatever_the_cycles_do():
    """No server: a sample-accurate MIDI clock (jack_midi_clock: a tick every 1,000 frames, 120 bpm at 48 kHz)
    through cycles whose callbacks come late and whose driver falls 3 ms behind the system clock every half
    second (the dummy driver on a busy VM). A Clock on the JACK timebase places every beat on the clock's own
    frame, to the frame — through smooth's moves, which a round trip through wall-clock time would add — and
    reports the tempo on the wall clock; a new server (frames from 0) does not make its time jump."""
    rng = np.random.default_rng(2)
    frames = FrameClock()
    frames.reset(48_000)
    now = [0.0]
    timebase = JackTimebase(frames, now=lambda: now[0])  # (a new server's x is carried over at the system's now)
    clock = Clock("midi", 100.0)
    clock.set_midi_system("jack")
    clock.set_timebase(timebase)
    base = 100.0

    def true_time(n: int) -> float:  # the cycle's start on the system clock: 3 ms later every 375 cycles
        return base + n * 64 / 48_000 + 0.003 * (n // 375)

    first_tick, per_tick = 2_000, 1_000
    clock.handle_midi([0xFA], true_time(first_tick // 64))  # Start
    ticks = play_graph_clock(clock, timebase, now, true_time, rng, 4_000, first_tick, per_tick)  # 5.3 s
    assert ticks > 250
    for beat in np.arange(ticks // TICKS_PER_BEAT, ticks // TICKS_PER_BEAT + 2, 0.25):  # the next two beats
        frame = timebase.frame_of(clock.clock_time_at(beat))
        assert abs(frame - (first_tick + beat * TICKS_PER_BEAT * per_tick)) <= 1
    # The tempo on the system clock: the frames run 3 ms in 500 (0.6 %) slow against it.
    assert clock.tempo() == pytest.approx(120.0 * 0.5 / 0.503, rel=0.001)
    # A new server, a cycle later: frames from 0, the timebase's time goes on.
    x_before, t_before = timebase.inward(true_time(4_000)), true_time(4_000)
    frames.reset(48_000)
    for n in range(100):
        now[0] = t_before + 0.002 + n * 64 / 48_000
        frames.observe(n * 64, now[0])
        frames.update()
    x_after = timebase.inward(t_before + 0.05)
    assert x_after - x_before == pytest.approx(0.05, abs=0.003)


def test_a_clock_the_jack_graph_writes_is_followed_in_frames_when_both_times_are_offered():
    """No server: cycles whose callbacks come late, from a dummy driver that falls 10 ms behind the system clock
    every second (it restarts its schedule after a late cycle: measured 0.7–2.4 % slow, in steps of 10–20 ms). A
    clock the JACK graph writes (jack_midi_clock: a tick every 1,000 frames) is exact in frames, and jumps on the
    wall clock at every step: offered both times (the daemon's default), the Clock stays in frames and places
    its beats on the clock's own frames. (The choice itself: tests/test_clock_sync_units.py.)"""
    rng = np.random.default_rng(3)
    frames = FrameClock()
    frames.reset(48_000)
    now = [0.0]
    timebase = JackTimebase(frames, now=lambda: now[0])
    clock = Clock("midi", 100.0)
    clock.set_midi_system("jack")
    clock.offer_timebase(timebase)
    assert clock.midi_timebase is timebase  # (before any tick: the MIDI system's own time)

    def true_time(n: int) -> float:  # the cycle's start on the system clock: 10 ms later every 750 cycles
        return 100.0 + n * 64 / 48_000 + 0.010 * (n // 750)

    first_frame, per_tick_frames = 2_000, 1_000
    clock.handle_midi([0xFA], true_time(30))  # Start
    ticks = play_graph_clock(clock, timebase, now, true_time, rng, 6_000, first_frame, per_tick_frames)  # 8 s
    assert ticks > 350
    assert clock.midi_timebase is timebase and clock.timebase_name() == "frames" and clock.timebase_switches == 0
    for beat in np.arange(ticks // TICKS_PER_BEAT, ticks // TICKS_PER_BEAT + 2, 0.25):  # the next two beats
        frame = timebase.frame_of(clock.clock_time_at(beat))
        assert abs(frame - (first_frame + beat * TICKS_PER_BEAT * per_tick_frames)) <= 1
