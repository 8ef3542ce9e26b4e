"""Port housekeeping never takes the output port's lock to look at the ports, so it can never hold up a note-on
(bridge/midi_io.py, _Port.check): on a real JACK server, housekeeping runs to the end while a sender holds the
lock, and the port still sends afterwards."""

from __future__ import annotations

import threading

from bridge_harness import MidiPeer, wait_until

from musicbridge.bridge.midi_io import MidiOutput

CHECKS = 20  # housekeeping passes (every 0.5 s in the daemon)


def test_housekeeping_looks_at_the_ports_without_the_output_lock(jack_server):
    peer = MidiPeer("housekeeping-peer")
    jack_server.wait_for_port("housekeeping-peer-rec:from-bridge")
    output = MidiOutput("jack", "housekeeping-peer-rec:from-bridge")  # a named port: checked every pass
    try:
        assert output.port.connected_to == "housekeeping-peer-rec:from-bridge"
        held, release = threading.Event(), threading.Event()

        def sender() -> None:  # a sender in the middle of a burst (a flush's paced note-offs) holds the lock
            with output.port.lock:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=sender, daemon=True)
        holder.start()
        assert held.wait(5)
        housekeeping = threading.Thread(target=lambda: [output.check() for _ in range(CHECKS)], daemon=True)
        housekeeping.start()
        housekeeping.join(timeout=5)
        finished_while_held = not housekeeping.is_alive()
        release.set()
        holder.join(5)
        housekeeping.join(5)
        assert finished_while_held, "housekeeping waited for the lock a note-on needs"
        output.note_on(0, 60, 100)
        output.note_off(0, 60)
        wait_until(lambda: [kind for _, kind, _, pitch, _ in peer.notes() if pitch == 60] == ["on", "off"], 5,
                   what="the note through the checked port")
    finally:
        output.close()
        peer.close()
