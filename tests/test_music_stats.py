"""Musical statistics (musicbridge.music_stats) on hand-made phrases, and `musicbridge evaluate --music` on the
shipped mel_2bar model (torch-free runtime) with a small test-made dataset."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_training import write_dataset
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.data import load_dataset
from musicbridge.music_stats import KEY_SCALES, MINOR, PITCH_OF_TOKEN, key_fit, phrase_stats, summarize
from musicbridge.runtime import load_model
from musicbridge.training.evaluate import continuations

DOC = Path(__file__).resolve().parents[1] / "docs" / "evaluate.md"
C, D, E, F, G, A, B = 60, 62, 64, 65, 67, 69, 71  # MIDI, octave 4
NOTE_OFF = 1


def phrase(bars: int, notes: dict[int, int], offs: tuple[int, ...] = ()) -> np.ndarray:
    """Tokens (bars · 16,) with a note-on of MIDI pitch notes[step] at each step and note-offs at `offs`."""
    tokens = np.zeros(bars * 16, dtype=np.int64)
    for step, pitch in notes.items():
        tokens[step] = pitch - PITCH_OF_TOKEN
    tokens[list(offs)] = NOTE_OFF
    return tokens


# -- key fit ------------------------------------------------------------------------------------------------


def test_key_fit_finds_c_major_and_a_minor():
    assert key_fit([C, D, E, F, G, A, B, C + 12])[:2] == (0, "major")
    # A harmonic minor up and down, the tonic held longest: G♯ (the raised 7th) marks the minor.
    line = [A - 12, B - 12, C, D, E, F, G + 1, A, G + 1, F, E, D, C, B - 12, A - 12]
    key = key_fit(line, [4] + [1] * 13 + [4])
    assert key[:2] == (9, MINOR) and 0.5 < key.correlation <= 1.0


def test_key_fit_weights_by_duration():
    white_notes = [C, D, E, F, G, A, B]  # C major and A minor share them; durations decide
    assert key_fit(white_notes, [8, 1, 4, 1, 6, 1, 1])[:2] == (0, "major")
    assert key_fit(white_notes, [4, 1, 6, 1, 1, 8, 1])[:2] == (9, MINOR)
    with pytest.raises(ValueError, match="differ in length"):
        key_fit([C, D], [1])


def test_minor_keys_allow_the_raised_seventh_only():
    a_minor = KEY_SCALES[12 + 9]
    assert a_minor[(G + 1) % 12] and a_minor[G % 12]  # G♯ and G
    assert not a_minor[(F + 1) % 12] and not a_minor[(C + 1) % 12]  # F♯ (melodic minor's 6th) and C♯
    assert KEY_SCALES[0].sum() == 7 and a_minor.sum() == 8


# -- per-phrase statistics -----------------------------------------------------------------------------------


def test_out_of_key_on_hand_made_phrases():
    c_major = phrase(2, {0: C, 4: D, 8: E, 12: F, 16: G, 20: A, 24: B, 28: C + 12})
    harmonic_minor = phrase(2, {0: A - 12, 4: B - 12, 8: C, 10: D, 12: E, 16: F, 20: G + 1, 24: A})
    chromatic = phrase(2, {0: C, 4: C + 1, 8: D, 12: D + 1})  # four semitones in a row: in no key's scale
    one_note = phrase(2, {0: C})
    stats = phrase_stats(np.stack([c_major, harmonic_minor, chromatic, one_note]))
    assert stats["out_of_key"][:3].tolist() == [0.0, 0.0, 1.0]
    assert stats["key_index"][:2].tolist() == [0, 12 + 9]  # C major, A minor
    assert stats["key_index"][3] == -1 and np.isnan(stats["out_of_key"][3])  # too few notes for a key
    assert stats["out_of_key_note_share"][2] in (0.25, 0.5)  # one or two of the four, whichever key fits
    summary = summarize(np.stack([c_major, harmonic_minor, chromatic, one_note]))
    assert summary["n_without_key"] == 1 and summary["out_of_key_share"] == pytest.approx(1 / 3)
    assert summary["minor_share"] == pytest.approx(1 / 3)


def test_onsets_hold_rest_range_and_pitch():
    # Bar 1: C E G, each two steps then a note-off; bar 2: one C5 held to the end.
    tokens = phrase(2, {0: C, 4: E, 8: G, 16: C + 12}, offs=(2, 6, 10))
    stats = phrase_stats(tokens[None])
    assert stats["onsets_per_bar"][0] == 2.0 and stats["notes"][0] == 4
    assert stats["hold_share"][0] == (32 - 7) / 32  # 4 note-ons + 3 note-offs
    rests = 2 + 2 + (16 - 10)  # steps 2–3, 6–7, 10–15
    assert stats["rest_share"][0] == rests / 32
    assert stats["pitch_range"][0] == 12 and stats["mean_pitch"][0] == (C + E + G + C + 12) / 4
    assert stats["distinct_pitch_classes"][0] == 3
    silent = phrase_stats(np.zeros((1, 32), dtype=np.int64))
    assert silent["rest_share"][0] == 1.0 and silent["onsets_per_bar"][0] == 0.0
    assert np.isnan(silent["pitch_range"][0]) and np.isnan(silent["leap_share"][0])


def test_leaps_are_intervals_over_a_fifth_across_rests():
    # C4→G4 is a fifth (7, not a leap), G4→E5 a sixth (9), E5→D5 a step, then a rest, D5→D4 an octave (12).
    tokens = phrase(2, {0: C, 4: G, 8: E + 12, 12: D + 12, 24: D}, offs=(14,))
    stats = phrase_stats(tokens[None])
    assert stats["intervals"][0] == 4 and stats["leaps"][0] == 2 and stats["leap_share"][0] == 0.5


def test_repetition_of_bars_and_pitch_ngrams():
    motif = {0: C, 4: E, 8: G, 12: E}
    bars = [motif,
            motif,  # an exact repeat, even with a note-off that shortens its last note (durations are ignored)
            {s: p + 2 for s, p in motif.items()},  # the motif a tone higher: not a repeat
            {}]  # an empty bar never counts
    notes = {16 * bar + step: pitch for bar, content in enumerate(bars) for step, pitch in content.items()}
    tokens = phrase(4, notes, offs=(16 + 14,))
    stats = phrase_stats(tokens[None])
    assert stats["bar_repetition"][0] == pytest.approx(1 / 3)  # 1 of the 3 bars after the first
    # 12 notes: C E G E C E G E D F♯ A F♯ → 9 4-grams, 8 distinct: only C E G E comes back.
    assert stats["pitch_ngram_repetition"][0] == pytest.approx(1 / 9)
    assert np.isnan(phrase_stats(phrase(1, motif)[None])["bar_repetition"][0])  # one bar: nothing to repeat


def test_phrases_do_not_leak_into_each_other():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 90, (40, 64)) * (rng.random((40, 64)) < 0.3)
    tokens[5] = 0  # a silent phrase among them
    together = phrase_stats(tokens)
    for i in (0, 5, 6, 39):
        alone = phrase_stats(tokens[i:i + 1])
        for name, values in together.items():
            np.testing.assert_allclose(values[i:i + 1], alone[name], rtol=1e-12, err_msg=name)  # matmul rounding


def test_summary_is_json_ready_and_refuses_other_tokens():
    rng = np.random.default_rng(1)
    summary = summarize((rng.integers(0, 90, (200, 256)) * (rng.random((200, 256)) < 0.2)).astype(np.uint16))
    assert json.loads(json.dumps(summary)) == summary and summary["n_phrases"] == 200
    with pytest.raises(ValueError, match=r"melody tokens lie in \[0, 90\)"):
        summarize(np.full((2, 32), 300))


# -- evaluate --music ----------------------------------------------------------------------------------------


def documented_keys(section: str) -> set[str]:
    """The keys listed in the first column of docs/evaluate.md's table under `section`."""
    text = DOC.read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def melody_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("music") / "data", sizes=(4, 4, 12))


def test_evaluate_music_on_the_shipped_model(melody_data):
    result = CliRunner().invoke(app, ["evaluate", "mel_2bar", "--data", str(melody_data), "--music", "--json",
                                      "--samples", "40", "--seed", "1"])
    assert result.exit_code == 0, result.output
    music = json.loads(result.stdout)["music"]
    assert set(music) == documented_keys("The `music` object")
    assert music["continuation_path"] == "continue_" and music["prior_temperature"] == 1.0
    documented = documented_keys("Music statistics")
    assert documented and music["data"] == summarize(load_dataset(melody_data).split("test"))
    for name, count in (("data", 12), ("prior", 40), ("continuation", 12)):
        summary = music[name]
        assert set(summary) == documented, name
        assert summary["n_phrases"] == count and 0 <= summary["n_without_key"] <= count
        for key in ("hold_share", "rest_share", "leap_share", "bar_repetition", "pitch_ngram_repetition",
                    "out_of_key_share", "out_of_key_note_share", "minor_share"):
            assert summary[key] is None or 0.0 <= summary[key] <= 1.0, (name, key)
        assert 0.0 < summary["onsets_per_bar"] <= 16 and 0 <= summary["pitch_range"] <= 87
        assert 21 <= summary["mean_pitch"] <= 108 and 1 <= summary["distinct_pitch_classes"] <= 12
        assert -1.0 <= summary["key_correlation"] <= 1.0
    # A trained model's samples are melodies: notes in a singable register, mostly holds between onsets.
    assert 0.5 < music["prior"]["hold_share"] < 1.0 and 48 <= music["prior"]["mean_pitch"] <= 84


def test_evaluate_music_table_and_unchanged_default(melody_data):
    table = CliRunner().invoke(app, ["evaluate", "mel_2bar", "--data", str(melody_data), "--music",
                                     "--samples", "8"])
    assert table.exit_code == 0, table.output
    assert "out_of_key_share" in table.stdout and "continuation" in table.stdout
    plain = CliRunner().invoke(app, ["evaluate", "mel_2bar", "--data", str(melody_data), "--json"])
    assert plain.exit_code == 0 and "music" not in json.loads(plain.stdout)


class EncodeSampleOnly:
    """The shipped model without its continue_ (like a torch checkpoint)."""

    def __init__(self, model):
        self.model, self.z_size = model, model.z_size

    def encode(self, tokens):
        return self.model.encode(tokens)

    def sample(self, z, temperature=1.0, seed=None):
        return self.model.sample(z, temperature, seed)


def test_continuations_without_continue_decode_mu_greedily(melody_data):
    model = load_model("mel_2bar", warmup=False)
    tokens = np.asarray(load_dataset(melody_data).split("test"), dtype=np.int64)
    answers = continuations(EncodeSampleOnly(model), tokens, batch_size=5)
    assert answers.shape == tokens.shape
    # Batch by batch, as int8's dynamic quantisation scales activations per call.
    expected = [model.sample(model.encode(tokens[i:i + 5])[0], temperature=0.0) for i in range(0, len(tokens), 5)]
    np.testing.assert_array_equal(answers, np.concatenate(expected))
