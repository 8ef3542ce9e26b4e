"""The session log (`serve --log-session DIR`) and `musicbridge replay DIR`, on a real daemon over OSC (real UDP on
127.0.0.1, no MIDI system) playing the shipped mel_2bar (int8 ONNX): continue with 3 variations, sample under a
scale lock, interpolate and its path. No --seed: the seeds the engine draws must replay too. Replay must make
every answer again token for token (and every z), write the session's MIDI and piano roll, refuse a model whose
files are not the logged ones, and skip a corrupt line without losing the others.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from bridge_harness import Daemon, OscPeer, wait_until
from typer.testing import CliRunner

from musicbridge.bridge.session_log import (
    LOG_FILE,
    MIDI_EVERY_S,
    MIDI_FILE,
    NoteHeard,
    SessionLog,
    SessionLogError,
    Timeline,
    model_files_hash,
    read_log,
)
from musicbridge.cli import app
from musicbridge.notes import Note, NoteSequence
from musicbridge.replay import MIDI_FILE as REPLAY_MIDI
from musicbridge.replay import PIANOROLL_FILE, REPORT_FILE, ReplayError, replay_session
from musicbridge.runtime import SHIPPED_DIR

BPM = 240.0  # a bar per second
MODEL = "mel_2bar"
VARIATIONS = 3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def start_daemon(folder: Path, *args: str) -> tuple[Daemon, OscPeer]:
    env = {"JACK_DEFAULT_SERVER": f"mbtest-none-{uuid.uuid4().hex[:8]}", "JACK_NO_START_SERVER": "1"}
    daemon = Daemon(["--midi-api", "auto", "--clock", "internal", "--bpm", str(BPM), "--model", MODEL,
                     "--oscquery-port", "0", "--log-session", str(folder), *args], env=env)
    osc = OscPeer(daemon.osc_port, daemon.reply_port)
    daemon.start()
    daemon.wait_ready(osc)
    return daemon, osc


def play_phrase(osc: OscPeer, pitch: int = 60, notes: int = 8) -> None:
    """Eighth notes at 240 bpm, in real time."""
    for k in range(notes):
        osc.send("/musicbridge/note", pitch + k % 5, 100)
        time.sleep(0.1)
        osc.send("/musicbridge/note", pitch + k % 5, 0)
        time.sleep(0.025)


def phrases_since(osc: OscPeer, since: float, count: int, what: str) -> list:
    return wait_until(lambda: (lambda p: p if len(p) >= count else None)(
        [p for p in osc.phrases(since).values() if p["begin"] and p["end"]]), 10, what=what)


def records(folder: Path, kind: str) -> list[dict]:
    return [record for _, record in read_log(folder).records if record["type"] == kind]


@pytest.fixture(scope="module")
def logged_session(tmp_path_factory) -> Path:
    """A session logged by a real daemon: continue (3 variations), sample (scale locked), interpolate."""
    folder = tmp_path_factory.mktemp("logged") / "session"
    daemon, osc = start_daemon(folder, "--variations", str(VARIATIONS))
    try:
        since = time.perf_counter()
        play_phrase(osc, notes=16)  # two bars or more: two continuations or more
        phrases_since(osc, since, 2, "two continuations")
        osc.send("/musicbridge/param/scale", "D:dorian")
        osc.send("/musicbridge/mode", "sample")
        since = time.perf_counter()
        phrases_since(osc, since, 1, "a sample")
        osc.send("/musicbridge/param/scale", "off")
        osc.send("/musicbridge/mode", "off")
        osc.send("/musicbridge/param/steps", 4)
        for slot, pitch in (("a", 60), ("b", 72)):
            play_phrase(osc, pitch)
            osc.send("/musicbridge/capture", slot)
        assert osc.state()["slots"] == "ab"
        since = time.perf_counter()
        osc.send("/musicbridge/mode", "interpolate")
        # Two bar lines, not two phrases: on a loaded machine a missed deadline's fallback and the late answer
        # that takes over are two phrases on one bar line.
        wait_until(lambda: len({p["begin"][2] for p in osc.phrases(since).values() if p["begin"] and p["end"]}) >= 2,
                   10, what="the interpolation and the next point of its path")
        assert not osc.messages("/musicbridge/error")
    finally:
        assert daemon.stop() == 0, daemon.output()  # SIGTERM: the log is closed, session.mid written
        osc.close()
    assert "session log: " in daemon.output() and "events dropped" not in daemon.output()
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def rewrite(folder: Path, change) -> None:
    """Apply `change(line number, record) -> str | None` (None: keep) to the lines of the log."""
    path = folder / LOG_FILE
    lines = path.read_text().splitlines()
    for index, line in enumerate(lines):
        new = change(index + 1, json.loads(line))
        if new is not None:
            lines[index] = new
    path.write_text("\n".join(lines) + "\n")


def first_line(folder: Path, kind: str, answer_kind: str | None = None) -> int:
    return next(line for line, record in read_log(folder).records
                if record["type"] == kind and (answer_kind is None or record["kind"] == answer_kind))


def test_serve_logs_every_answer_with_what_made_it(logged_session):
    header = records(logged_session, "session")[0]
    assert header["format"] == 1 and isinstance(header["seed"], int) and header["params"]["variations"] == VARIATIONS
    answers = records(logged_session, "answer")
    kinds = [a["kind"] for a in answers]
    assert {"continue", "sample", "interpolate", "replay"} <= set(kinds), kinds
    model_hash = model_files_hash(SHIPPED_DIR / MODEL)
    z_size = json.loads((SHIPPED_DIR / MODEL / "model.json").read_text())["z_size"]
    for answer in answers:
        request = answer["request"]
        assert answer["model"]["name"] == MODEL and answer["model"]["sha256"] == model_hash
        assert request["seed"] == header["seed"] + answer["seq"]  # drawn by the engine: no --seed was given
        assert answer["params"]["mode"] in ("continue", "sample", "interpolate")
        assert answer["outcome"] in ("played", "stale", "stale_model", "overtaken")
        assert answer["timing"]["latency_ms"] >= answer["timing"]["model_ms"] >= 0
        assert len(answer["tokens"]) == 2 * 16
    cont = next(a for a in answers if a["kind"] == "continue")
    assert cont["request"]["variations"] == VARIATIONS and len(cont["request"]["tokens"]) == 32  # the input window
    assert len(cont["candidates"]) == VARIATIONS
    assert np.asarray(cont["z"], np.float32).shape == (1, VARIATIONS, z_size)  # one decode of 3 codes
    sample = next(a for a in answers if a["kind"] == "sample")
    assert sample["request"]["scale"] == sample["params"]["scale"] == "D:dorian" and sample["types"]["scale"] == "scale"
    interpolation = next(a for a in answers if a["kind"] == "interpolate")
    assert len(interpolation["path"]) == 4 and interpolation["request"]["other"] is not None
    assert next(a for a in answers if a["kind"] == "replay")["z"] == []  # a point of the path: no model call
    played = records(logged_session, "played")
    assert {p["answer"] for p in played} <= {a["seq"] for a in answers} and played
    assert len(records(logged_session, "input")) == 16 + 8 + 8  # every note played in
    session = NoteSequence.from_midi(logged_session / MIDI_FILE)
    tracks = {}
    for note in session.notes:
        tracks[note.instrument] = tracks.get(note.instrument, 0) + 1
    assert len(tracks) == 2 and all(count > 0 for count in tracks.values())  # input and output, one timeline


def test_replay_makes_every_answer_again_and_writes_the_session(logged_session, tmp_path):
    folder = copy_of(logged_session, tmp_path)
    result = subprocess.run([sys.executable, "-m", "musicbridge", "replay", str(folder)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    answers = records(folder, "answer")
    lines = result.stdout.splitlines()
    assert len(lines) == len(answers) and all(line.endswith("equal") for line in lines), result.stdout
    assert f"{len(answers)} answers replayed: {len(answers)} equal, 0 different" in result.stderr
    assert (folder / PIANOROLL_FILE).read_bytes()[:8] == PNG_MAGIC
    assert (folder / REPLAY_MIDI).read_bytes() == (folder / MIDI_FILE).read_bytes()  # same notes, same timeline
    report = json.loads((folder / REPORT_FILE).read_text())
    assert report["answers"] == report["equal"] == len(answers) and report["different"] == 0


def test_replay_says_which_answers_differ_and_fails(logged_session, tmp_path):
    folder = copy_of(logged_session, tmp_path)
    changed_tokens, changed_z = first_line(folder, "answer", "continue"), first_line(folder, "answer", "sample")

    def change(line, record):
        if line == changed_tokens:
            record["tokens"][-1] = (record["tokens"][-1] + 1) % 90
        elif line == changed_z:
            record["z"][0][0][0] = float(np.nextafter(np.float32(record["z"][0][0][0]), np.float32(np.inf)))
        else:
            return None
        return json.dumps(record)

    rewrite(folder, change)
    checks = {check.line: check.differs for check in replay_session(folder).checks}
    assert checks.pop(changed_tokens) == ["tokens"] and checks.pop(changed_z) == ["z"]  # one float32 step apart
    assert all(differs == [] for differs in checks.values())
    result = CliRunner().invoke(app, ["replay", str(folder), "--no-png"])
    assert result.exit_code == 1 and "DIFFERENT (tokens)" in result.output and "DIFFERENT (z)" in result.output


def test_replay_refuses_a_model_whose_files_are_not_the_logged_ones(logged_session, tmp_path):
    folder = copy_of(logged_session, tmp_path)
    rewrite(folder, lambda line, record: json.dumps(record | {"model": record["model"] | {"sha256": "0" * 64}})
            if record["type"] == "answer" else None)
    with pytest.raises(ReplayError, match=f"played with model '{MODEL}' .*files sha256 000000000000.* are not those"
                                          ".*pass --model DIR"):
        replay_session(folder)
    result = CliRunner().invoke(app, ["replay", str(folder), "--no-png"])
    assert result.exit_code == 1 and "pass --model DIR with the model it was played with" in result.output
    assert not (folder / REPLAY_MIDI).exists()  # refused before anything was made or written


def test_replay_finds_a_moved_model_with_model(logged_session, tmp_path):
    folder = copy_of(logged_session, tmp_path)
    rewrite(folder, lambda line, record: json.dumps(record | {"model": record["model"] | {"path": "/nowhere/mel"}})
            if record["type"] == "answer" else None)
    with pytest.raises(ReplayError, match="no longer at /nowhere/mel"):
        replay_session(folder)
    with pytest.raises(ReplayError, match="none of the --model folders"):
        replay_session(folder, ["mel_16bar"])  # another model: its files have another hash
    replay = replay_session(folder, ["mel_16bar", MODEL])
    assert replay.checks and not replay.different
    assert replay.models == {model_files_hash(SHIPPED_DIR / MODEL): str(SHIPPED_DIR / MODEL)}


def test_a_corrupt_line_is_reported_and_skipped(logged_session, tmp_path):
    folder = copy_of(logged_session, tmp_path)
    broken_answer, broken_input = first_line(folder, "answer", "sample"), first_line(folder, "input")
    rewrite(folder, lambda line, record: '{"type": "answer", "seq": 3, "tok' if line == broken_answer
            else "\x00\x01 not json" if line == broken_input else None)
    with (folder / LOG_FILE).open("a") as log:
        log.write('{"type": "input", "on": 1.0')  # cut short: the record in flight when the daemon was killed
    replay = replay_session(folder)
    assert len(replay.skipped) == 3, replay.skipped
    assert f"line {broken_answer}: not JSON" in replay.skipped[1] and f"line {broken_input}: not JSON" in \
        replay.skipped[0] and "cut short" in replay.skipped[2]
    every_answer = len(records(logged_session, "answer"))
    assert len(replay.checks) == every_answer - 1 and not replay.different  # the others replay all the same
    result = CliRunner().invoke(app, ["replay", str(folder), "--no-png"])
    assert result.exit_code == 0 and f"skipped line {broken_answer}: not JSON" in " ".join(result.output.split())


def test_the_timeline_plays_records_as_the_scheduler_does():
    """At 60 bpm a beat is a second. Phrase 1 (notes on beats 0, 1, 2, 3) from 0 s; phrase 2 comes late, at 2.5 s,
    for 1 s: its notes due before then are never sent, and it cuts phrase 1 from 2.5 s (not from 1 s: what sounded
    stays); the repeat fallback plays phrase 1 again from 6 s on another channel; a stop at 6.7 s ends it all."""
    timeline = Timeline()
    notes = [Note(60 + k, 100, float(k), k + 0.5) for k in range(4)]
    timeline.add_answer(1, notes)
    timeline.add_answer(2, [replace(n, pitch=n.pitch + 12) for n in notes])
    played = {"type": "played", "bpm": 60.0, "channel": 0, "replace": True}
    timeline.add(played | {"t": -0.1, "answer": 1, "request": 1, "start_s": 0.0})
    timeline.add({"type": "input", "on": 0.25, "off": 0.75, "channel": 3, "pitch": 50, "velocity": 90})
    timeline.add(played | {"t": 2.5, "answer": 2, "request": 2, "start_s": 1.0})
    timeline.add(played | {"t": 5.9, "answer": 1, "request": 3, "start_s": 6.0, "channel": 9})
    timeline.add({"type": "cut", "t": 6.7, "at": 6.7, "why": "transport stop"})
    sequence = timeline.sequence()
    assert sequence.tempos[0].bpm == 60.0
    expected = [(1, 0, 60, 0.0, 0.5), (0, 3, 50, 0.25, 0.75), (1, 0, 61, 1.0, 1.5), (1, 0, 62, 2.0, 2.5),
                (2, 0, 74, 3.0, 3.5), (2, 0, 75, 4.0, 4.5), (1, 9, 60, 6.0, 6.5)]
    by_answer = timeline.sequence(instrument_per_answer=True)
    assert [(n.instrument, n.channel, n.pitch, n.start, n.end) for n in by_answer.notes] == expected
    assert [(n.instrument, n.pitch) for n in sequence.notes] == [(min(i, 1), pitch) for i, _, pitch, _, _ in expected]
    assert sequence.notes[-1].is_drum  # channel 10


def test_the_log_never_waits_and_counts_what_it_drops(tmp_path):
    folder = tmp_path / "session"
    session_log = SessionLog(folder, queue_size=4)
    for k in range(10):  # the writer is not running: the queue fills, post() drops and counts
        session_log.post(NoteHeard(session_log.t0 + k, float(k), 0, 60, 100 if k % 2 == 0 else 0))  # on, off, …
    assert session_log.dropped == 6
    session_log.start(seed=7)
    session_log.close()
    session_log.close()  # idempotent
    dropped = records(folder, "dropped")
    assert dropped == [{"type": "dropped", "t": dropped[0]["t"], "count": 6}]
    assert [(r["pitch"], r["on"], r["off"]) for r in records(folder, "input")] == [(60, 0.0, 1.0), (60, 2.0, 3.0)]
    assert session_log.summary()["dropped"] == 6
    with pytest.raises(SessionLogError, match="holds a session log already"):
        SessionLog(folder)
    unused = SessionLog(tmp_path / "unused")
    unused.close()  # never started (the daemon did not come up): no empty log left behind to refuse a rerun
    assert not (tmp_path / "unused" / LOG_FILE).exists()


def test_a_killed_daemon_leaves_a_log_that_replays(tmp_path):
    folder = tmp_path / "killed"
    daemon, osc = start_daemon(folder)
    try:
        since = time.perf_counter()
        play_phrase(osc)
        phrases_since(osc, since, 1, "a continuation")
        time.sleep(MIDI_EVERY_S + 1)  # one periodic session.mid
    finally:
        daemon.signal(signal.SIGKILL)
        daemon.process.wait(10)
        osc.close()
    assert NoteSequence.from_midi(folder / MIDI_FILE).notes  # the last whole file, renamed into place
    assert not list(folder.glob(".*tmp*"))
    replay = replay_session(folder)
    assert replay.checks and not replay.different
