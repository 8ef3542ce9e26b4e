"""`musicbridge ports` against a real JACK server started by the test."""

import json
import os
import subprocess
import time

import rtmidi


def _ports(*args, env=None):
    return subprocess.run(["musicbridge", "ports", *args], capture_output=True, text=True, env=env, timeout=60)


def test_ports_lists_the_ports_of_a_real_jack_server(jack_server):
    synth = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="test-synth")
    synth.open_virtual_port("synth in")
    keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="test-keys")
    keyboard.open_virtual_port("keys out")
    try:
        jack_server.wait_for_port("synth in")
        result = _ports("--midi-api", "jack", "--json", env={**os.environ})
        assert result.returncode == 0, result.stderr
        found = json.loads(result.stdout)
        assert found["api"] == "jack"
        assert any("synth in" in port for port in found["outputs"])  # we can send to the synth's input
        assert any("keys out" in port for port in found["inputs"])  # and listen to the keyboard's output
        table = _ports("--midi-api", "jack", env={**os.environ})
        assert table.returncode == 0 and "synth in" in table.stdout
    finally:
        synth.delete()
        keyboard.delete()


def test_an_explicit_api_that_cannot_open_is_a_clear_error():
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"no-such-server-{time.time_ns()}", "JACK_NO_START_SERVER": "1"}
    result = _ports("--midi-api", "jack", env=env)
    assert result.returncode == 1
    assert "MIDI API 'jack' cannot be opened" in result.stderr and "To enable MIDI" in result.stderr


def test_an_unknown_api_is_refused():
    result = _ports("--midi-api", "beos")
    assert result.returncode == 1 and "unknown MIDI API 'beos'" in result.stderr
