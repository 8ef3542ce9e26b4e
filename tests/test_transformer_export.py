"""Transformer VAE → ONNX: parity with torch (both bottlenecks, melody and drums, both samplers), the runtime API
unchanged on a transformer model, the export CLI (tiny models, one thread)."""

import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.export.exporter import export_model
from musicbridge.export.parity import check_parity, torch_sample_with_noise
from musicbridge.export.testing import save_model_checkpoint
from musicbridge.models import build_model, get_preset
from musicbridge.runtime import load_model

torch.set_num_threads(1)

TINY = {"d_model": 16, "heads": 2, "ff_size": 32, "enc_layers": 1, "dec_layers": 2, "z_size": 8, "dropout": 0.0}
MATRIX = {"latent": "matrix", "latent_frames": 4, "memory_tokens": 2}
CASES = [("melody", {}), ("melody", MATRIX), ("drums", {}), ("drums", MATRIX),
         ("melody", {"z_in_inputs": False, "positions": "sinusoidal"})]


def tiny_transformer(representation="melody", seed=0, **extra):
    preset = get_preset("mel_2bar_transformer", TINY | {"representation": representation} | extra)
    torch.manual_seed(seed)
    return build_model(preset.model).eval()


def random_windows(model, n=40, seed=0):
    return np.random.default_rng(seed).integers(0, model.config.vocab_size, (n, model.steps))


@pytest.mark.parametrize("representation,extra", CASES)
def test_exported_transformer_matches_torch(tmp_path, representation, extra):
    model = tiny_transformer(representation, **extra)
    metadata = export_model(model, tmp_path, preset="tiny")
    assert metadata["kind"] == "transformer_vae" and metadata["decoding"] == "cached"
    report = check_parity(model, tmp_path, random_windows(model), batch_size=16)
    assert report["mu_sigma_max_diff"] <= 1e-4 and report["logits_max_diff"] <= 1e-3
    assert report["greedy_identical"] >= 0.99 and report["sampled_identical"] >= 0.99
    assert report["passed"]
    for name in metadata["variants"]["fp32"].values():
        onnx.checker.check_model(onnx.load(tmp_path / name), full_check=True)


@pytest.mark.parametrize("decoding", ["cached", "recompute"])
def test_both_samplers_equal_the_torch_reference(tmp_path, decoding):
    model = tiny_transformer(**MATRIX)
    export_model(model, tmp_path, preset="tiny", decoding=decoding)
    runtime = load_model(tmp_path)
    z = np.random.default_rng(1).standard_normal((6, model.z_size)).astype(np.float32)
    noise = runtime.noise(6, 0.8, np.random.default_rng(2))
    ours = runtime.run_sampler(z, noise)
    reference = torch_sample_with_noise(model, torch.from_numpy(z), torch.from_numpy(noise)).numpy()
    assert np.array_equal(ours, reference)
    assert np.array_equal(runtime.sample(z, temperature=0.0), model.decode(torch.from_numpy(z), temperature=0.0).numpy())


def test_runtime_api_takes_a_transformer_unchanged(tmp_path):
    model = tiny_transformer()
    export_model(model, tmp_path, preset="tiny", variants=("int8",))
    for variant in ("fp32", "int8"):
        runtime = load_model(tmp_path, variant=variant)
        phrase = random_windows(model, n=1)[0]
        answers = runtime.continue_(phrase, bars=3, variations=4, temperature=0.5, seed=1)
        assert answers.shape == (4, 48) and answers.max() < 90
        assert np.array_equal(answers, runtime.continue_(phrase, bars=3, variations=4, temperature=0.5, seed=1))
        assert runtime.interpolate(phrase, random_windows(model, n=1, seed=1)[0], steps=5).shape == (5, 32)
        assert runtime.sample_prior(3, seed=0).shape == (3, 32)


def test_export_cli_on_a_transformer_checkpoint(tmp_path):
    model = tiny_transformer()
    checkpoint = save_model_checkpoint(model, tmp_path / "run" / "best.pt", preset="mel_2bar_transformer")
    out = tmp_path / "exported"
    result = CliRunner().invoke(app, ["export", str(checkpoint), "-o", str(out), "--parity-sequences", "24", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout[result.stdout.index("{"):])["passed"]
    metadata = json.loads((out / "model.json").read_text())
    assert metadata["kind"] == "transformer_vae" and metadata["config"]["architecture"] == "transformer"
