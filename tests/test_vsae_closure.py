"""`evaluate --closure` (training/evaluate.py closure_metrics): the validity rule on phrases whose answer is known,
and the measure on models of every kind — through the runtime (exported) and torch (a checkpoint)."""

import json

import numpy as np
import pytest
import torch
from test_training import write_dataset
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.export.exporter import export_model
from musicbridge.export.testing import export_tiny, save_model_checkpoint, tiny_model
from musicbridge.models import build_model, get_preset
from musicbridge.runtime import load_model
from musicbridge.training.evaluate import closure_metrics, valid_melodies, validity_rule

torch.set_num_threads(1)

C_MAJOR = (60, 62, 64, 65, 67, 69, 71, 72)


def phrase(pitches, every=4, steps=32) -> np.ndarray:
    """Melody tokens (T,): one note-on every `every` steps cycling through `pitches`."""
    tokens = np.zeros(steps, np.int64)
    for index, step in enumerate(range(0, steps, every)):
        tokens[step] = pitches[index % len(pitches)] - 19  # note-on id = pitch − 19
    return tokens


def test_validity_rule_is_calibrated_on_the_data():
    rng = np.random.default_rng(0)
    data = np.stack([phrase(list(rng.permutation(C_MAJOR)[:5]), every=int(rng.choice([2, 4]))) for _ in range(200)])
    rule = validity_rule(data, 16)
    assert rule["onsets_per_bar"] == [4.0, 8.0] and rule["min_notes"] == 2
    # Not all: the leapiest twentieth is out, and a few C major subsets fit another key best (E minor for one
    # without C, say) — the key of --music's statistics, so evaluate --closure reports the data's own share.
    assert valid_melodies(data, rule, 16).mean() >= 0.75
    cases = np.stack([
        phrase((60, 64, 67, 72), every=4),  # in key, a density the data has: valid
        phrase((60, 61, 62, 63), every=4),  # chromatic: out of key
        np.zeros(32, np.int64),  # silence: no notes
        phrase((60, 64), every=16),  # 1 onset per bar: sparser than the data's 5th percentile
        phrase((60, 64), every=1),  # 16 per bar: denser than its 95th
        phrase((48, 72, 50, 74), every=4),  # in C major, but every interval a leap
    ])
    assert valid_melodies(cases, rule, 16).tolist() == [True, False, False, False, False, False]


def test_closure_measures_any_model_the_same_through_torch_and_the_runtime(tmp_path):
    tokens = np.asarray(np.load(write_dataset(tmp_path / "data") / "test.npy"), dtype=np.int64)
    model = tiny_model("melody", seed=2)
    export_model(model, tmp_path / "musicvae", preset="tiny")
    exported = closure_metrics(load_model(tmp_path / "musicvae", device="cpu"), tokens, 16)
    from musicbridge.training.evaluate import TorchModel

    eager = closure_metrics(TorchModel(model), tokens, 16)
    assert exported["n_pairs"] == eager["n_pairs"] == len(tokens) // 2
    for name, row in exported["operations"].items():  # fp32 parity: the same phrases, the same judgements
        assert row["valid_share"] == eager["operations"][name]["valid_share"]
        assert row["reencode_relative_error"] == pytest.approx(eager["operations"][name]["reencode_relative_error"],
                                                               rel=1e-3)
    assert exported["rule"] == validity_rule(tokens, 16) and exported["data_valid_share"] == eager["data_valid_share"]


@pytest.mark.parametrize("kind", ["musicvae", "transformer", "vsae"])
def test_evaluate_closure_on_exported_models_of_every_kind(kind, tmp_path):
    data = write_dataset(tmp_path / "data")
    if kind == "musicvae":
        out = export_tiny(tmp_path / kind)
    else:
        sizes = {"transformer": {"d_model": 16, "heads": 2, "ff_size": 32, "enc_layers": 1, "dec_layers": 1,
                                 "z_size": 8},
                 "vsae": {"embed_size": 8, "enc_size": 12, "dec_size": 16, "dec_layers": 1, "z_size": 4,
                          "disc_size": 8, "disc_layers": 2}}[kind]
        torch.manual_seed(0)
        model = build_model(get_preset(f"mel_2bar_{kind}", sizes).model).eval()
        export_model(model, tmp_path / kind, preset=f"mel_2bar_{kind}")
        out = tmp_path / kind
    result = CliRunner().invoke(app, ["evaluate", str(out), "--data", str(data), "--closure", "--json"])
    assert result.exit_code == 0, result.output
    closure = json.loads(result.stdout)["closure"]
    assert closure["n_pairs"] == 8 and set(closure["operations"]) == {"identity", "sum", "half", "one_and_half"}


def test_closure_refuses_drums_and_too_few_phrases(tmp_path):
    drums = tiny_model("drums")
    checkpoint = save_model_checkpoint(drums, tmp_path / "drums.pt")
    data = write_dataset(tmp_path / "drums_data", representation="drums")
    result = CliRunner().invoke(app, ["evaluate", str(checkpoint), "--data", str(data), "--closure"])
    assert result.exit_code == 1 and "--closure judges melodies" in result.output
    with pytest.raises(ValueError, match="at least 4 phrases"):
        closure_metrics(load_model(export_tiny(tmp_path / "m"), device="cpu"), np.zeros((3, 32), np.int64), 16)
