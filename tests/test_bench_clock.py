"""benchmarks/bench_clock.py: one short configuration end to end (the CLI, a real JACK server, jack_midi_clock, the
daemon and the pure echo baseline in the same run), and its rule that a run which measured nothing fails.
The figures themselves are the benchmark's business; here, that they are there, counted and put side by side."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from musicbridge.benchmarks.bench_clock import problems
from musicbridge.benchmarks.cli import EXIT_FAILED, conclude
from musicbridge.benchmarks.jack_rig import TICKS_PER_16TH


def test_a_short_run_puts_the_echo_baseline_beside_the_daemon(bridge_models, tmp_path):
    out = tmp_path / "clock.json"
    done = subprocess.run(
        [sys.executable, "-m", "musicbridge", "bench-clock", "--model", str(bridge_models / "melody_a"),
         "--bpm", "120", "--jitter", "0", "--traffic", "off", "--seconds", "8", "--json-out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["stopped_early"] is None and result["teardown_failed"] is None
    [run] = result["runs"]
    echo = run["baseline_echo"]
    # The clock ran (64 16ths in 8 s at 120 bpm; a slow start of the rig on a busy machine costs some: 53 were heard
    # in one clean-clone run), and the echo answered each 16th it heard, all measured but the first and last.
    heard = echo["ticks_heard"] // TICKS_PER_16TH
    assert run["notes_measured"] > 0 and heard >= 32 and echo["notes_measured"] >= heard - 2, echo
    assert echo["notes_missing"] == 0  # every 16th answered before the next one
    # Every xrun is the driver's late timer or a named client's unfinished cycle (or jackd's plain xrun line).
    assert run["jack_xruns_driver_woke_late"] + sum(run["jack_late_clients"].values()) <= run["jack_xruns"]
    assert echo["answers_sent"] == (echo["ticks_heard"] - 1) // TICKS_PER_16TH + 1  # one answer per 16th heard
    if echo["jitter_p99_ms"]:
        assert run["jitter_p99_over_baseline"] == round(run["jitter_p99_ms"] / echo["jitter_p99_ms"], 2)
    else:
        assert run["jitter_p99_over_baseline"] is None


def test_a_run_whose_echo_measured_nothing_fails_the_benchmark():
    row = {"bpm": 120.0, "jitter_percent": 0.0, "traffic": False, "notes_measured": 12,
           "baseline_echo": {"notes_measured": 0}}
    found = problems([row])
    assert found == ["no echo baseline notes were measured in 1 run(s) (120 bpm, jitter 0 %, without traffic): "
                     "their figures mean nothing"]
    assert problems([{**row, "baseline_echo": {"notes_measured": 3}}]) == []
    assert problems([]) == ["no run was measured"]
    with pytest.raises(SystemExit) as failed:
        conclude("bench_clock", {"runs": [row], "stopped_early": None, "teardown_failed": None}, found, "Read on.")
    assert failed.value.code == EXIT_FAILED
