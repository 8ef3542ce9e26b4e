"""benchmarks/bench_bridge.py's own parts: the baseline revision's tree runs its own code; the deadline figures
read lateness, silent bars and answers right from a recording (a synthetic one here); and a JACK server that
hangs or dies part way is one sentence, with every run measured before it written to the JSON (a real run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicbridge.benchmarks.bench_bridge import (
    REPO,
    BenchError,
    Capture,
    baseline_tree,
    deadline_figures,
    deadline_problems,
    timing_figures,
)
from musicbridge.benchmarks.cli import EXIT_INCOMPLETE
from musicbridge.benchmarks.jack_rig import ClockPlayer, JackError, JackServer
from musicbridge.bridge.clock import TICKS_PER_BEAT


def test_the_baseline_tree_runs_its_own_code(tmp_path):
    sha, env = baseline_tree("HEAD", tmp_path)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert sha == head.stdout.strip()
    run_env = {**os.environ, **env}
    where = subprocess.run([sys.executable, "-c", "import musicbridge.bridge.scheduler as m; print(m.__file__)"],
                           env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve().is_relative_to(tmp_path.resolve()), where.stdout  # not the checkout's
    helped = subprocess.run([sys.executable, "-m", "musicbridge", "serve", "--help"], env={**run_env, "COLUMNS": "200"},
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--midi-api" in helped.stdout, helped.stderr[-2000:]


def test_an_unknown_baseline_revision_is_one_sentence(tmp_path):
    with pytest.raises(BenchError, match=r"--baseline-rev no-such-rev: not a commit .*\(e\.g\. 1134088"):
        baseline_tree("no-such-rev", tmp_path)


BPM = 120.0
SPB = 60.0 / BPM


def recording(late_ms: float, silent_bar: bool, jack_stall_ms: float = 0.0) -> Capture:
    """Four bars of clock at 120 bpm; an answer from beat 4; at beat 8 a missed deadline: the fallback (the same
    answer again) then the late answer from the same bar line, whose first note (past due) arrives `late_ms` late;
    bar 3 holds notes unless `silent_bar`; JACK itself stalled by `jack_stall_ms` around beat 8 (the clock's
    ticks looped back arrive that late there)."""
    player = ClockPlayer(None, BPM)
    player.tick_times = {k: 10.0 + k * SPB / TICKS_PER_BEAT for k in range(4 * 4 * TICKS_PER_BEAT + 1)}
    answer = [(60, 0.0), (64, 1.0), (67, 2.0), (72, 3.0)]
    late = [(62, 0.0), (65, 2.0), (69, 3.0)]
    if not silent_bar:
        late.append((71, 4.5))
    gen = []
    for phrase_id, start, notes in ((1, 4.0, answer), (2, 8.0, answer), (3, 8.0, late)):
        gen.append(("/musicbridge/gen/begin", (phrase_id, 2, start)))
        gen += [("/musicbridge/gen/note", (phrase_id, pitch, 90, rel, 0.5)) for pitch, rel in notes]
        gen.append(("/musicbridge/gen/end", (phrase_id, len(notes))))
    sent = [(4.0 + rel, pitch) for pitch, rel in answer] + [(8.0, 60), (8.0, 62), (9.0, 64)]  # 62 played late
    sent += [(8.0 + rel, pitch) for pitch, rel in late[1:]]
    messages = []
    for beat, pitch in sorted(sent):
        t = player.time_of(beat) + (late_ms / 1000 if (beat, pitch) == (8.0, 62) else 0.0)
        messages += [(t, [0x90, pitch, 90]), (t + 0.2, [0x80, pitch, 0])]
    stop = player.time_of(16.0)
    messages.append((stop + 0.002, [0xB0, 123, 0]))
    stats = {"generation_latency_ms": {"p50": 300.0}, "model_ms": {"p50": 290.0}, "deadline_missed": 1,
             "late_answers": 1, "fallbacks": 1, "answers": 2, "late_dropped": 0, "timing_error_ms": {"p99": 0.1},
             "midi_in": 400, "scheduler": {"realtime": True}}
    ticks = sorted(player.tick_times)
    floor = [player.tick_times[k] + (jack_stall_ms / 1000 if 8 * TICKS_PER_BEAT <= k < 9 * TICKS_PER_BEAT else 0.0)
             for k in ticks]
    return Capture(player, stop, gen, sorted(messages), floor, stats)


def test_deadline_figures_find_a_late_note_and_a_silent_bar():
    figures = deadline_figures(recording(late_ms=40.0, silent_bar=True), bars=4)
    assert figures["notes_late"] == 1 and figures["lateness_ms"]["max"] == pytest.approx(40.0, abs=0.01)
    assert figures["silent_bars"] == [3] and figures["first_bar_with_notes"] == 1
    assert figures["notes_unannounced"] == 0 and figures["notes_received"] == 9
    assert figures["bar_lines_answered"] == 2 and figures["gen_sequences"] == 3  # fallback + late answer: one
    problems = " ".join(deadline_problems({"fallback": "repeat", **figures}))
    assert "1 note(s) arrived more than 5 ms after their beat" in problems and "bars [3] were silent" in problems
    assert "silent" not in " ".join(deadline_problems({"fallback": "hold", **figures}))


def test_deadline_figures_of_a_run_that_holds():
    figures = deadline_figures(recording(late_ms=1.0, silent_bar=False), bars=4)
    assert figures["notes_late"] == 0 and figures["silent_bars"] == []
    assert deadline_problems({"fallback": "repeat", **figures}) == []
    timing = timing_figures(recording(late_ms=1.0, silent_bar=False), bars=4)
    assert timing["answers"] == 2 and timing["gen_sequences"] == 3  # counted once per bar line
    assert timing["stop_to_all_notes_off_ms"] == pytest.approx(2.0)


def test_lateness_is_measured_against_the_clock_as_jack_delivered_it():
    """A note as late as JACK's own stall there was not sent late: the clock's ticks came as late."""
    figures = deadline_figures(recording(late_ms=40.0, silent_bar=False, jack_stall_ms=40.0), bars=4)
    assert figures["notes_late"] == 0 and figures["lateness_vs_grid_ms"]["max"] == pytest.approx(40.0, abs=0.01)
    assert figures["jack_floor_ms"]["max"] == pytest.approx(40.0, abs=0.01)
    figures = deadline_figures(recording(late_ms=80.0, silent_bar=False, jack_stall_ms=40.0), bars=4)
    assert figures["notes_late"] == 1 and figures["lateness_ms"]["max"] == pytest.approx(40.0, abs=0.01)


# ---- a rig that fails part way ------------------------------------------------------------------------------
def test_a_hung_jack_server_is_one_sentence_not_a_hang():
    """jack_lsp against a jackd that does not answer (stopped here with SIGSTOP; in the session that found it,
    wedged after a run) is a JackError naming the server after the bounded wait, not a TimeoutExpired traceback;
    a jackd that has exited is said at once."""
    server = JackServer().start()
    server.tool_timeout_s = 1.0
    try:
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(JackError, match=rf"{server.name} did not answer jack_lsp within 1 s: jackd hangs"):
                server.wait_for_port("musicbridge in")
            assert not server.alive()
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert server.alive()
        server.process.kill()
        server.process.wait()
        with pytest.raises(JackError, match=rf"the JACK server {server.name} has exited \(code -9"):
            server.connect("system:capture_1", "system:playback_1")
        assert not server.alive()
    finally:
        server.stop()


def _children(pid: int, name: str) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            comm = fields[0].split("(", 1)[1]
            parent = int(fields[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and comm == name:
            found.append(int(stat.parent.name))
    return found


def test_runs_measured_before_the_jack_server_died_are_written(bridge_models, tmp_path):
    """A real bench-bridge whose JACK server is killed as its second run begins: the first run's figures are in
    the JSON all the same, `stopped_early` and `teardown_failed` say what happened, stderr ends with one sentence
    and no traceback, and the exit status is EXIT_INCOMPLETE."""
    out = tmp_path / "bench.json"
    bench = subprocess.Popen(
        [sys.executable, "-m", "musicbridge.benchmarks.bench_bridge", "--model", str(bridge_models / "melody_a"),
         "--parts", "schedulers", "--bpm", "240", "--bars", "4", "--json-out", str(out)],
        env={**os.environ, "TMPDIR": str(tmp_path)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list(tmp_path.glob("bench-bridge-*/serve-precise-normal-priority-*.log")):  # run 2 begins
            assert bench.poll() is None and time.monotonic() < deadline, bench.communicate(timeout=60)
            time.sleep(0.05)
        jackd = _children(bench.pid, "jackd")
        assert len(jackd) == 1, jackd
        os.kill(jackd[0], signal.SIGKILL)
        _, stderr = bench.communicate(timeout=180)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.communicate()
    result = json.loads(out.read_text())
    assert [run["scheduler"] for run in result["runs"]] == ["precise"], stderr[-3000:]
    assert result["runs"][0]["arrival_error_ms"]["n"] > 0 and result["runs"][0]["answers"] > 0
    assert "has exited (code -9" in result["stopped_early"]
    assert "had already exited (code -9) before the teardown" in result["teardown_failed"]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("bench_bridge: INCOMPLETE — stopped early: the JACK server") and last.endswith(
        "The runs measured before that are in the JSON; run the benchmark again for the rest."), last
    assert bench.returncode == EXIT_INCOMPLETE
