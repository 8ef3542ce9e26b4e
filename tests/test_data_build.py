import json
import subprocess
import sys

import numpy as np
import pytest
from midi_factory import write_corpus, write_not_midi

from musicbridge.data import load_dataset
from musicbridge.data.build import BuildError, build_dataset


def test_bad_files_are_reported_and_the_rest_become_windows(tmp_path):
    files = write_corpus(tmp_path / "midi")
    manifest = build_dataset([str(tmp_path / "midi")], tmp_path / "ds", "melody", bars=2, workers=1)
    assert manifest["units_read"] == len(files)
    assert manifest["skipped"]["count"] == 2
    reasons = " ".join(manifest["skipped"]["reasons"])
    assert "truncated.mid" in reasons and "notes.mid" in reasons
    dataset = load_dataset(tmp_path / "ds")
    windows = np.concatenate([dataset.split(s) for s in ("train", "valid", "test")])
    assert windows.shape[1] == 32 and len(windows) == sum(s["windows"] for s in manifest["splits"].values())
    assert len(windows) >= 10
    assert windows.max() < 90
    assert len({w.tobytes() for w in windows}) == len(windows)  # deduplicated
    # type 0 (16 beats → 3 windows at hop 1), type 1 (flute + bass, 4 windows each, drums skipped), overlapping
    assert manifest["pieces"] == 3


def test_drums_representation_takes_only_the_drum_track(tmp_path):
    write_corpus(tmp_path / "midi")
    manifest = build_dataset([str(tmp_path / "midi")], tmp_path / "ds", "drums", bars=1, workers=2)
    assert manifest["representation"]["vocab_size"] == 512
    windows = load_dataset(tmp_path / "ds").split("all")
    assert len(windows) == 1  # the four bars of the drum track are one pattern, deduplicated
    assert set(windows[0][::4].tolist()) == {0b101, 0b110}  # kick+hat / snare+hat on the beats


def test_splits_are_by_piece_and_stable(tmp_path):
    write_corpus(tmp_path / "midi")
    first = build_dataset([str(tmp_path / "midi")], tmp_path / "a", "melody", bars=1, workers=1)
    second = build_dataset([str(tmp_path / "midi")], tmp_path / "b", "melody", bars=1, workers=2)
    assert first["hash"] == second["hash"] and first["splits"] == second["splits"]


def test_nothing_usable_fails_with_a_clear_message(tmp_path):
    (tmp_path / "bad").mkdir()
    write_not_midi(tmp_path / "bad" / "x.mid")
    with pytest.raises(BuildError, match="nothing usable"):
        build_dataset([str(tmp_path / "bad")], tmp_path / "ds", "melody", bars=2, workers=1)


def test_cli_builds_and_exits_non_zero_when_nothing_is_usable(tmp_path):
    write_corpus(tmp_path / "midi")
    ok = subprocess.run(
        [sys.executable, "-m", "musicbridge", "data", "build", str(tmp_path / "midi"), "-o", str(tmp_path / "ds"), "--bars", "2"],
        capture_output=True, text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["bars"] == 2
    assert "skipped 2" in ok.stderr
    (tmp_path / "empty").mkdir()
    write_not_midi(tmp_path / "empty" / "x.mid")
    bad = subprocess.run(
        [sys.executable, "-m", "musicbridge", "data", "build", str(tmp_path / "empty"), "-o", str(tmp_path / "ds2")],
        capture_output=True, text=True,
    )
    assert bad.returncode == 1 and "nothing usable" in bad.stderr


def test_music21_corpus_source_is_parsed_and_cached(tmp_path):
    from musicbridge.data.sources import parse_unit, work_units

    units = work_units("music21:essenFolksong")
    assert len(units) > 8000  # Essen's files hold thousands of tunes, one unit each
    pieces, reason = parse_unit(units[0], tmp_path / "cache")
    assert reason is None and len(pieces) == 1 and len(pieces[0].sequence.notes) > 10
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 1
    again, _ = parse_unit(units[0], tmp_path / "cache")
    assert again[0].sequence.notes == pieces[0].sequence.notes
    assert len(work_units("music21:bach")) > 300
