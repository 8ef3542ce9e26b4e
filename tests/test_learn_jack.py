"""MIDI learn end to end: real CCs and notes sent by a JACK client into `musicbridge serve`, the mappings file read
back after a restart, list and clear over OSC (bridge/learn.py; the table alone is tests/test_learn.py).

The daemon runs with --thru, so what it passes through reaches the test's recorder: a learned control must not.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bridge_harness import Daemon, MidiPeer, OscPeer, wait_until

from musicbridge.bridge.learn import tomllib  # the standard library's, or tomli on Python 3.10

CC, NOTE_ON, NOTE_OFF = 0xB0, 0x90, 0x80


class Rig:
    def __init__(self, server, models, mappings):
        self.daemon = Daemon(["--midi-api", "jack", "--clock", "internal", "--bpm", "240", "--mode", "off", "--thru",
                              "--model", str(models / "melody_a"), "--model", str(models / "melody_b"),
                              "--models-dir", str(models), "--mappings", str(mappings), "--oscquery-port", "0"])
        self.osc = OscPeer(self.daemon.osc_port, self.daemon.reply_port)
        self.daemon.start()
        self.daemon.wait_ready(self.osc)
        self.peer = MidiPeer()
        self.peer.connect(server)

    def mappings(self, request: str, *args) -> tuple[list[tuple], tuple]:
        """Send a learn request; its reply: the mapping rows and the end (count, learning)."""
        since = time.perf_counter()
        self.osc.send(request, *args)
        end = self.osc.wait_for("/musicbridge/learn/end", since)[-1]
        rows = [m[2] for m in self.osc.messages("/musicbridge/learn/mapping", since) if m[0] <= end[0]]
        return rows, end[2]

    def learn(self, target: str, message: list[int]) -> None:
        """/musicbridge/learn target, then the control's message: waits for the mappings sent after the binding."""
        rows, end = self.mappings("/musicbridge/learn", target)
        assert end == (len(rows), target)
        since = time.perf_counter()
        self.peer.send(message)
        end = self.osc.wait_for("/musicbridge/learn/end", since)[-1][2]
        assert end == (len(rows) + 1, ""), end

    def wait_state(self, name: str, value, timeout: float = 5.0) -> None:
        wait_until(lambda: self.osc.state()[name] == value, timeout, what=f"{name} = {value!r}")

    def passed_through(self, status: int, number: int) -> list[list[int]]:
        return [m for _, m in self.peer.messages() if m[0] == status and m[1] == number]

    def close(self) -> int:
        try:
            return self.daemon.stop()
        finally:
            self.peer.close()
            self.osc.close()


def test_learn_real_controls_over_jack_keep_them_from_thru_and_reload_them_after_a_restart(
        jack_server, bridge_models, tmp_path):
    mappings = tmp_path / "mappings.toml"
    r = Rig(jack_server, bridge_models, mappings)
    try:
        # A knob: CC 21 on channel 1 spans the temperature's range.
        r.learn("temperature", [CC, 21, 64])
        r.peer.send([CC, 21, 127])
        r.wait_state("temperature", 2.0)
        r.peer.send([CC, 21, 0])
        r.wait_state("temperature", 0.0)
        # Unbound input still passes through; the learned CC never does.
        r.peer.send([CC, 22, 5])
        r.peer.send([NOTE_ON, 60, 90])
        r.peer.send([NOTE_OFF, 60, 0])
        wait_until(lambda: r.passed_through(CC, 22) and r.passed_through(NOTE_OFF, 60), 5, what="thru")
        assert r.passed_through(CC, 21) == []
        # A pad: note 36 on channel 10 steps through the modes (from off, wrapping to continue).
        r.learn("mode", [NOTE_ON | 9, 36, 100])
        r.peer.send([NOTE_OFF | 9, 36, 0])
        r.peer.send([NOTE_ON | 9, 36, 100])
        r.wait_state("mode", "continue")
        r.peer.send([NOTE_OFF | 9, 36, 0])
        r.peer.send([NOTE_ON | 9, 36, 100])
        r.wait_state("mode", "call-response")
        # Actions: a button (CC 20: press 127, release 0) stops, a note plays.
        r.learn("stop", [CC, 20, 127])
        r.peer.send([CC, 20, 0])
        r.peer.send([CC, 20, 127])
        r.wait_state("playing", 0)
        r.learn("play", [NOTE_ON, 40, 100])
        r.peer.send([NOTE_ON, 40, 100])
        r.wait_state("playing", 1)
        # The model: a fader's top zone is the second --model.
        r.learn("model", [CC, 23, 0])
        r.peer.send([CC, 23, 127])
        r.wait_state("model", "melody_b", timeout=10)  # at the next bar line
        time.sleep(0.2)
        for status, number in ((NOTE_ON | 9, 36), (NOTE_OFF | 9, 36), (CC, 20), (NOTE_ON, 40), (CC, 23)):
            assert r.passed_through(status, number) == [], (status, number)
        rows, end = r.mappings("/musicbridge/learn/list")
        expected = [("temperature", "cc", 1, 21), ("mode", "note", 10, 36), ("stop", "cc", 1, 20),
                    ("play", "note", 1, 40), ("model", "cc", 1, 23)]
        assert rows == expected and end == (5, "")
        written = tomllib.loads(mappings.read_text())["mapping"]
        assert [(m["target"], "cc" if "cc" in m else "note", m["channel"], m.get("cc", m.get("note")))
                for m in written] == expected
    finally:
        assert r.close() == 0, r.daemon.output()

    # A restart with the same file: the mappings work at once, without learning.
    r = Rig(jack_server, bridge_models, mappings)
    try:
        rows, end = r.mappings("/musicbridge/learn/list")
        assert rows == expected and end == (5, "")
        r.peer.send([CC, 21, 127])
        r.wait_state("temperature", 2.0)
        # Clear one target: its CC is ordinary input again (passed through, the temperature stays).
        rows, end = r.mappings("/musicbridge/learn/clear", "temperature")
        assert rows == expected[1:] and end == (4, "")
        r.peer.send([CC, 21, 0])
        wait_until(lambda: r.passed_through(CC, 21), 5, what="CC 21 through")
        assert r.osc.state()["temperature"] == 2.0
        assert "temperature" not in mappings.read_text()
        rows, end = r.mappings("/musicbridge/learn/clear")
        assert rows == [] and end == (0, "")
        assert tomllib.loads(mappings.read_text()) == {}
    finally:
        assert r.close() == 0, r.daemon.output()


def test_a_bad_mappings_file_stops_serve_with_the_line(tmp_path):
    mappings = tmp_path / "mappings.toml"
    mappings.write_text('[[mapping]]\ntarget = "temperature"\nchannel = 1\ncc = 21\n\n'
                        '[[mapping]]\ntarget = "tempo"\nchannel = 1\ncc = 22\n')
    result = subprocess.run([sys.executable, "-m", "musicbridge", "serve", "--no-status", "--osc-port", "0",
                             "--mappings", str(mappings)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    error = " ".join(result.stderr.split())
    assert "line 6" in error and "'tempo'" in error and "fix or remove it" in error, result.stderr
    assert "Traceback" not in result.stderr
