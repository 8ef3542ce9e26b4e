"""`musicbridge embed` / `similar` on test-made MIDI folders with real models (the shipped mel_2bar, tiny exports
of both architectures), the index file, and the retrieval measure on cases whose answer is known."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from midi_factory import write_corpus, write_not_midi, write_truncated
from test_no_torch import imported_modules

from musicbridge.codecs import get_codec
from musicbridge.data import DatasetError, load_dataset
from musicbridge.data.build import build_dataset
from musicbridge.embeddings import (
    EmbeddingError,
    EmbeddingIndex,
    build_index,
    copy_ranks,
    distances,
    midi_files,
    ranking_summary,
    same_piece_ranks,
    transposed_windows,
)
from musicbridge.notes import Note, NoteSequence
from musicbridge.runtime import load_model

# Two-bar phrases as (pitch, start beat, beats); every one ends on the second bar line, so it is one window.
QUERY = [(67, 0, .5), (69, .5, .5), (67, 1, .5), (64, 1.5, .5), (60, 2, 1), (62, 3, .5), (64, 3.5, .5),
         (65, 4, 1.5), (64, 5.5, .5), (62, 6, 1), (59, 7, 1)]
LIBRARY = {
    "scale_up": [(60 + [0, 2, 4, 5, 7, 9, 11, 12][i], i, 1) for i in range(8)],
    "scale_down": [(72 - [0, 1, 3, 5, 7, 8, 10, 12][i], i, 1) for i in range(8)],
    "arpeggio": [(p, i * .5, .5) for i, p in enumerate([60, 64, 67, 72, 67, 64, 60, 64, 67, 72, 76, 72, 67, 64, 60,
                                                        55])],
    "repeated": [(62, i * .5, .5) for i in range(16)],
    "long_notes": [(72, 0, 2), (71, 2, 2), (69, 4, 2), (67, 6, 2)],
    "dotted": [(65, 0, 1.5), (67, 1.5, .5), (69, 2, 1.5), (65, 3.5, .5), (64, 4, 1.5), (62, 5.5, .5), (60, 6, 2)],
    "leaps": [(55, 0, 1), (79, 1, 1), (57, 2, 1), (76, 3, 1), (59, 4, 1), (74, 5, 1), (60, 6, 2)],
    "sixteenths": [(60 + (i % 5), i * .25, .25) for i in range(32)],
}
TRANSPOSED = 5  # the query's copy in the library, up a fourth


def phrase(notes, shift=0) -> NoteSequence:
    return NoteSequence([Note(pitch + shift, 90, start, start + length) for pitch, start, length in notes])


def write_library(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, notes in LIBRARY.items():
        phrase(notes).save(folder / f"{name}.mid")
    phrase(QUERY, TRANSPOSED).save(folder / "query_up_a_fourth.mid")
    return folder


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m musicbridge ARGS` in a real process, its tables wide enough for one line per row."""
    return subprocess.run([sys.executable, "-m", "musicbridge", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=180, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def shipped():
    return load_model("mel_2bar", threads=1)


def test_a_phrase_finds_its_transposed_copy_first(tmp_path):
    write_library(tmp_path / "lib")
    phrase(QUERY).save(tmp_path / "query.mid")
    made = cli("embed", "lib", "-o", "lib.npz", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert f"{len(LIBRARY) + 1} windows of {len(LIBRARY) + 1} files" in made.stderr
    for metric in ("cosine", "euclidean"):
        found = cli("similar", "query.mid", "--index", "lib.npz", "--k", "3", "--metric", metric, "--json",
                    "--out", f"matches_{metric}", cwd=tmp_path)
        assert found.returncode == 0, found.stderr
        answer = json.loads(found.stdout)
        matches = answer["matches"]
        assert [m["file"] for m in matches][0] == "lib/query_up_a_fourth.mid", (metric, matches)
        assert (matches[0]["bar"], matches[0]["voice"]) == (0, 0)
        assert matches[0]["distance"] < 0.7 * matches[1]["distance"]  # by a margin, not a tie
        written = sorted(p.name for p in (tmp_path / f"matches_{metric}").iterdir())
        assert written[:2] == ["00_query.mid", "01_query_up_a_fourth_v0_bar0.mid"] and len(written) == 4
    # The first match, written as MIDI, is the query's notes up a fourth, at the same beats.
    best = NoteSequence.from_midi(tmp_path / "matches_cosine" / "01_query_up_a_fourth_v0_bar0.mid")
    assert [(n.pitch, n.start, n.end) for n in best.notes] == [(p + TRANSPOSED, s, s + d) for p, s, d in QUERY]
    # Whole files rank the same way; the query itself, once in the library, comes before its copy.
    files = json.loads(cli("similar", "query.mid", "-i", "lib.npz", "--files", "--k", "1", "--json",
                           cwd=tmp_path).stdout)
    assert files["matches"][0]["file"] == "lib/query_up_a_fourth.mid"
    phrase(QUERY).save(tmp_path / "lib" / "query.mid")
    assert cli("embed", "lib", "-o", "lib.npz", cwd=tmp_path).returncode == 0
    both = json.loads(cli("similar", "query.mid", "-i", "lib.npz", "--k", "2", "--json", cwd=tmp_path).stdout)
    assert [m["file"] for m in both["matches"]] == ["lib/query.mid", "lib/query_up_a_fourth.mid"]


def test_the_index_file_round_trips(tmp_path, shipped):
    files = midi_files([str(write_library(tmp_path / "lib"))])
    seen = []
    index = build_index(shipped, files, progress=lambda phase, done, total: seen.append((phase, done, total)))
    assert seen[-1] == ("encoding", len(files), len(files)) and ("reading", len(files), len(files)) in seen
    loaded = EmbeddingIndex.load(index.save(tmp_path / "sub" / "lib.npz"))
    for name in ("vectors", "tokens", "file_index", "voice", "window", "bar", "file_vectors"):
        assert np.array_equal(getattr(loaded, name), getattr(index, name)), name
    assert loaded.files == index.files and loaded.meta == index.meta
    assert loaded.vectors.shape == (len(files), 128) and loaded.tokens.shape == (len(files), 32)
    assert loaded.meta["model"] == "mel_2bar" and loaded.meta["dataset_hash"] == shipped.metadata["dataset_hash"]
    assert len(loaded.meta["encoder_sha256"]) == 64 and loaded.meta["variant"] == "int8"
    query = index.vectors[3]
    assert loaded.nearest(query, 4) == index.nearest(query, 4)
    file, bar, distance, voice, row = loaded.nearest(query, 1)[0]
    assert (file, bar, voice, row) == (index.files[3], 0, 0, 3) and distance < 1e-5
    assert np.array_equal(loaded.tokens[row], index.tokens[3])
    loaded.check_model(shipped)
    # What is not an index this musicbridge wrote is refused in a sentence, not unpickled.
    np.savez(tmp_path / "objects.npz", vectors=np.array([{"a": 1}], dtype=object))
    write_not_midi(tmp_path / "text.npz")
    for bad, words in (("objects.npz", "not a readable index"), ("text.npz", "not a readable index"),
                       ("missing.npz", "musicbridge embed")):
        with pytest.raises(EmbeddingError, match=words):
            EmbeddingIndex.load(tmp_path / bad)


def test_corrupt_files_are_skipped_with_a_message(tmp_path):
    lib = write_library(tmp_path / "lib")
    write_truncated(lib / "truncated.mid")
    write_not_midi(lib / "notes.mid")
    made = cli("embed", "lib", "-o", "lib.npz", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "skipped 2 of" in made.stderr and "Traceback" not in made.stderr
    assert "lib/truncated.mid: not a readable MIDI file" in made.stderr and "lib/notes.mid" in made.stderr
    index = EmbeddingIndex.load(tmp_path / "lib.npz")
    assert len(index.files) == len(LIBRARY) + 1 and not any("truncated" in f for f in index.files)
    assert {item["file"] for item in index.meta["skipped"]} == {"lib/truncated.mid", "lib/notes.mid"}
    (tmp_path / "bad").mkdir()
    write_not_midi(tmp_path / "bad" / "x.mid")
    nothing = cli("embed", "bad", "-o", "bad.npz", cwd=tmp_path)
    assert nothing.returncode == 1 and "nothing written" in nothing.stderr and "Traceback" not in nothing.stderr
    assert not (tmp_path / "bad.npz").exists()
    broken = cli("similar", "lib/scale_up.mid", "--index", "lib/notes.mid", cwd=tmp_path)
    assert broken.returncode == 1 and "not a readable index" in broken.stderr


def test_an_index_refuses_a_query_from_another_model(tmp_path):
    from musicbridge.export.testing import export_tiny

    export_tiny(tmp_path / "tiny")
    write_library(tmp_path / "lib")
    assert cli("embed", "lib", "-o", "tiny.npz", "--model", "tiny", cwd=tmp_path).returncode == 0
    # The index remembers its model: a query without --model is encoded by it.
    same = cli("similar", "lib/dotted.mid", "-i", "tiny.npz", "--k", "1", "--json", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["matches"][0]["file"] == "lib/dotted.mid"
    other = cli("similar", "lib/dotted.mid", "-i", "tiny.npz", "--model", "mel_2bar", cwd=tmp_path)
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert "embed the library again" in other.stderr and "encoder_sha256" in other.stderr


def test_a_transformer_vae_embeds_and_evaluate_measures_its_retrieval(tmp_path):
    import torch

    from musicbridge.export.exporter import export_model
    from musicbridge.models import build_model, get_preset

    torch.set_num_threads(1)
    preset = get_preset("mel_2bar_transformer", {"d_model": 16, "heads": 2, "ff_size": 32, "enc_layers": 1,
                                                 "dec_layers": 1, "z_size": 8, "dropout": 0.0})
    torch.manual_seed(0)
    export_model(build_model(preset.model).eval(), tmp_path / "transformer", preset="tiny")
    model = load_model(tmp_path / "transformer", threads=1)
    index = build_index(model, midi_files([str(write_library(tmp_path / "lib"))]))
    assert index.vectors.shape == (len(LIBRARY) + 1, 8) and np.isfinite(index.vectors).all()
    write_corpus(tmp_path / "corpus")
    build_dataset([str(tmp_path / "corpus")], tmp_path / "ds", "melody", bars=2, workers=1)
    result = cli("evaluate", "transformer", "--data", "ds", "--split", "all", "--retrieval", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    retrieval = json.loads(result.stdout)["retrieval"]
    assert retrieval["windows"] >= 10 and retrieval["pieces"] == 3
    assert set(retrieval["same_piece"]) == {"cosine", "euclidean", "chance"}
    assert retrieval["same_piece"]["cosine"]["queries"] > 0
    assert 0 < retrieval["same_piece"]["cosine"]["mrr"] <= 1
    assert retrieval["transposition"]["cosine"]["queries"] == retrieval["windows"]
    table = cli("evaluate", "transformer", "--data", "ds", "--split", "all", "--retrieval", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "same piece, cosine" in table.stdout and "transposed copy, euclidean" in table.stdout


def test_ranking_measures_on_a_case_with_a_known_answer():
    # Points on a line (Euclidean): pieces A B A C C.
    points = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    pieces = np.array([0, 1, 0, 2, 2])
    # 0: B (1) is nearer than A's other window (2) → rank 2; 1: no other window of B → no query;
    # 2: B again nearer → 2; 3 and 4: each other → 1.
    ranks = same_piece_ranks(points, pieces, "euclidean")
    assert ranks.tolist() == [2, 2, 1, 1]
    assert ranking_summary(ranks) == {"queries": 4, "mrr": 0.75, "recall@1": 0.5, "recall@5": 1.0, "recall@10": 1.0,
                                      "median_rank": 1.5}
    # Windows 3 and 4 are neighbours in one voice (bars 0 and 1, 2-bar windows): they overlap, so they are not
    # each other's answer; windows 0 and 2 (bars 0 and 2) do not overlap.
    voices, bars = np.zeros(5, int), np.array([0, 0, 2, 0, 1])
    assert same_piece_ranks(points, pieces, "euclidean", voices, bars, window_bars=2).tolist() == [2, 2]
    # Copies: 0's copy is its nearest (1 < 5), 1's too (4 < 5), 2's copy at 7 is farther than window 1 (5).
    assert copy_ranks(np.array([[0.0], [5.0], [10.0]]), np.array([[1.0], [9.0], [3.0]]),
                      "euclidean").tolist() == [1, 1, 2]
    # Cosine: the angle only, 0 for the same direction, 1 at right angles, 2 opposite.
    assert np.allclose(distances([1.0, 0.0], [[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0]], "cosine"), [[0.0, 1.0, 2.0]])


def test_transposed_windows_move_note_ons_and_stay_in_range():
    codec = get_codec("melody")
    notes = [Note(60, 90, 0, 1), Note(64, 90, 1, 2), Note(107, 90, 2, 2.5)]
    tokens = codec.encode(notes, 32)[None]
    up = transposed_windows(codec, tokens, [3], bars=2)[0]
    # 107 + 3 leaves the range (108 at most): the whole window moves an octave down, so pitches 51, 55, 98.
    assert [n.pitch for n in codec.decode(up)] == [51, 55, 98]
    assert np.array_equal(codec.onsets(up), codec.onsets(tokens[0]))  # the rhythm stays
    assert np.array_equal(transposed_windows(codec, tokens, [0], bars=2), tokens)


def test_datasets_record_the_piece_voice_and_bar_of_each_window(tmp_path):
    write_corpus(tmp_path / "midi")
    manifest = build_dataset([str(tmp_path / "midi")], tmp_path / "ds", "melody", bars=2, workers=1)
    dataset = load_dataset(tmp_path / "ds")
    origins, windows = dataset.origins("all"), dataset.split("all")
    assert manifest["origins"] == ["piece", "voice", "bar"] and origins.shape == (len(windows), 3)
    by_piece = {}
    for piece, voice, bar in origins.tolist():
        by_piece.setdefault(piece, set()).add((voice, bar))
    # type0: 16 beats, one voice → bars 0, 1, 2; type1: flute and bass, 16 beats each (drums are not read).
    assert sorted(map(sorted, by_piece.values()), key=len)[-2:] == [
        [(0, 0), (0, 1), (0, 2)], [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]]
    (tmp_path / "ds" / "test_origins.npy").unlink()  # as a dataset built before origins were written
    with pytest.raises(DatasetError, match="build it again"):
        dataset.origins("test")


def test_embeddings_import_without_torch():
    names = imported_modules("import musicbridge.embeddings, musicbridge.embed_commands")
    assert "musicbridge.embeddings" in names
    assert not any(name.split(".")[0] == "torch" for name in names)
