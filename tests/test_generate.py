"""`musicbridge generate` on the shipped default model: MIDI files that re-read, pictures, clear errors."""

import subprocess
from pathlib import Path

import mido
import pytest
from midi_factory import write_not_midi, write_type0, write_type1_multitrack

from musicbridge.generate import continue_sequence, phrase_tokens
from musicbridge.notes import Note, NoteSequence
from musicbridge.runtime import load_model


def _generate(*args, cwd):
    return subprocess.run(["musicbridge", "generate", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def _tracks_with_notes(path: Path) -> int:
    return sum(any(m.type == "note_on" for m in track) for track in mido.MidiFile(path).tracks)


def test_continue_writes_input_then_variations_after_it(tmp_path):
    source = write_type1_multitrack(tmp_path / "in.mid")
    result = _generate("continue", str(source), "-o", "out.mid", "--bars", "4", "--variations", "2",
                       "--temperature", "0.5", "--seed", "3", "--png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = NoteSequence.from_midi(tmp_path / "out.mid")
    generated = [n for n in out.notes if n.start >= 16]  # the input fills beats 0–16
    assert generated and all(21 <= n.pitch <= 108 and n.end > n.start for n in generated)
    assert max(n.end for n in generated) <= 16 + 2 * 4 * 4 + 1e-6  # two variations of four bars
    assert _tracks_with_notes(tmp_path / "out.mid") >= 3 + 2  # input's tracks + one per variation
    png = (tmp_path / "out.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_interpolate_walks_from_a_to_b(tmp_path):
    a, b = write_type0(tmp_path / "a.mid"), write_type1_multitrack(tmp_path / "b.mid")
    result = _generate("interpolate", str(a), str(b), "-o", "path.mid", "--steps", "4", "--png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = NoteSequence.from_midi(tmp_path / "path.mid")
    # A's 2 bars, 4 phrases of 2 bars, B's 2 bars = 12 bars
    assert out.duration <= 12 * 4 + 1e-6 and out.duration > 10 * 4
    assert (tmp_path / "path.png").stat().st_size > 5000


def test_sample_writes_n_phrases(tmp_path):
    result = _generate("sample", "-o", "s.mid", "-n", "3", "--seed", "7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = NoteSequence.from_midi(tmp_path / "s.mid")
    assert out.notes and out.duration <= 3 * 8 + 1e-6
    again = _generate("sample", "-o", "t.mid", "-n", "3", "--seed", "7", cwd=tmp_path)
    assert again.returncode == 0
    assert NoteSequence.from_midi(tmp_path / "t.mid").notes == out.notes  # seeded: repeatable


def test_bad_inputs_are_refused_with_a_message(tmp_path):
    bad = _generate("continue", str(write_not_midi(tmp_path / "x.mid")), "-o", "o.mid", cwd=tmp_path)
    assert bad.returncode == 1 and "not a readable MIDI file" in bad.stderr
    drums_only = tmp_path / "drums.mid"
    NoteSequence([Note(36, 100, 0, 0.25, 9, 0, True)]).save(drums_only)
    no_melody = _generate("continue", str(drums_only), "-o", "o.mid", cwd=tmp_path)
    assert no_melody.returncode == 1 and "no pitched notes" in no_melody.stderr
    unknown = _generate("sample", "-o", "o.mid", "--model", "no_such_model", cwd=tmp_path)
    assert unknown.returncode == 1 and "mel_2bar" in unknown.stderr  # the message lists the shipped models


def test_phrase_window_is_the_last_bars_of_the_input():
    model = load_model("mel_2bar")
    sequence = NoteSequence([Note(60, 90, 0, 1), Note(62, 90, 9, 10), Note(64, 90, 14, 15)])
    tokens = phrase_tokens(model, sequence)  # bars 3–4 (beats 8–16)
    assert tokens.shape == (32,)
    assert tokens[4] == 62 - 19 and tokens[24] == 64 - 19 and (tokens[:4] == 0).all()
    # Sampled (the bridge's default temperature): the greedy answer to a phrase this sparse may be silence.
    result = continue_sequence(model, sequence, temperature=1.0, seed=0)
    answer = [n.start for n in result.notes if n.instrument == 1]
    assert answer and min(answer) >= 16  # the answer follows the input's last bar


@pytest.mark.parametrize("name", ["mel_2bar", "mel_16bar"])
def test_shipped_models_load_and_answer(name):
    model = load_model(name)
    assert model.metadata["preset"].startswith(name.split("_")[0])
    assert model.sample_prior(2, temperature=0.5, seed=0).shape == (2, model.steps)
