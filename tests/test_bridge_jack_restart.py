"""The MIDI system under a running daemon: a JACK server that dies and comes back, malformed MIDI through
--thru, thousands of note-offs at once, and the notes a killed predecessor left sounding.

All real: jackd (dummy driver) under the test's control, `musicbridge serve` in a subprocess, rtmidi peers.
"""

from __future__ import annotations

import signal
import time

import pytest
from bridge_harness import Daemon, MidiPeer, OscPeer, Sink, wait_until

from musicbridge.bridge import midi_io

RECONNECT_S = 5.0  # jackd is back → the daemon's ports are there again (measured ≈ 1 s: two polls)
LOST_S = 3.0  # jackd gone → noticed (the watch client is told at once; the main loop looks every 0.5 s)


def serve_args(models, *extra: str, clock: str = "internal") -> list[str]:
    return ["--midi-api", "jack", "--clock", clock, "--model", str(models / "melody_a"), "--seed", "3",
            "--no-realtime", *extra]


def connected(server, a: str, b: str) -> bool:
    return any(b in peer for port, peers in server.connections().items() if a in port for peer in peers)


# jack_server is asked for too, though the daemon runs on its own server: a live jackd keeps the shared
# registry /dev/shm/jack-shm-registry that clean_stale_jack_shm would otherwise remove between the stop and the
# restart. On a real machine it stays there between jackd runs, and libjack in a running client keeps it mapped
# for good: with it removed, no client of the daemon's process could ever connect again (not a daemon bug).
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_jack_restart_is_noticed_and_ports_come_back(jack_server, own_jack_server, bridge_models, sig):
    server = own_jack_server
    sink = Sink()
    daemon = Daemon(serve_args(bridge_models, "--mode", "sample", "--bpm", "240", "--midi-out", "sink:in"))
    osc = OscPeer(daemon.osc_port, daemon.reply_port)
    daemon.start()
    try:
        daemon.wait_ready(osc)
        osc.send("/musicbridge/transport/tempo", 200.0)  # state the restart must not lose
        wait_until(lambda: sink.notes_on() > 3, 15, what="answers at the sink")
        before = osc.status()
        assert before[:4] == ("sample", pytest.approx(200.0), 1, "melody_a")
        assert before[5] == "ok"

        since = time.perf_counter()
        server.process.send_signal(sig)
        server.process.wait(10)
        sink.close()
        sink = None
        errors = osc.wait_for("/musicbridge/error", since, timeout=LOST_S)
        assert errors[-1][2][0] == "midi_lost", errors
        lost = osc.status()
        assert lost[5] == "lost" and lost[:4] == before[:4]  # the musical state is kept
        assert "JACK server went away" in daemon.output()
        assert daemon.process.poll() is None

        server.process = None
        server.start()
        up = time.perf_counter()
        sink = Sink()  # the peer comes back too, under the same name
        # Asked over OSC, not with jack_lsp: a JACK client coming and going every few ms is what the daemon
        # must live with (see bridge/jack_watch.py), not what this measures.
        wait_until(lambda: osc.status()[5] == "ok", RECONNECT_S, interval=0.05, what="MIDI back after the restart")
        reconnect_s = time.perf_counter() - up
        print(f"\nreconnect after a JACK restart ({sig.name}): {reconnect_s:.2f} s")
        wait_until(lambda: sink.notes_on() > 3, 15, what="answers at the returned sink")
        assert connected(server, "musicbridge out", "sink:in")  # the named port, reconnected
        assert any("musicbridge in" in port for port in server.ports())  # the virtual port, re-created
        assert osc.status()[:4] == before[:4]
        assert "JACK server is back" in daemon.output()
    finally:
        code = daemon.stop()
        osc.close()
        if sink is not None:
            sink.close()
    assert code == 0, daemon.output()
    assert "Traceback" not in daemon.output()


def test_thru_passes_well_formed_messages_of_every_length(jack_server, bridge_models):
    daemon = Daemon(serve_args(bridge_models, "--mode", "off", "--thru"))
    osc = OscPeer(daemon.osc_port, daemon.reply_port)
    daemon.start()
    peer = MidiPeer()
    try:
        daemon.wait_ready(osc)
        peer.connect(jack_server)
        truncated = [[0x90, 61], [0x90], [0x80, 61], [0xB0, 7], [0xE0]]  # note/control messages cut short
        whole = [[0xC3, 5], [0xD3, 40], [0x93, 60, 100], [0xB3, 7, 90], [0xE3, 0, 64], [0x83, 60, 0]]
        for _ in range(200):  # a flood of them, as a broken controller sends
            for message in truncated + whole:
                peer.send(message)
            time.sleep(0.002)
        wait_until(lambda: len(peer.messages()) >= 200 * len(whole), 10, what="the thru messages")
        time.sleep(0.3)
        assert osc.status()[0] == "off"  # still answering
        passed = [m for _, m in peer.messages()]  # (before the exit's all-notes-off)
    finally:
        code = daemon.stop()
        peer.close()
        osc.close()
    assert code == 0, daemon.output()
    assert "Traceback" not in daemon.output() and "IndexError" not in daemon.output()
    assert all(m in whole for m in passed), [m for m in passed if m not in whole][:5]
    assert len(passed) == 200 * len(whole)


def test_all_notes_off_is_paced_and_covers_every_channel_that_sounded(jack_server):
    """4,096 sounding notes on 16 channels: a burst overflows a receiver (rtmidi's input queue holds 1,024
    messages per poll); paced, every note-off arrives, and CC 123 goes to every channel that sounded."""
    output = midi_io.MidiOutput("jack")
    peer = MidiPeer("pace")
    try:
        jack_server.connect("musicbridge out:", ":from-bridge")
        time.sleep(0.2)
        keys = [(channel, pitch) for channel in range(16) for pitch in range(128)]
        for copy in range(2):  # every key twice: 4,096 note-ons, sent at a pace the receiver keeps up with
            for start in range(0, len(keys), 64):
                for channel, pitch in keys[start:start + 64]:
                    output.note_on(channel, pitch, 64 + copy)
                time.sleep(0.005)
        wait_until(lambda: len(peer.messages()) >= 2 * len(keys), 10, what="the note-ons")
        since = time.perf_counter()
        closed = output.all_notes_off((0,))
        assert closed == 2 * len(keys)
        wait_until(lambda: len(peer.messages(since)) >= 2 * len(keys) + 16, 10, what="the note-offs")
        time.sleep(0.2)
    finally:
        output.close()
        peer.close()
    offs: dict[tuple[int, int], int] = {}
    for _, kind, channel, pitch, _ in peer.notes(since):
        assert kind == "off"
        offs[(channel, pitch)] = offs.get((channel, pitch), 0) + 1
    assert offs == {key: 2 for key in keys}
    controls = {(m[0] & 0x0F, m[1]) for _, m in peer.messages(since) if m[0] & 0xF0 == 0xB0}
    assert controls == {(channel, 123) for channel in range(16)}


def test_startup_turns_off_what_a_killed_predecessor_left_sounding(jack_server, bridge_models):
    sink = Sink()
    peer = MidiPeer("player")
    daemons: list[Daemon] = []

    def start(*extra: str) -> Daemon:
        # MIDI clock: no transport start at launch, whose flush would send an all-notes-off of its own
        daemon = Daemon(serve_args(bridge_models, "--mode", "off", "--thru", "--midi-out", "sink:in", *extra,
                                   clock="midi"))
        osc = OscPeer(daemon.osc_port, daemon.reply_port)
        daemons.append(daemon)
        try:
            daemon.start()
            daemon.wait_ready(osc)
        finally:
            osc.close()
        return daemon

    try:
        first = start()
        jack_server.connect("player:to-bridge", "musicbridge in")
        time.sleep(0.2)
        peer.send([0x94, 64, 100])  # channel 5, through to the sink
        wait_until(lambda: [0x94, 64, 100] in sink.messages(), 10, what="the note at the sink")
        first.signal(signal.SIGKILL)  # nothing in the killed process can close it
        first.process.wait(10)
        mark = len(sink.messages())

        second = start()
        wait_until(lambda: sink.all_notes_off_channels(mark) == set(range(16)), 10,
                   what="all-notes-off on every channel --thru may have played on")
        assert second.stop() == 0

        mark = len(sink.messages())
        third = start("--no-startup-notes-off")
        time.sleep(0.5)
        assert sink.messages()[mark:] == []  # (its exit sends the usual all-notes-off: not looked at here)
        assert third.stop() == 0
    finally:
        for daemon in daemons:
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.stop()
        peer.close()
        sink.close()
