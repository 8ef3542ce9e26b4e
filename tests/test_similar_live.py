"""`serve --index`: /musicbridge/similar and mode `similar` on a real daemon over OSC (real UDP on 127.0.0.1, no MIDI
system), the shipped mel_2bar, an index made by `musicbridge embed` from a test-made MIDI folder; the session log
of its answers and `musicbridge replay` of them; what is refused at start and over OSC.

The phrase is played over OSC in real time at 120 bpm, from a bar line the test sets (/musicbridge/transport/position):
a 16th is 125 ms, so the notes land in their steps on a loaded machine, and the library's copy of the phrase up a
fourth is its nearest window by a wide margin (tests/test_embed.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from bridge_harness import Daemon, OscPeer, wait_until
from test_embed import QUERY, TRANSPOSED, write_library

from musicbridge.benchmarks.fuzz_osc import bundle, message
from musicbridge.bridge.library import file_sha256
from musicbridge.bridge.session_log import read_log
from musicbridge.replay import replay_session

BPM = 120.0
BEAT_S = 60.0 / BPM
START = 400.0  # a bar line far from where the daemon's clock is: setting it relocates (the capture starts empty)
COPY = "query_up_a_fourth.mid"
NO_MIDI = {"JACK_NO_START_SERVER": "1"}


def no_midi_env() -> dict:
    return {**NO_MIDI, "JACK_DEFAULT_SERVER": f"mbtest-none-{uuid.uuid4().hex[:8]}"}


def start_daemon(*args: str) -> tuple[Daemon, OscPeer]:
    daemon = Daemon(["--midi-api", "auto", "--clock", "internal", "--bpm", str(BPM), "--oscquery-port", "0",
                     *args], env=no_midi_env())
    osc = OscPeer(daemon.osc_port, daemon.reply_port)
    daemon.start()
    daemon.wait_ready(osc)
    return daemon, osc


def serve_refused(*args: str) -> subprocess.CompletedProcess:
    """`musicbridge serve ARGS` that must stop at start."""
    return subprocess.run([sys.executable, "-m", "musicbridge", "serve", "--no-status", "--midi-api", "auto",
                           "--oscquery-port", "0", "--osc-port", "0", *args], capture_output=True, text=True,
                          timeout=120, env={**no_midi_env(), "COLUMNS": "300"})


def play_query(osc: OscPeer) -> None:
    """The query phrase from beat START, each note-on and note-off sent at its time."""
    osc.send("/musicbridge/transport/position", START)
    t0 = time.perf_counter()
    events = sorted([(start, pitch, 100) for pitch, start, _ in QUERY]
                    + [(start + length, pitch, 0) for pitch, start, length in QUERY])
    for beat, pitch, velocity in events:
        time.sleep(max(0.0, t0 + beat * BEAT_S - time.perf_counter()))
        osc.send("/musicbridge/note", pitch, velocity)


def similar(osc: OscPeer, *k: int) -> tuple[list[tuple], tuple]:
    """/musicbridge/similar [k]: (the match replies' arguments, the end reply's)."""
    since = time.perf_counter()
    osc.send("/musicbridge/similar", *k)
    end = osc.wait_for("/musicbridge/similar/end", since)[-1][2]
    return [args for _, _, args in osc.messages("/musicbridge/similar/match", since)], end


def error_since(osc: OscPeer, since: float) -> tuple:
    return osc.wait_for("/musicbridge/error", since)[-1][2]


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """lib.npz: `musicbridge embed` of test_embed's library (the query up a fourth among eight other phrases)."""
    folder = tmp_path_factory.mktemp("similar-live")
    write_library(folder / "lib")
    made = subprocess.run([sys.executable, "-m", "musicbridge", "embed", "lib", "-o", "lib.npz"], cwd=folder,
                          capture_output=True, text=True, timeout=180)
    assert made.returncode == 0, made.stderr
    return folder / "lib.npz"


def test_similar_answers_over_osc_and_mode_similar_plays_the_nearest_phrase(library, tmp_path):
    session = tmp_path / "session"
    daemon, osc = start_daemon("--model", "mel_2bar", "--model", "mel_16bar", "--index", str(library),
                               "--log-session", str(session), "--mode", "similar")
    try:
        assert osc.state()["mode"] == "similar"
        since = time.perf_counter()
        play_query(osc)
        # Mode similar: from the bar line after the phrase, the library's phrase nearest to it — its copy up a
        # fourth, as the library holds it (the query's notes moved up, on the query's beats).
        answer = wait_until(lambda: next((p for p in osc.phrases(since).values()
                                          if p["begin"] and p["end"] and p["begin"][2] == START + 8), None),
                            6, what="the answer from the bar line after the phrase")
        assert [(n[1], n[3]) for n in answer["notes"]] == [(pitch + TRANSPOSED, start) for pitch, start, _ in QUERY]
        # /musicbridge/similar 3: the three nearest to the bars just played, the copy first.
        matches, end = similar(osc, 3)
        assert end == (3,) and [m[0] for m in matches] == [1, 2, 3]
        rank, file, bar, distance, voice = matches[0]
        assert (Path(file).name, bar, voice) == (COPY, 0, 0)
        assert distance < 0.7 * matches[1][3] and matches[1][3] <= matches[2][3]
        assert len(similar(osc)[0]) == 5  # k defaults to 5
        # A bundle of queries is one request: one answer, the last query's.
        since = time.perf_counter()
        osc.send_raw(bundle(message("/musicbridge/similar", 2), message("/musicbridge/similar", 4)))
        osc.wait_for("/musicbridge/similar/end", since)
        time.sleep(0.5)
        assert [args for _, _, args in osc.messages("/musicbridge/similar/end", since)] == [(4,)]
        # Another model: the index is mel_2bar's, so similar is refused with a sentence, and nothing crashes.
        osc.send("/musicbridge/model/load", "mel_16bar")
        wait_until(lambda: osc.state()["model"] == "mel_16bar", 10, what="mel_16bar active")
        since = time.perf_counter()
        osc.send("/musicbridge/similar")
        code, text = error_since(osc, since)
        assert code == "not_ready" and "lib.npz was embedded with mel_2bar" in text and "mel_16bar" in text
        osc.send("/musicbridge/mode", "continue")
        since = time.perf_counter()
        osc.send("/musicbridge/mode", "similar")
        assert error_since(osc, since)[0] == "not_ready" and osc.state()["mode"] == "continue"
    finally:
        assert daemon.stop() == 0, daemon.output()
        osc.close()
    # The session log names the index and each answer's library windows; replay makes them again and checks.
    answers = [r for _, r in read_log(session).records if r["type"] == "answer" and r["kind"] == "similar"]
    assert answers, "no similar answer was logged"
    played = next(r for r in answers if r["request"]["start_beat"] == START + 8)
    assert played["index"] == {"path": str(library.resolve()), "sha256": file_sha256(library)}
    first = played["matches"][0]
    assert (Path(first["file"]).name, first["bar"], first["voice"]) == (COPY, 0, 0) and isinstance(first["row"], int)
    replay = replay_session(session)
    checked = [check for check in replay.checks if check.kind == "similar"]
    assert replay.skipped == [] and len(checked) == len(answers)
    assert all(check.equal for check in replay.checks), [c.differs for c in replay.checks]
    assert replay.indexes == {file_sha256(library): str(library.resolve())}
    # An index moved away (or embedded again) cannot say what the daemon found: those answers are skipped, with
    # the reason; given with --index, it is found by its hash.
    moved = shutil.move(library, tmp_path / "moved.npz")
    try:
        skipped = replay_session(session)
        assert [c for c in skipped.checks if c.kind == "similar"] == [] and len(skipped.skipped) == len(answers)
        assert "not checked: the library index it was found in" in skipped.skipped[0]
        assert "pass --index FILE" in skipped.skipped[0]
        assert all(c.equal for c in replay_session(session, index_files=[str(moved)]).checks)
    finally:
        shutil.move(moved, library)


def test_without_an_index_similar_is_refused_over_osc():
    daemon, osc = start_daemon("--model", "mel_2bar")
    try:
        for address, args in (("/musicbridge/similar", (2,)), ("/musicbridge/mode", ("similar",))):
            since = time.perf_counter()
            osc.send(address, *args)
            code, text = error_since(osc, since)
            assert code == "not_ready" and "no library index loaded: start serve with --index FILE.npz" in text
        since = time.perf_counter()
        osc.send("/musicbridge/similar", 51)
        assert error_since(osc, since)[0] == "out_of_range"
        assert osc.state()["mode"] == "continue" and daemon.process.poll() is None
    finally:
        assert daemon.stop() == 0, daemon.output()
        osc.close()


def test_serve_refuses_an_index_of_another_model_and_mode_similar_without_one(library):
    other = serve_refused("--model", "mel_16bar", "--index", str(library))
    assert other.returncode == 1
    assert "lib.npz was embedded with mel_2bar" in other.stderr and "not with mel_16bar" in other.stderr
    assert "Traceback" not in other.stderr
    alone = serve_refused("--model", "mel_2bar", "--mode", "similar")
    assert alone.returncode == 1 and "--mode similar plays phrases from a library" in alone.stderr
    missing = serve_refused("--index", str(library.parent / "nowhere.npz"))
    assert missing.returncode == 1 and "no index file at" in missing.stderr
