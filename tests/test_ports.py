"""`musicbridge ports` against a real JACK server started by the test."""

import json
import os
import subprocess
import time

from musicbridge.benchmarks.jack_rig import MidiDump, end_process, jack_tool


def _ports(*args, env=None):
    return subprocess.run(["musicbridge", "ports", *args], capture_output=True, text=True, env=env, timeout=60)


def test_ports_lists_the_ports_of_a_real_jack_server(jack_server):
    """Two clients the project did not write, each in its own process (an rtmidi client inside the test process
    once crashed the suite in libjack): jack_midi_dump's input is a synth to send to, jack_midiseq's output a
    keyboard to listen to."""
    synth = MidiDump(jack_server, name="test-synth")  # its port: "test-synth:input"
    # jack_midiseq NAME LOOP_FRAMES START NOTE FRAMES: a loop of one note, its port "test-keys:out" (nothing listens)
    keyboard = subprocess.Popen([jack_tool("jack_midiseq"), "test-keys", "24000", "0", "60", "1200"],
                                env=jack_server.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        jack_server.wait_for_port("test-keys:out")
        result = _ports("--midi-api", "jack", "--json", env={**os.environ})
        assert result.returncode == 0, result.stderr
        found = json.loads(result.stdout)
        assert found["api"] == "jack"
        assert any("test-synth:input" in port for port in found["outputs"])  # we can send to the synth's input
        assert any("test-keys:out" in port for port in found["inputs"])  # and listen to the keyboard's output
        assert not any("test-keys" in port for port in found["outputs"])  # each on its side only
        table = _ports("--midi-api", "jack", env={**os.environ})
        assert table.returncode == 0 and "test-synth:input" in table.stdout
    finally:
        synth.close()
        end_process(keyboard)


def test_an_explicit_api_that_cannot_open_is_a_clear_error():
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"no-such-server-{time.time_ns()}", "JACK_NO_START_SERVER": "1"}
    result = _ports("--midi-api", "jack", env=env)
    assert result.returncode == 1
    assert "MIDI API 'jack' cannot be opened" in result.stderr and "To enable MIDI" in result.stderr


def test_an_unknown_api_is_refused():
    result = _ports("--midi-api", "beos")
    assert result.returncode == 1 and "unknown MIDI API 'beos'" in result.stderr
