"""Hierarchical segments of several bars (MusicVAEConfig.segment_bars): the conductor emits bars / segment_bars
outputs, and the bottom decoder, restarted from each, writes segment_bars · steps_per_bar steps. The torch model's
fused and stepwise passes, the ONNX export, the runtime, evaluation, old exports and checkpoints, the refusals, and
a 2-bar model grown into a 4-bar one of 2-bar segments."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from musicbridge.export.exporter import export_model
from musicbridge.export.parity import check_parity, torch_sample_with_noise
from musicbridge.export.testing import tiny_model
from musicbridge.models import MusicVAEConfig, get_preset
from musicbridge.models.musicvae import CONDITION_SCALE, grown_state, grows_into
from musicbridge.runtime import ModelLoadError, load_model
from musicbridge.training.checkpoint import load_trained_model
from musicbridge.training.evaluate import TorchModel, reconstruction_metrics

torch.set_num_threads(1)

DATA = Path(__file__).parent / "data"
SEGMENT = 32  # 2 bars of 16 steps


def windows(model, n, seed):
    return np.random.default_rng(seed).integers(0, model.config.vocab_size, (n, model.steps))


@pytest.mark.parametrize("lookback", [False, True])
def test_two_bar_segments_step_as_the_fused_pass_computes(lookback):
    model = tiny_model("melody", True, bars=4, segment_bars=2, lookback=lookback)
    assert model.segment == SEGMENT
    z = torch.randn(5, model.z_size)
    looks = {"lookback": torch.from_numpy(windows(model, 5, 1))} if lookback else {}
    assert model.conditions(z).shape == (5 * 2, model.config.conductor_size)  # one conductor output per 2 bars
    greedy = model.decode(z, temperature=0.0, **looks)
    assert greedy.shape == (5, 64)
    inputs = model.decoder_inputs(greedy)
    starts = (inputs == model.decoder.start_token).all(dim=0).nonzero().flatten().tolist()
    assert starts == [0, SEGMENT]  # the decoder restarts every 2 bars, not every bar
    with torch.no_grad():
        logits = model.teacher_forced_logits(z, inputs, **looks)
    assert torch.equal(logits.argmax(-1), greedy)  # prepare/step == the fused LSTM, segment by segment


def test_segment_bars_that_do_not_fit_are_refused_with_the_fix():
    sizes = {"representation": "melody", "vocab_size": 90, "bars": 4, "hierarchical": True}
    with pytest.raises(ValueError, match=r"segment_bars = 3 does not divide bars = 4.*--set segment_bars=N"):
        MusicVAEConfig(**sizes, segment_bars=3)
    with pytest.raises(ValueError, match=r"needs a hierarchical model.*--set hierarchical=true"):
        MusicVAEConfig(**(sizes | {"hierarchical": False}), segment_bars=2)
    with pytest.raises(ValueError, match="segment_bars must be a whole number"):
        MusicVAEConfig(**sizes, segment_bars=0)
    assert get_preset("mel_16bar_hier", {"segment_bars": 2}).model.segment_bars == 2  # the 16-bar variant
    with pytest.raises(ValueError, match="does not divide bars = 16"):
        get_preset("mel_16bar_hier", {"segment_bars": 3})


def test_exported_segments_match_torch_and_the_runtime_cuts_by_them(tmp_path):
    model = tiny_model("melody", True, bars=4, segment_bars=2)
    export_model(model, tmp_path, preset="tiny")
    assert json.loads((tmp_path / "model.json").read_text())["segment_bars"] == 2
    report = check_parity(model, tmp_path, windows(model, 32, 0), batch_size=16)
    assert report["passed"] and report["sampled_identical"] >= 0.99, report
    runtime = load_model(tmp_path)
    assert (runtime.segment_bars, runtime.segment) == (2, SEGMENT)
    tokens = windows(model, 6, 1)
    assert np.array_equal(runtime.decoder_inputs(tokens), model.decoder_inputs(torch.from_numpy(tokens)).numpy())
    z = np.random.default_rng(2).standard_normal((6, model.z_size)).astype(np.float32)
    noise = runtime.noise(6, 0.8, np.random.default_rng(3))
    reference = torch_sample_with_noise(model, torch.from_numpy(z), torch.from_numpy(noise)).numpy()
    assert np.array_equal(runtime.run_sampler(z, noise), reference)
    assert runtime.sample(z, temperature=0.0).shape == (6, 64) and runtime.sample_prior(3, seed=1).shape == (3, 64)
    # Evaluation reads the exported model as it reads the torch one.
    onsets = tokens >= 2
    ours, torch_side = reconstruction_metrics(runtime, tokens, onsets), reconstruction_metrics(TorchModel(model),
                                                                                              tokens, onsets)
    for key in ("recon_acc_teacher_forced", "recon_acc_sampled", "recon_acc_sampled_shuffled_z"):
        assert ours[key] == torch_side[key], key


def test_exports_and_checkpoints_without_the_field_are_one_bar_segments(tmp_path):
    model = tiny_model("melody", True, bars=4)
    export_model(model, tmp_path, preset="tiny")
    metadata = json.loads((tmp_path / "model.json").read_text())
    del metadata["segment_bars"]  # model.json as exports wrote it before the field
    (tmp_path / "model.json").write_text(json.dumps(metadata))
    runtime = load_model(tmp_path)
    assert (runtime.segment_bars, runtime.segment) == (1, 16)
    tokens = windows(model, 4, 0)
    assert np.array_equal(runtime.decoder_inputs(tokens), model.decoder_inputs(torch.from_numpy(tokens)).numpy())
    # graphs written for 1-bar segments under a model.json that claims 2: refused, not decoded wrongly
    (tmp_path / "model.json").write_text(json.dumps(metadata | {"segment_bars": 2}))
    with pytest.raises(ModelLoadError, match="segment_bars"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps(metadata | {"segment_bars": 3}))
    with pytest.raises(ModelLoadError, match="re-export"):
        load_model(tmp_path)
    old, _ = load_trained_model(DATA / "union_config_musicvae.pt")  # a checkpoint from before the field
    assert old.config.segment_bars == 1


def test_a_2bar_model_grown_into_2bar_segments_decodes_each_segment_as_the_source_does():
    source = tiny_model("melody", bars=2, seed=1)
    target = tiny_model("melody", True, bars=4, seed=2, segment_bars=2, z_size=2 * source.z_size, conductor_size=40)
    assert grows_into(source.config, target.config) and target.segment == source.steps  # the exact case
    assert grows_into(source.config, tiny_model("melody", True, bars=4, segment_bars=4).config)  # the rules as before
    state, _ = grown_state(source.state_dict(), target)
    target.load_state_dict(state)
    z = torch.randn(3, target.z_size)
    with torch.no_grad():
        # (3 · 2, z): each segment's leading condition columns, read as z · CONDITION_SCALE (grown_state)
        lead = target.conditions(z)[:, : source.z_size] * CONDITION_SCALE
        assert torch.equal(target.decode(z, temperature=0.0).reshape(6, SEGMENT), source.decode(lead, temperature=0.0))
        tokens = torch.from_numpy(windows(target, 3, 4))
        segments = tokens.reshape(6, SEGMENT)
        torch.testing.assert_close(target.teacher_forced_logits(z, target.decoder_inputs(tokens)).reshape(6, SEGMENT, -1),
                                   source.teacher_forced_logits(lead, source.decoder_inputs(segments)), atol=1e-5,
                                   rtol=0)
