"""`musicbridge evaluate` on a tiny trained model, and the metric pieces it is built from."""

import json

import numpy as np
import pytest
import torch
from test_training import TINY, write_dataset
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.data import load_dataset
from musicbridge.models import get_preset
from musicbridge.training.checkpoint import load_trained_model, save_checkpoint
from musicbridge.training.evaluate import (
    TorchModel,
    derangement,
    kl_bits,
    overlap,
    reconstruction_metrics,
    sequence_stats,
    slerp,
)
from musicbridge.training.loss import LN2, kl_divergence
from musicbridge.training.trainer import Trainer

torch.set_num_threads(1)

REQUIRED_KEYS = {"recon_acc_teacher_forced", "recon_acc_sampled", "recon_acc_sampled_onsets",
                 "recon_acc_sampled_shuffled_z", "delta_acc", "kl_bits", "active_units", "z_size", "n_sequences"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    data = write_dataset(root / "data", sizes=(64, 16, 24))
    Trainer(get_preset("mel_2bar", {**TINY, "steps": 6}), load_dataset(data), root / "run", device="cpu",
            show_progress=False).run()
    return root / "run", data


def invoke(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def test_evaluate_json_has_the_issue_keys(trained):
    run, data = trained
    result = invoke(run / "last.pt", "--data", data, "--json", "--interpolation", "--prior-stats", "--prior-samples", 20)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert REQUIRED_KEYS <= set(report)
    assert report["z_size"] == 4 and report["n_sequences"] == 24 and report["split"] == "test"
    for key in ("recon_acc_teacher_forced", "recon_acc_sampled", "recon_acc_sampled_onsets",
                "recon_acc_sampled_shuffled_z"):
        assert 0.0 <= report[key] <= 1.0
    assert report["delta_acc"] == pytest.approx(report["recon_acc_sampled"] - report["recon_acc_sampled_shuffled_z"])
    assert 0 <= report["active_units"] <= 4 and report["kl_bits"] > 0
    assert report["dataset_hash_matches"] is True
    path = report["interpolation"]
    assert len(path["alphas"]) == len(path["latent_hamming_to_a"]) == len(path["data_hamming_to_a"]) == 11
    assert path["data_hamming_to_a"][0] == 0.0 and path["data_hamming_to_a"][-1] > 0
    prior = report["prior_stats"]
    assert {"pitch_range", "distinct_pitches", "onset_density", "in_scale_ratio"} <= set(prior)
    assert set(prior["onset_density"]) == {"prior_mean", "data_mean", "overlap"}


def test_evaluate_matches_the_library_and_limits(trained):
    run, data = trained
    result = invoke(run, "--data", data, "--json", "--split", "valid", "--limit", 10, "--seed", 3)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n_sequences"] == 10 and report["split"] == "valid"
    # The same numbers straight from the library on the same subset.
    model, _ = load_trained_model(run)
    valid = load_dataset(data).split("valid")
    subset = np.asarray(valid[np.sort(np.random.default_rng(3).choice(len(valid), 10, replace=False))], dtype=np.int64)
    direct = reconstruction_metrics(TorchModel(model), subset, load_dataset(data).codec.onsets(subset), seed=3)
    assert {k: report[k] for k in direct} == direct


def test_evaluate_table_for_humans(trained):
    run, data = trained
    result = invoke(run, "--data", data, "--limit", 8)
    assert result.exit_code == 0, result.output
    assert "recon_acc_sampled_shuffled_z" in result.stdout and "active_units" in result.stdout


def test_evaluate_refuses_unknown_representation_version(trained, tmp_path):
    run, data = trained
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    checkpoint["representation"]["version"] = "99"
    save_checkpoint(tmp_path / "future.pt", checkpoint)
    result = invoke(tmp_path / "future.pt", "--data", data, "--json")
    assert result.exit_code == 1
    assert "version '99' is not known" in result.output and result.stdout == ""


def test_evaluate_refuses_a_dataset_of_another_representation(trained, tmp_path):
    run, _ = trained
    drums = write_dataset(tmp_path / "drums", sizes=(4, 4, 4), representation="drums")
    result = invoke(run, "--data", drums, "--json")
    assert result.exit_code == 1 and "'melody'" in result.output


class EncodeSampleOnly:
    """A real model restricted to the runtime's surface (no teacher-forced logits), like an ONNX model."""

    def __init__(self, model):
        self.inner = TorchModel(model)
        self.z_size = self.inner.z_size

    def encode(self, tokens):
        return self.inner.encode(tokens)

    def sample(self, z, temperature=1.0, seed=None):
        return self.inner.sample(z, temperature, seed)


def test_metrics_need_only_encode_and_sample(trained):
    run, data = trained
    model, _ = load_trained_model(run)
    tokens = np.asarray(load_dataset(data).split("test"), dtype=np.int64)
    onsets = tokens >= 2
    restricted = reconstruction_metrics(EncodeSampleOnly(model), tokens, onsets, batch_size=7)
    full = reconstruction_metrics(TorchModel(model), tokens, onsets)
    assert restricted["recon_acc_teacher_forced"] is None
    assert {k: v for k, v in restricted.items() if k != "recon_acc_teacher_forced"} == pytest.approx(
        {k: v for k, v in full.items() if k != "recon_acc_teacher_forced"})


def test_metric_pieces():
    rng = np.random.default_rng(0)
    for n in (2, 3, 50):
        perm = derangement(n, rng)
        assert sorted(perm) == list(range(n)) and (perm != np.arange(n)).all()
    a, b = rng.standard_normal((5, 8)).astype(np.float32), rng.standard_normal((5, 8)).astype(np.float32)
    np.testing.assert_allclose(slerp(a, b, 0.0), a, atol=1e-5)
    np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-5)
    unit_a, unit_b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(slerp(unit_a, unit_b, 0.3), axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(slerp(a, a, 0.5), a, atol=1e-5)  # parallel: falls back to linear
    values = rng.normal(size=500)
    assert overlap(values, values) == pytest.approx(1.0)
    assert overlap(np.zeros(10), np.ones(10) * 5) == 0.0
    mu, sigma = rng.standard_normal((4, 3)), rng.random((4, 3)) + 0.2
    np.testing.assert_allclose(kl_bits(mu, sigma), kl_divergence(torch.tensor(mu), torch.tensor(sigma)).numpy() / LN2)


def test_sequence_stats_of_a_known_melody():
    # C4 E4 G4 B4 in one bar (tokens = pitch − 19) then silence; C major holds all four notes.
    tokens = np.zeros((2, 32), dtype=np.int64)
    tokens[0, [0, 4, 8, 12]] = [60 - 19, 64 - 19, 67 - 19, 71 - 19]
    tokens[0, 16] = 1
    stats = sequence_stats(tokens, "melody", 16)
    assert stats["pitch_range"][0] == 11 and stats["distinct_pitches"][0] == 4
    assert stats["onset_density"].tolist() == [2.0, 0.0] and stats["in_scale_ratio"][0] == 1.0
    assert np.isnan(stats["pitch_range"][1])
    drums = sequence_stats(np.array([[0b101, 0, 0b1, 0] * 8]), "drums", 16)
    assert drums["onset_density"][0] == 8.0 and drums["hits_per_onset"][0] == 1.5
