"""A hierarchical MusicVAE whose encoder reads each segment alone and whose conductor is one linear map
(encoder_type "segments", conductor_type "linear"; preset mel_16bar_segments): the torch model, the ONNX export,
growing it from a 2-bar model with fit_segment_mix, the CLI run that does so, and the refusals."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from test_continuation import TINY
from test_grow import build_4bar_data
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.export.exporter import export_model
from musicbridge.export.parity import check_parity
from musicbridge.export.testing import save_model_checkpoint, tiny_model
from musicbridge.models import MusicVAEConfig, get_preset
from musicbridge.models.musicvae import CONDITION_SCALE, fit_segment_mix, grown_state, grows_into
from musicbridge.runtime import load_model
from musicbridge.training.checkpoint import load_trained_model

torch.set_num_threads(1)

SEGMENT = 32  # 2 bars of 16 steps
SEGMENTS_LINEAR = {"segment_bars": 2, "encoder_type": "segments", "conductor_type": "linear"}


def windows(model, n, seed):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, model.config.vocab_size, (n, model.steps)))


def test_the_segments_encoder_mixes_codes_each_segment_gets_alone():
    model = tiny_model("melody", True, bars=4, segment_code_size=5, **SEGMENTS_LINEAR)
    tokens = windows(model, 3, 0)
    with torch.no_grad():
        mu, sigma = model.encode(tokens)
        alone = [model.encoder.segment_heads(tokens[:, s * SEGMENT:(s + 1) * SEGMENT]) for s in range(2)]
        codes = torch.cat([code for code, _ in alone], dim=1).flatten(1)  # (3, 2 · 5): segment 0's, then 1's
        pre_sigma = torch.cat([pre for _, pre in alone], dim=1).flatten(1)
        torch.testing.assert_close(mu, model.encoder.mix_mu(codes))
        torch.testing.assert_close(sigma, torch.nn.functional.softplus(model.encoder.mix_sigma(pre_sigma)))
        # the linear conductor: segment s's condition is its own rows of one affine map of z
        z = torch.randn(3, model.z_size)
        conditions = model.conditions(z).view(3, 2, -1)
        torch.testing.assert_close(conditions[:, 1], model.conductor.out(z)[:, model.config.conductor_size:])
        greedy = model.decode(z, temperature=0.0)
        logits = model.teacher_forced_logits(z, model.decoder_inputs(greedy))
    assert torch.equal(logits.argmax(-1), greedy)  # the stepwise sampler computes what the fused pass does


def test_the_exported_graphs_of_a_segments_model_match_torch(tmp_path):
    model = tiny_model("melody", True, bars=4, segment_code_size=5, **SEGMENTS_LINEAR)
    export_model(model, tmp_path, preset="tiny", variants=("fp32",))
    assert json.loads((tmp_path / "model.json").read_text())["segment_bars"] == 2
    tokens = windows(model, 32, 1).numpy()
    report = check_parity(model, tmp_path, tokens, batch_size=16)
    assert report["passed"] and report["sampled_identical"] >= 0.99, report
    runtime = load_model(tmp_path)
    mu, sigma = runtime.encode(tokens)
    with torch.no_grad():
        expected_mu, expected_sigma = model.encode(torch.from_numpy(tokens))
    np.testing.assert_allclose(mu, expected_mu.numpy(), atol=1e-5)
    np.testing.assert_allclose(sigma, expected_sigma.numpy(), atol=1e-5)


def test_a_grown_segments_model_decodes_each_segment_as_its_source_decodes_the_kept_dimensions():
    source = tiny_model("melody", bars=2, seed=1)  # z 6
    target = tiny_model("melody", True, bars=4, seed=2, z_size=6, segment_code_size=6, **SEGMENTS_LINEAR)
    assert grows_into(source.config, target.config)
    state, fresh = grown_state(source.state_dict(), target)
    assert {key.split(".")[0] + "." + key.split(".")[1] for key in fresh} == {
        "encoder.mix_mu", "encoder.mix_sigma", "conductor.out"}
    target.load_state_dict(state)
    train = windows(target, 64, 3)
    fitted = fit_segment_mix(target, train)
    assert len(fitted["dims"]) == 3 and 0 < fitted["kl_share"] <= 1  # z 6 = 2 segments × 3 dimensions
    tokens = windows(target, 5, 4)
    segments = tokens.reshape(10, SEGMENT)
    with torch.no_grad():
        code, code_sigma = source.encode(segments)  # (10, 6): each segment's own code
        mean = source.encode(train.reshape(-1, SEGMENT))[0].mean(dim=0)
        kept = torch.zeros(6, dtype=torch.bool)
        kept[fitted["dims"]] = True
        restricted = torch.where(kept, code, mean)  # the dimensions left out at their mean over the fit's windows
        mu, sigma = target.encode(tokens)
        # z is each segment's kept code, segment after segment, with the σ the source gives it
        torch.testing.assert_close(mu.view(10, 3), code[:, fitted["dims"]], atol=1e-6, rtol=0)
        torch.testing.assert_close(sigma.view(10, 3), code_sigma[:, fitted["dims"]], atol=1e-6, rtol=0)
        torch.testing.assert_close(target.conditions(mu)[:, :6] * CONDITION_SCALE, restricted, atol=1e-5, rtol=0)
        assert torch.equal(target.decode(mu, temperature=0.0).reshape(10, SEGMENT),
                           source.decode(target.conditions(mu)[:, :6] * CONDITION_SCALE, temperature=0.0))


def test_segments_and_linear_types_are_refused_where_they_cannot_work():
    sizes = {"representation": "melody", "vocab_size": 90, "bars": 4}
    with pytest.raises(ValueError, match=r"unknown encoder_type 'bars'.*sequence, segments"):
        MusicVAEConfig(**sizes, hierarchical=True, encoder_type="bars")
    with pytest.raises(ValueError, match=r"unknown conductor_type 'gru'.*lstm, linear"):
        MusicVAEConfig(**sizes, hierarchical=True, conductor_type="gru")
    with pytest.raises(ValueError, match=r"segments of a hierarchical model.*--set hierarchical=true"):
        MusicVAEConfig(**sizes, encoder_type="segments")
    preset = get_preset("mel_16bar_segments")
    assert (preset.model.encoder_type, preset.model.conductor_type, preset.model.segment_bars) == (
        "segments", "linear", 2)
    lstm = tiny_model("melody", True, bars=4, segment_bars=2)
    with pytest.raises(ValueError, match="segments encoder and a linear conductor"):
        fit_segment_mix(lstm, windows(lstm, 4, 0))
    uneven = tiny_model("melody", True, bars=4, z_size=5, segment_code_size=6, **SEGMENTS_LINEAR)
    with pytest.raises(ValueError, match="must be a multiple of 2"):
        fit_segment_mix(uneven, windows(uneven, 4, 0))
    source = tiny_model("melody", bars=2).config
    assert not grows_into(source, dataclasses.replace(uneven.config, z_size=6, segment_code_size=4))  # code < source z


def test_train_init_from_a_2bar_checkpoint_starts_the_segments_preset_where_the_source_leaves_off(tmp_path):
    runner = CliRunner()
    build_4bar_data(runner, tmp_path)
    sizes = {"embed_size": 16, "enc_size": 32, "enc_layers": 1, "dec_size": 48, "z_size": 8}
    source_model = tiny_model("melody", bars=2, seed=5, **sizes)
    source = save_model_checkpoint(source_model, tmp_path / "two_bar.pt", preset="mel_2bar")
    ran = runner.invoke(app, ["train", "--preset", "mel_16bar_segments", "--data", str(tmp_path / "data4"),
                              "--steps", "1", *TINY, "--set", "bars=4", "--set", "z_size=8", "--set",
                              "segment_code_size=8", "--set", "conductor_size=16", "--out", str(tmp_path / "grown"),
                              "--set", "lr=0", "--set", "lr_min=0", "--set", f"init_from={source}"])
    assert ran.exit_code == 0, ran.output
    assert "4 most informative code dimensions" in ran.output, ran.output
    grown, _ = load_trained_model(tmp_path / "grown" / "last.pt")
    tokens = windows(grown, 4, 6)
    with torch.no_grad():
        mu, _ = grown.encode(tokens)
        lead = grown.conditions(mu)[:, :8] * CONDITION_SCALE
        assert torch.equal(grown.decode(mu, temperature=0.0).reshape(8, SEGMENT),
                           source_model.decode(lead, temperature=0.0))
    assert torch.count_nonzero(grown.encoder.mix_mu.weight) == 8  # one kept dimension per row of z
