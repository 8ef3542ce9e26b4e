"""The scheduler on a real JACK port: late notes are dropped and counted, a new phrase cuts the old one, a flush
closes everything, and every note-on gets its note-off. Checked by the order of the events and where they land
in the clock's beats (bridge_harness); the scheduler's send error in milliseconds is benchmarks/bench_bridge.py's."""

from __future__ import annotations

import subprocess
import time

from bridge_harness import ON_STEP_BEATS, MidiPeer, wait_until

from musicbridge.bridge.clock import Clock
from musicbridge.bridge.midi_io import MidiOutput
from musicbridge.bridge.scheduler import Scheduler
from musicbridge.notes import Note


def notes_of(peer: MidiPeer) -> list[tuple[str, int]]:
    return [(kind, pitch) for _, kind, _, pitch, _ in peer.notes()]


def test_late_notes_dropped_phrases_cut_and_flushed(jack_server):
    output = MidiOutput("jack", None)
    peer = MidiPeer("sched-peer")
    subprocess.run(["jack_connect", jack_server.wait_for_port("musicbridge out"),
                    jack_server.wait_for_port("sched-peer-rec:from-bridge")], env=jack_server.env, check=True)
    time.sleep(0.2)
    clock = Clock("internal", 240.0)  # 4 beats a second
    scheduler = Scheduler(clock, output)
    scheduler.start()
    try:
        clock.start_internal(time.perf_counter())
        now = clock.beat_at(time.perf_counter())
        start = now + 1.0
        phrase = [Note(60, 90, -2.0, -1.5), Note(61, 90, 0.0, 0.5), Note(62, 90, 0.5, 4.0)]  # the first is late
        assert scheduler.add_phrase(phrase, start, 1, channel=0) == (2, 1)
        assert scheduler.late_dropped == 1
        # A second phrase from start + 1 beat cuts note 62 there (it would sound until start + 4).
        assert scheduler.add_phrase([Note(64, 90, 0.0, 0.25)], start + 1.0, 2, channel=0) == (1, 0)
        wait_until(lambda: ("off", 64) in notes_of(peer), 5, what="the second phrase")
        # 60 dropped, not played late; 62 cut where the new phrase begins (at the same beat a note-off goes
        # first), not at its own end 3 beats later.
        assert notes_of(peer) == [("on", 61), ("off", 61), ("on", 62), ("off", 62), ("on", 64), ("off", 64)]
        landed = {(kind, pitch): clock.beat_at(t) for t, kind, _, pitch, _ in peer.notes()}
        for key, beat in ((("on", 61), start), (("off", 62), start + 1.0), (("on", 64), start + 1.0)):
            assert abs(landed[key] - beat) < ON_STEP_BEATS, (key, landed[key] - beat)  # on its 16th
        # A flush while a note sounds closes it at once and nothing pending plays afterwards.
        now = clock.beat_at(time.perf_counter())
        scheduler.add_phrase([Note(70, 90, 0.0, 8.0), Note(71, 90, 2.0, 3.0)], now + 0.5, 3, channel=0)
        wait_until(lambda: ("on", 70) in notes_of(peer), 5, what="note 70")
        closed = scheduler.flush((0,))
        assert closed == 1
        time.sleep(1.0)
        assert ("off", 70) in notes_of(peer) and ("on", 71) not in notes_of(peer)
        assert output.sounding == {}
        ons = sum(1 for kind, _ in notes_of(peer) if kind == "on")
        offs = sum(1 for kind, _ in notes_of(peer) if kind == "off")
        assert ons == offs == 4
        assert len(scheduler.errors) == 4
    finally:
        scheduler.stop()
        output.close()
        peer.close()
