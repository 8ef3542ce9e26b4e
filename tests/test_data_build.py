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


def _notes_sequence(durations, pitch=60):
    from musicbridge.notes import Note, NoteSequence

    notes, beat = [], 0.0
    for index, duration in enumerate(durations):
        notes.append(Note(pitch + index % 5, 90, beat, beat + duration))
        beat += duration
    return NoteSequence(notes)


def test_slow_notation_is_read_at_double_speed_and_fast_is_kept():
    from musicbridge.data.build import normalized_time

    halves = _notes_sequence([2.0] * 16)  # a voice in half notes: median 2 beats → read 4× faster
    sped, speed_ups = normalized_time(halves)
    assert speed_ups == 2 and [n.start for n in sped.notes[:3]] == [0.0, 0.5, 1.0]
    assert sped.notes[-1].end == 8.0
    eighths = _notes_sequence([0.5] * 16)
    same, none = normalized_time(eighths)
    assert none == 0 and same.notes == eighths.notes


def test_density_rules_drop_sparse_windows_and_count_them():
    from musicbridge.codecs import get_codec
    from musicbridge.data.build import BuildReport, WindowRules, sequence_to_windows
    from musicbridge.notes import Note, NoteSequence

    codec = get_codec("melody")
    # 4 bars of quarters, then 4 bars of whole notes (1 note-on per bar): 2-bar windows every 2 bars.
    sequence = _notes_sequence([1.0] * 16 + [4.0] * 4)
    report = BuildReport()
    dense = WindowRules(bars=2, hop=2, time="keep", min_onsets_per_bar=2.0)
    assert len(list(sequence_to_windows(sequence, codec, dense, report))) == 2
    assert report.windows_dropped["sparse"] == 2
    # Bar 1 full, bar 2 silent, a note in bar 3: the one 2-bar window has an empty bar.
    gap = NoteSequence([Note(60 + i, 90, float(i), i + 1.0) for i in range(4)] + [Note(60, 90, 8.0, 9.0)])
    report = BuildReport()
    assert len(list(sequence_to_windows(gap, codec, WindowRules(2, 1, "keep"), report))) == 1
    assert list(sequence_to_windows(gap, codec, WindowRules(2, 1, "keep", max_empty_bars=0), report)) == []
    assert report.windows_dropped["empty_bars"] == 1


def test_manifest_reports_onsets_per_bar_and_hold_share_per_source(tmp_path):
    write_corpus(tmp_path / "midi")
    manifest = build_dataset([str(tmp_path / "midi")], tmp_path / "ds", "melody", bars=2, workers=1)
    stats = manifest["statistics"]
    windows = load_dataset(tmp_path / "ds").split("all")
    from musicbridge.codecs import get_codec

    onsets = get_codec("melody").onsets(windows).sum() / (len(windows) * 2)
    assert stats["all"]["windows"] == len(windows)
    assert stats["all"]["onsets_per_bar"] == round(float(onsets), 3)
    assert stats["all"]["hold_share"] == round(float((windows == 0).mean()), 4)
    (source,) = stats["sources"]
    assert source == str(tmp_path / "midi") and stats["sources"][source]["windows"] == len(windows)
    assert stats["sources"][source]["pieces"] == manifest["pieces"]
    assert manifest["rules"]["time"] == "auto" and stats["sources"][source]["pieces_sped_up"] == 0  # MIDI: kept
    forced = build_dataset([str(tmp_path / "midi")], tmp_path / "ds2", "melody", bars=2, workers=1,
                           time_rule="normalize")  # the corpus moves in quarters: read at double speed
    assert forced["statistics"]["sources"][source]["pieces_sped_up"] == forced["pieces"]
    assert forced["statistics"]["all"]["onsets_per_bar"] > stats["all"]["onsets_per_bar"]
