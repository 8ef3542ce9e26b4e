"""Sync to an outside clock, end to end on a real JACK server, against clients nobody here wrote.

Debian's jack_midi_clock (driven by jack_transport) is the clock; a keyboard player following it feeds a phrase,
with what real keyboards send besides (Active Sensing, sysex) on the same input; jack_midi_dump records the clock
and the daemon's output on JACK's sample timeline. Where each answer note lands is read in beats on the clock's
own ticks: on its intended 16th (within half a 16th), near the tick, and no later in the run than at its start.
Milliseconds are benchmarks/bench_clock.py's business. Also: a clock that goes silent is reported and followed
again, and the daemon's threads never run above JACK's.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from bridge_harness import STATUS_NAMES, ClockPlayer, Daemon, MidiPeer, OscPeer, wait_until

from musicbridge.benchmarks.jack_rig import (
    CLOCK_PORT,
    ClockFollower,
    ClockTimeline,
    JackMidiClock,
    JackServer,
    JackTransport,
    MidiDump,
    note_ons,
    placed_notes,
    planned_notes,
)
from musicbridge.bridge import priority
from musicbridge.bridge.clock import TICKS_PER_BEAT
from musicbridge.bridge.midi_io import IN_PORT_NAME, OUT_PORT_NAME

BPM = 150.0
SPB = 60.0 / BPM
PHRASE = [(beat, beat + 0.5, pitch, 96) for beat, pitch in enumerate((60, 64, 67, 72))]  # a bar, looped
ON_STEP = 0.125  # beats: half a 16th — a note within it lands on its intended step
NEAR_TICK = 1.0 / TICKS_PER_BEAT  # beats: the median error stays within a tick (5 ms at 150 bpm, ~1 ms when idle)
PLACED_SHARE = 0.9  # of the notes meant to play: the rest may fall to a machine stalled for tens of ms
MIDI_INDEX = STATUS_NAMES.index("midi")


def serve_args(models, stats) -> list[str]:
    return ["--midi-api", "jack", "--clock", "midi", "--model", str(models / "melody_a"), "--seed", "7",
            "--log-level", "debug", "--stats-json", str(stats)]


class OutsideClock:
    """The daemon, jack_midi_clock + jack_transport, the keyboard player and the dump, wired on `server`."""

    def __init__(self, server, models, stats, sensing_s: float = 0.0, sysex_per_s: float = 0.0):
        self.server = server
        self.daemon = Daemon(serve_args(models, stats))
        self.osc = OscPeer(self.daemon.osc_port, self.daemon.reply_port)
        self.parts = []
        self.daemon.start()
        self.daemon.wait_ready(self.osc)
        self.dump = self._part(MidiDump(server, "sync-dump"))
        self.clock = self._part(JackMidiClock(server, BPM, resync_s=0.5))
        self.player = self._part(ClockFollower("sync-player", PHRASE, loop_beats=4, sensing_s=sensing_s,
                                               sysex_per_s=sysex_per_s))
        for source, destination in ((CLOCK_PORT, IN_PORT_NAME), (CLOCK_PORT, self.dump.port),
                                    (OUT_PORT_NAME, self.dump.port), (CLOCK_PORT, "sync-player-clock:in"),
                                    ("sync-player:out", IN_PORT_NAME)):
            server.connect(source, destination)
        self.transport = self._part(JackTransport(server, BPM))
        time.sleep(0.3)  # the first message after a new connection can be lost

    def _part(self, part):
        self.parts.append(part)
        return part

    def close(self) -> int:
        for part in reversed(self.parts):
            part.close()
        try:
            return self.daemon.stop()
        finally:
            self.osc.close()

    def placed(self, from_beat: float = 0.0):
        """(placed notes, missing) of the answer notes meant for `from_beat` on, on the recorded grid."""
        events = self.dump.events()
        planned = [(beat, pitch) for beat, pitch in planned_notes(self.osc.phrases()) if beat >= from_beat]
        return placed_notes(ClockTimeline(events), planned, note_ons(events, channel=0), window_beats=ON_STEP)


def errors_in_beats(placed) -> np.ndarray:
    return np.array([(frame - grid) / per_tick / TICKS_PER_BEAT for _, frame, grid, per_tick in placed])


def assert_on_the_grid(placed, missing: int, at_least: int) -> np.ndarray:
    errors = errors_in_beats(placed)
    assert len(placed) >= at_least, f"{len(placed)} answer notes measured, {missing} missing"
    assert len(placed) >= PLACED_SHARE * (len(placed) + missing), f"{missing} of {len(placed) + missing} missing"
    assert abs(np.median(errors)) < NEAR_TICK, errors
    return errors


def test_answers_stay_on_the_16th_grid_of_jack_midi_clock_with_sensing_and_sysex(jack_server, bridge_models,
                                                                                  tmp_path):
    """Active Sensing ten times a second and 1 KB of sysex twenty times a second on the clock's input (rtmidi
    once counted their time into no arrival: answers drifted a beat early within seconds). 12 bars."""
    stats = tmp_path / "stats.json"
    rig = OutsideClock(jack_server, bridge_models, stats, sensing_s=0.1, sysex_per_s=20.0)
    try:
        rig.transport.play()
        time.sleep(12 * 4 * SPB)
        rig.transport.stop()
        time.sleep(0.5)
    finally:
        assert rig.close() == 0, rig.daemon.output()
    placed, missing = rig.placed()
    errors = assert_on_the_grid(placed, missing, at_least=30)
    third = len(errors) // 3
    drift = np.median(errors[-third:]) - np.median(errors[:third])
    assert abs(drift) < NEAR_TICK, f"answers moved {drift:+.3f} beats from the first third of the run to the last"
    summary = json.loads(stats.read_text())
    assert summary["midi_in_ignored"] >= 0.5 * (rig.player.sent["sensing"] + rig.player.sent["sysex"])
    assert summary["clock_silences"] == 0 and summary["lost_clock_ticks"] == 0


def test_stop_song_position_and_continue_from_jack_midi_clock(jack_server, bridge_models, tmp_path):
    """Play two bars, stop, locate to bar 5 (jack_midi_clock: Stop, Song Position Pointers, then Continue), play
    on: the answers start on the bar lines after beat 16 and land on the clock's grid there; nothing starts while
    stopped."""
    rig = OutsideClock(jack_server, bridge_models, tmp_path / "stats.json")
    try:
        rig.transport.play()
        time.sleep(2.3 * 4 * SPB)
        rig.transport.stop()
        time.sleep(0.6)
        rig.transport.locate(round(16 * SPB * jack_server.rate))  # beat 16, the first beat of bar 5
        time.sleep(0.3)
        rig.transport.play()
        time.sleep(0.5 + 3.5 * 4 * SPB)  # jack_midi_clock's resync pause, then three and a half bars
        rig.transport.stop()
        time.sleep(0.5)
    finally:
        assert rig.close() == 0, rig.daemon.output()
    events = rig.dump.events()
    statuses = [m[0] for _, m in events if m and m[0] in (0xFA, 0xFB, 0xFC, 0xF2)]
    rest = statuses[statuses.index(0xFA):] if 0xFA in statuses else []
    for status in (0xFC, 0xF2, 0xFB):  # what jack_midi_clock sends: Start, then Stop, Song Position, Continue
        assert status in rest, statuses
        rest = rest[rest.index(status):]
    stop_frame = next(frame for frame, m in events if m[0] == 0xFC)
    continue_frame = next(frame for frame, m in events if m[0] == 0xFB)
    assert not [f for f, _ in note_ons(events, channel=0) if stop_frame < f < continue_frame]
    starts = sorted(p["begin"][2] for p in rig.osc.phrases().values() if p["begin"] and p["begin"][2] >= 16)
    assert starts and starts[0] == 20.0 and all(s % 4 == 0 for s in starts), starts
    placed, missing = rig.placed(from_beat=16.0)
    assert_on_the_grid(placed, missing, at_least=4)


def test_a_clock_gone_silent_is_reported_and_followed_again(jack_server, bridge_models, tmp_path):
    """The clock's sender pauses 1.5 s mid-bar without Stop (ticks and notes resume late): /musicbridge/error
    clock_silent, status `midi` silent then ok, and the answers after it land on the sender's shifted grid."""
    stats = tmp_path / "stats.json"
    daemon = Daemon(serve_args(bridge_models, stats))
    osc = OscPeer(daemon.osc_port, daemon.reply_port)
    daemon.start()
    peer = MidiPeer()
    try:
        daemon.wait_ready(osc)
        peer.connect(jack_server)
        pause, pause_beat = 1.5, 10.5
        clock = ClockPlayer(peer, BPM)
        clock.add_notes((bar * 4 + s, bar * 4 + e, p, v) for bar in range(8) for s, e, p, v in PHRASE)
        clock.jitter = lambda tick: pause if tick >= pause_beat * TICKS_PER_BEAT else 0.0
        clock.start(until_beat=29.0)  # a beat past the last note looked at (beat 28): those have been played
        clock.join()
        # Stop at once: a pause after the last tick longer than a beat (0.4 s at 150 bpm) is a second silence
        peer.send([0xFC])
        time.sleep(0.2)
    finally:
        code = daemon.stop()
        peer.close()
        osc.close()
    assert code == 0, daemon.output()
    errors = osc.messages("/musicbridge/error")
    assert [args[0] for _, _, args in errors] == ["clock_silent"], errors
    midi_states = [args[MIDI_INDEX] for _, _, args in osc.messages("/musicbridge/status")]
    assert "silent" in midi_states and midi_states[-1] == "ok", midi_states
    assert "MIDI clock back after" in " ".join(daemon.output().split())

    def expected_time(beat: float) -> float:
        return clock.time_of(beat) + (pause if beat >= pause_beat else 0.0)

    # Answers asked for after the return (one asked for during the silence was played on the flywheel, then cut)
    later = {key: p for key, p in osc.phrases().items() if p["begin"] and p["begin"][2] >= 16.0}
    after = [(beat, pitch) for beat, pitch in planned_notes(later) if beat < 28.0]
    ons = [(t, pitch) for t, kind, _, pitch, _ in peer.notes() if kind == "on"]
    found = []
    for beat, pitch in after:
        near = [t for t, p in ons if p == pitch and abs(t - expected_time(beat)) < ON_STEP * SPB]
        if near:
            found.append((min(near, key=lambda t: abs(t - expected_time(beat))) - expected_time(beat)) / SPB)
    assert len(after) >= 4 and len(found) >= PLACED_SHARE * len(after), (after, found)
    assert abs(np.median(found)) < NEAR_TICK, found
    summary = json.loads(stats.read_text())
    assert summary["clock_silences"] == 1


def test_daemon_threads_never_run_above_an_ordinary_jack_server(jack_server, bridge_models, tmp_path):
    """jackd --no-realtime runs its clients' threads (the daemon's own ports' among them) at ordinary priority:
    a real-time thread of the daemon would preempt them, so none is real-time."""
    daemon = Daemon(serve_args(bridge_models, tmp_path / "stats.json"))
    osc = OscPeer(daemon.osc_port, daemon.reply_port)
    daemon.start()
    try:
        daemon.wait_ready(osc)
        assert priority.realtime_threads(daemon.process.pid) == {}
    finally:
        assert daemon.stop() == 0, daemon.output()
        osc.close()
    assert "the JACK server is not real-time" in " ".join(daemon.output().split())


def test_daemon_threads_stay_below_a_real_time_jack_server(bridge_models, tmp_path, monkeypatch):
    """jackd -R at its default -P 10 runs its clients' threads at 5: the daemon's own threads run real-time,
    below them (the daemon once ran its scheduler at 10)."""
    server = JackServer(realtime_priority=10).start()
    try:
        if not priority.realtime_threads(server.process.pid):
            pytest.skip("this machine gives jackd no real-time scheduling (needs CAP_SYS_NICE or an rtprio "
                        "limit: `ulimit -r`, the audio group)")
        for key, value in server.client_env.items():
            monkeypatch.setenv(key, value)
        daemon = Daemon(serve_args(bridge_models, tmp_path / "stats.json"))
        osc = OscPeer(daemon.osc_port, daemon.reply_port)
        daemon.start()
        try:
            daemon.wait_ready(osc)
            levels = wait_until(lambda: sorted(set(priority.realtime_threads(daemon.process.pid).values())), 5,
                                what="real-time threads")
        finally:
            assert daemon.stop() == 0, daemon.output()
            osc.close()
    finally:
        server.stop()
    jack_clients = 5  # jackd2: its -P minus 5
    assert jack_clients in levels, levels  # the daemon's ports' JACK threads
    ours = [level for level in levels if level != jack_clients]
    assert ours and max(ours) < jack_clients, levels
