"""Transformer VAE: shapes, causal masking, both bottlenecks, the MusicVAE-compatible API, its training knobs
(free bits per group, token dropout kinds and schedule) and a tiny end-to-end run (tiny models, one thread)."""

import json
import math

import pytest
import torch
from test_training import write_dataset
from test_training_e2e import write_tunes
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.data import load_dataset
from musicbridge.models import ModelConfig, TransformerVAE, build_model, get_preset, preset_from_dict
from musicbridge.training import augment, schedules
from musicbridge.training.checkpoint import load_trained_model
from musicbridge.training.loss import LN2, free_bits_groups, kl_cost, vae_loss
from musicbridge.training.trainer import Trainer

torch.set_num_threads(1)

TINY = {"d_model": 16, "heads": 2, "ff_size": 32, "enc_layers": 1, "dec_layers": 2, "z_size": 8, "dropout": 0.0}
MATRIX = {"latent": "matrix", "latent_frames": 4, "memory_tokens": 2}


def tiny(representation="melody", bars=2, **extra):
    preset = get_preset("mel_2bar_transformer", TINY | {"representation": representation, "bars": bars} | extra)
    torch.manual_seed(0)
    return build_model(preset.model).eval()


CASES = [("melody", {}), ("melody", MATRIX), ("drums", {}), ("drums", MATRIX), ("melody", {"positions": "sinusoidal"}),
         ("melody", {"z_in_inputs": False})]


@pytest.mark.parametrize("representation,extra", CASES)
def test_shapes_and_sampling_api(representation, extra):
    model = tiny(representation, **extra)
    assert isinstance(model, TransformerVAE)
    vocab, steps = model.config.vocab_size, model.steps
    tokens = torch.randint(0, vocab, (5, steps))
    mu, sigma = model.encode(tokens)
    assert mu.shape == sigma.shape == (5, 8) and (sigma > 0).all()
    out = model(tokens)
    assert out["logits"].shape == (5, steps, vocab) and out["z"].shape == (5, 8)
    decoded = model.decode(mu, temperature=1.0, seed=3)
    assert decoded.shape == (5, steps) and decoded.dtype == torch.long
    assert decoded.min() >= 0 and decoded.max() < vocab  # never the start or mask token
    assert torch.equal(decoded, model.decode(mu, temperature=1.0, seed=3))
    with pytest.raises(ValueError, match=rf"\(batch, {steps}\)"):
        model.encode(torch.zeros(2, steps + 1, dtype=torch.long))


@pytest.mark.parametrize("extra", [{}, MATRIX])
def test_no_peeking_at_future_tokens(extra):
    """Changing decoder input t changes no logit before t (and does change some at t or later)."""
    model = tiny(**extra)
    z = torch.randn(3, 8)
    inputs = model.decoder_inputs(torch.randint(0, 90, (3, 32)))
    with torch.no_grad():
        for t in (1, 10, 31):
            changed = inputs.clone()
            changed[:, t] = (changed[:, t] + 7) % 90
            before, after = model.teacher_forced_logits(z, inputs), model.teacher_forced_logits(z, changed)
            torch.testing.assert_close(after[:, :t], before[:, :t], rtol=0, atol=1e-6)
            assert (after[:, t:] - before[:, t:]).abs().max() > 1e-4


@pytest.mark.parametrize("extra", [{}, MATRIX, {"z_in_inputs": False}])
def test_cached_decoding_matches_teacher_forcing(extra):
    """The key/value-cached sampler computes the teacher-forced pass's logits: greedy and noisy decoding."""
    model = tiny(**extra)
    z = torch.randn(4, 8)
    greedy = model.decode(z, temperature=0.0)
    with torch.no_grad():
        assert torch.equal(model.teacher_forced_logits(z, model.decoder_inputs(greedy)).argmax(-1), greedy)
        noise = torch.randn(4, 32, 90) * 3
        sampled = model.decoder.sample(z, 32, noise=noise)
        logits = model.teacher_forced_logits(z, model.decoder_inputs(sampled))
    assert torch.equal((logits + noise).argmax(-1), sampled)


def test_matrix_latent_has_one_posterior_per_frame():
    model = tiny(**MATRIX)
    assert model.latent_frames == 4 and model.decoder.memory_tokens == 8
    assert [type(m).__name__ for m in model.latent.down] == ["Conv1d", "GELU", "Conv1d", "GELU", "Conv1d"]  # 32 → 4
    tokens = torch.randint(0, 90, (2, 32))
    with torch.no_grad():
        states = model.encoder(tokens)
        frames = model.latent.down(states.transpose(1, 2)).transpose(1, 2)
        mu, _ = model.encode(tokens)
    assert frames.shape == (2, 4, 16)
    torch.testing.assert_close(mu.view(2, 4, 2), model.latent.mu(frames))  # frame f owns z[2f:2f+2]
    # The last frame moves when the last bar changes (the frames are z's only path to the decoder).
    changed = tokens.clone()
    changed[:, 28:] = (changed[:, 28:] + 5) % 90
    with torch.no_grad():
        mu_changed, _ = model.encode(changed)
    assert (mu_changed.view(2, 4, 2)[:, -1] - mu.view(2, 4, 2)[:, -1]).abs().max() > 1e-5


def test_the_decoder_reads_z_through_memory_and_inputs():
    model = tiny()
    inputs = model.decoder_inputs(torch.randint(0, 90, (2, 32)))
    z = torch.randn(2, 8)
    with torch.no_grad():
        base = model.teacher_forced_logits(z, inputs)
        assert (model.teacher_forced_logits(z + 1, inputs) - base).abs().max() > 1e-3
        memory, extra = model.decoder.condition(z)
    assert memory.shape == (2, 4, 16) and extra.shape == (2, 1, 16)
    assert tiny(z_in_inputs=False).decoder.z_to_inputs is None


def test_bad_configs_are_refused_with_the_field_to_change():
    with pytest.raises(ValueError, match="latent_frames 3"):
        tiny(latent="matrix", latent_frames=3)
    with pytest.raises(ValueError, match="z_size 8 must be a multiple of latent_frames 16"):
        tiny(latent="matrix", latent_frames=16)
    with pytest.raises(ValueError, match="unknown latent"):
        tiny(latent="tensor")
    with pytest.raises(ValueError, match="divisible by heads"):
        tiny(heads=3)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model(ModelConfig(architecture="gru"))


def test_presets_and_old_checkpoint_configs():
    for name, frames in (("mel_2bar_transformer", 1), ("mel_16bar_transformer", 16)):
        preset = get_preset(name)
        assert preset.model.architecture == "transformer" and build_model(preset.model).latent_frames == frames
        assert preset_from_dict(preset.to_dict()) == preset
    # A MusicVAE checkpoint config written before the transformer fields existed still builds a MusicVAE.
    old = {k: v for k, v in get_preset("mel_2bar").to_dict()["model"].items() if k in (
        "representation", "vocab_size", "steps_per_bar", "bars", "hierarchical", "embed_size", "enc_size",
        "enc_layers", "z_size", "conductor_size", "conductor_layers", "dec_size", "dec_layers")}
    assert type(build_model(old)).__name__ == "MusicVAE"


# -- training knobs -----------------------------------------------------------------------------------------


def test_free_bits_per_dimension_and_frame():
    # σ = 1: KL = μ²/2 nats per dimension. Dimension 0 carries 6 bits, dimension 1 none.
    mu = torch.tensor([[math.sqrt(2 * 6 * LN2), 0.0]])
    sigma = torch.ones(1, 2)
    assert kl_cost(mu, sigma, free_bits=4.0).item() == pytest.approx(2 * LN2, abs=1e-5)  # 6 − 4 bits over
    # Split per dimension: 2 free bits each; dimension 0 is 4 over, the unused budget of dimension 1 is no help.
    assert kl_cost(mu, sigma, free_bits=4.0, groups=2).item() == pytest.approx(4 * LN2, abs=1e-5)
    assert free_bits_groups("dimension", 2) == 2 and free_bits_groups("frame", 64, 4) == 4
    with pytest.raises(ValueError, match="sequence, dimension or frame"):
        free_bits_groups("bar", 2)
    logits, targets = torch.randn(1, 3, 5), torch.randint(0, 5, (1, 3))
    loss, _ = vae_loss(logits, targets, mu, sigma, beta=1.0, free_bits=4.0, groups=2)
    loss_seq, _ = vae_loss(logits, targets, mu, sigma, beta=1.0, free_bits=4.0)
    assert (loss - loss_seq).item() == pytest.approx(2 * LN2, abs=1e-5)


def test_token_dropout_kinds_and_schedule():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.cat([torch.full((400, 1), 90), torch.randint(0, 90, (400, 31))], dim=1)
    random = augment.token_dropout(inputs, 0.5, 90, 91, generator, vocab_size=90)
    assert (random[:, 0] == 90).all() and random[:, 1:].max() < 90  # random tokens, never mask or start
    assert 0.4 < (random != inputs).float().mean() < 0.5  # ~1/90 of the draws hit the same token
    config = get_preset("mel_2bar_transformer").train
    config.token_dropout, config.token_dropout_warmup_steps = 0.4, 100
    assert [schedules.token_dropout_rate(s, config) for s in (0, 50, 100, 1000)] == pytest.approx([0, 0.2, 0.4, 0.4])
    config.token_dropout_kind = "swap"
    with pytest.raises(ValueError, match="mask, random"):
        schedules.check(config)


@pytest.mark.parametrize("extra", [{"free_bits_per": "dimension"},
                                   MATRIX | {"free_bits_per": "frame", "token_dropout_kind": "random",
                                             "beta_schedule": "cyclical", "beta_cycle_steps": 4}])
def test_trainer_runs_the_transformer_and_logs_collapse_diagnostics(tmp_path, extra):
    preset = get_preset("mel_2bar_transformer", TINY | extra | {
        "batch_size": 8, "steps": 6, "log_every": 2, "eval_every": 3, "eval_sequences": 16,
        "token_dropout_warmup_steps": 2, "sampling_schedule": "constant", "sampling_rate": 0.3})
    data = write_dataset(tmp_path / "data")
    trainer = Trainer(preset, load_dataset(data), tmp_path / "run", device="cpu", show_progress=False)
    trainer.run()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [3, 6]
    assert {"kl_bits", "active_units", "delta_acc", "recon_acc_sampled"} <= set(valid[-1])
    model, checkpoint = load_trained_model(tmp_path / "run")
    assert isinstance(model, TransformerVAE) and checkpoint["config"]["model"]["latent"] == preset.model.latent
    # --resume accepts the checkpoint (its config is compared as a rebuilt ModelConfig).
    preset.train.steps = 7
    resumed = Trainer(preset, load_dataset(data), tmp_path / "run", device="cpu", resume=True, show_progress=False)
    assert resumed.step == 6


def test_end_to_end_build_train_evaluate(tmp_path):
    """CI: test-made MIDI → `data build` → `train` a tiny transformer 30 steps → `evaluate --json`."""
    runner = CliRunner()
    write_tunes(tmp_path / "midi", count=30)
    data, run = tmp_path / "mel_2bar", tmp_path / "runs" / "tiny_transformer"
    built = runner.invoke(app, ["data", "build", str(tmp_path / "midi"), "-o", str(data), "--representation", "melody",
                                "--bars", "2", "--workers", "1", "--cache-dir", str(tmp_path / "cache")])
    assert built.exit_code == 0, built.output
    sets = [f"{k}={v}" for k, v in (TINY | {"eval_every": 15, "log_every": 5, "lr": 3e-3}).items()]
    trained = runner.invoke(app, ["train", "--preset", "mel_2bar_transformer", "--data", str(data), "--out", str(run),
                                  "--steps", "30", "--batch-size", "16", "--device", "cpu", "--no-progress",
                                  *[part for s in sets for part in ("--set", s)]])
    assert trained.exit_code == 0, trained.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"]
    assert train[-1]["beta"] > 0  # β warm-up is running
    evaluated = runner.invoke(app, ["evaluate", str(run), "--data", str(data), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["preset"] == "mel_2bar_transformer" and report["z_size"] == 8
    assert report["recon_acc_sampled"] > 0.2 and report["recon_acc_teacher_forced"] is not None
