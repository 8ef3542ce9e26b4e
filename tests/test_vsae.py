"""The vsae (models/vsae.py): its config and preset, the straight-through relaxed decoder the discriminator and
encoder read, exact resume of its two optimisers, starting from a MusicVAE, and a CI-sized run — test-made MIDI →
`data build` → `train --preset mel_2bar_vsae` → `export` (parity) → the torch-free runtime's encode / sample /
interpolate / continue_ → `evaluate --closure`."""

import json

import numpy as np
import pytest
import torch
from test_training import write_dataset
from test_training_e2e import write_tunes
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.data import load_dataset
from musicbridge.export.exporter import export_model
from musicbridge.export.testing import save_model_checkpoint
from musicbridge.models import VSAE, build_model, get_preset, preset_from_dict
from musicbridge.models.vsae import CLOSURE_OPERATIONS, closure_latents
from musicbridge.runtime import load_model
from musicbridge.training.checkpoint import CheckpointError, load_checkpoint
from musicbridge.training.objectives import objective_for
from musicbridge.training.trainer import Trainer

torch.set_num_threads(1)

TINY = {"embed_size": 8, "enc_size": 12, "dec_size": 16, "dec_layers": 1, "z_size": 4, "disc_size": 8,
        "disc_layers": 2}
RUN = {"batch_size": 8, "log_every": 1, "eval_every": 3, "eval_sequences": 16}


def tiny_vsae(seed=0, **extra) -> VSAE:
    torch.manual_seed(seed)
    return build_model(get_preset("mel_2bar_vsae", TINY | extra).model).eval()


# -- config and preset ----------------------------------------------------------------------------------------


def test_preset_config_and_its_refusals():
    preset = get_preset("mel_2bar_vsae")
    assert preset.model.architecture == "vsae" and preset_from_dict(preset.to_dict()) == preset
    # The encoder and decoder are mel_2bar's flat MusicVAE, so mel_2bar's weights can start a vsae.
    assert preset.model.autoencoder() == get_preset("mel_2bar").model
    for bad, message in (({"disc_layers": 6}, "disc_layers 6 would halve the 32 steps"),
                         ({"gumbel_tau": 0}, "gumbel_tau must be above 0"),
                         ({"recon_weight": -1}, "recon_weight must be 0 or more"),
                         ({"closure_share": 1.5}, "closure_share must lie in"),
                         ({"disc_size": 0}, "disc_size must be a whole number of at least 1")):
        with pytest.raises(ValueError, match=message):
            get_preset("mel_2bar_vsae", bad)
    with pytest.raises(KeyError, match="setting 'hierarchical' belongs to the musicvae architecture"):
        get_preset("mel_2bar_vsae", {"hierarchical": True})
    with pytest.raises(ValueError, match="leave out --nproc-per-node"):
        objective_for(preset, build_model(get_preset("mel_2bar_vsae", TINY).model), distributed=True)
    with pytest.raises(ValueError, match='task = "reconstruct"'):
        objective_for(get_preset("mel_2bar_vsae", TINY | {"task": "continue"}),
                      build_model(get_preset("mel_2bar_vsae", TINY).model))


# -- the relaxed decoder --------------------------------------------------------------------------------------


def test_generate_is_straight_through_one_hot_and_passes_gradients_on():
    model = tiny_vsae().train()
    z = torch.randn(6, model.z_size)
    tokens, relaxed = model.generate(z, torch.Generator().manual_seed(1))
    assert tokens.shape == (6, model.steps) and relaxed.shape == (6, model.steps, model.config.vocab_size)
    torch.testing.assert_close(relaxed.detach(), model.one_hot(tokens))  # forward: exactly the hard one-hot
    model.discriminator(relaxed).mean().backward(retain_graph=True)  # the adversarial path
    assert model.decoder.head.weight.grad.abs().sum() > 0 and model.decoder.rnn.weight_hh_l0.grad.abs().sum() > 0
    model.zero_grad()
    mu, sigma = model.encode_relaxed(relaxed)
    ((mu - z).square().mean() + sigma.mean()).backward()  # the latent path reaches encoder and decoder
    assert model.encoder.mu.weight.grad.abs().sum() > 0 and model.decoder.head.weight.grad.abs().sum() > 0
    torch.testing.assert_close(model.encode_relaxed(model.one_hot(tokens))[0], model.encode(tokens)[0])


def test_what_the_discriminator_judges_is_what_the_exported_sampler_plays_at_temperature_1(tmp_path):
    model = tiny_vsae(seed=3)
    export_model(model, tmp_path / "vsae", preset="tiny")
    runtime = load_model(tmp_path / "vsae", device="cpu", warmup=False)
    z = torch.randn(8, model.z_size)
    with torch.no_grad():
        tokens, _ = model.generate(z, torch.Generator().manual_seed(5))
    # The same Gumbel noise, drawn in the order generate draws it (one (B, V) block per step).
    generator = torch.Generator().manual_seed(5)
    uniforms = [torch.rand((8, model.config.vocab_size), generator=generator) for _ in range(model.steps)]
    noise = torch.stack([-torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7))) for u in uniforms], dim=1)
    played = runtime.run_sampler(z.numpy(), noise.numpy().astype(np.float32))
    assert (played == tokens.numpy()).all()


def test_closure_latents_are_sums_and_scalings_of_prior_draws():
    z, partner = torch.randn(400, 3), torch.randn(400, 3)
    assert torch.equal(closure_latents(z, partner, 0.0, torch.Generator().manual_seed(0)), z)
    made = closure_latents(z, partner, 1.0, torch.Generator().manual_seed(0))
    options = torch.stack([z + partner, 0.5 * z, 1.5 * z])  # CLOSURE_OPERATIONS, in order
    which = (made[None] == options).all(dim=2).float().argmax(dim=0)
    assert (made == options[which, torch.arange(400)]).all()
    assert set(which.tolist()) == set(range(len(CLOSURE_OPERATIONS)))
    share = (closure_latents(z, partner, 0.25, torch.Generator().manual_seed(1)) != z).any(dim=1).float().mean()
    assert 0.15 < share < 0.35


# -- training -------------------------------------------------------------------------------------------------


def test_resume_continues_exactly_with_both_optimisers(tmp_path):
    data = load_dataset(write_dataset(tmp_path / "data"))
    preset = get_preset("mel_2bar_vsae", TINY | RUN | {"steps": 6})
    straight = Trainer(preset, data, tmp_path / "a", device="cpu", show_progress=False)
    straight.run()
    Trainer(get_preset("mel_2bar_vsae", TINY | RUN | {"steps": 3}), data, tmp_path / "b", device="cpu",
            show_progress=False).run()
    resumed = Trainer(preset, data, tmp_path / "b", device="cpu", resume=True, show_progress=False)
    resumed.run()
    for key, tensor in straight.model.state_dict().items():  # spectral norm's power-iteration vectors too
        assert torch.equal(tensor, resumed.model.state_dict()[key]), key
    for a, b in ((straight.objective.state_dict(), resumed.objective.state_dict()),):
        for part in ("autoencoder", "discriminator"):
            for index, state in a[part]["state"].items():
                assert all(torch.equal(state[name], b[part]["state"][index][name]) for name in state)
    checkpoint = load_checkpoint(tmp_path / "b" / "last.pt")
    assert checkpoint["architecture"] == "vsae" and set(checkpoint["optimizer"]) == {"autoencoder", "discriminator"}


def test_init_from_the_musicvae_it_is_made_of(tmp_path):
    data = load_dataset(write_dataset(tmp_path / "data"))
    preset = get_preset("mel_2bar_vsae", TINY | RUN | {"steps": 1})
    torch.manual_seed(7)
    source = build_model(preset.model.autoencoder())
    path = save_model_checkpoint(source, tmp_path / "vae.pt", preset="mel_2bar")
    preset.train.init_from = str(path)
    trainer = Trainer(preset, data, tmp_path / "run", device="cpu", show_progress=False)
    for key, tensor in source.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], tensor), key
    other = get_preset("mel_2bar_vsae", TINY | RUN | {"z_size": 6})
    other.train.init_from = str(path)
    with pytest.raises(CheckpointError, match="different model"):
        Trainer(other, data, tmp_path / "other", device="cpu", show_progress=False)


@pytest.mark.timeout(600)
def test_ci_sized_run_trains_exports_with_parity_serves_and_measures_closure(tmp_path):
    runner = CliRunner()
    write_tunes(tmp_path / "midi", count=30)
    data, run, out = tmp_path / "mel_2bar", tmp_path / "runs" / "vsae", tmp_path / "exports" / "vsae"
    built = runner.invoke(app, ["data", "build", str(tmp_path / "midi"), "-o", str(data), "--representation", "melody",
                                "--bars", "2", "--workers", "1", "--cache-dir", str(tmp_path / "cache")])
    assert built.exit_code == 0, built.output
    sets = [f"{k}={v}" for k, v in (TINY | {"eval_every": 4, "log_every": 2, "eval_sequences": 32}).items()]
    trained = runner.invoke(app, ["train", "--preset", "mel_2bar_vsae", "--data", str(data), "--out", str(run),
                                  "--steps", "8", "--batch-size", "8", "--device", "cpu", "--no-progress",
                                  *[part for s in sets for part in ("--set", s)]])
    assert trained.exit_code == 0, trained.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    valid = [r for r in records if r["kind"] == "valid"]
    assert len(train) == 4 and [r["step"] for r in valid] == [4, 8]
    assert {"d_loss", "adversarial", "latent_mse", "recon", "d_real", "d_fake", "fake_distinct_share"} <= set(train[0])
    assert {"latent_mse", "prior_distinct_share", "recon_acc_sampled", "delta_acc"} <= set(valid[-1])
    assert all(np.isfinite(r["loss"]) for r in train + valid)
    assert {"adversarial.png", "loss.png", "accuracy.png"} <= {p.name for p in run.iterdir()}  # the curves
    assert "beta.png" not in {p.name for p in run.iterdir()}  # no β or scheduled sampling: no empty figure

    exported = runner.invoke(app, ["export", str(run / "best.pt"), "-o", str(out), "--data", str(data), "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["passed"]
    metadata = json.loads((out / "model.json").read_text())
    assert metadata["kind"] == metadata["architecture"] == metadata["config"]["architecture"] == "vsae"
    assert not metadata["hierarchical"] and metadata["decoding_rule"] == "argmax"

    model = load_model(out, device="cpu")
    windows = np.asarray(load_dataset(data).split("test")[:4], dtype=np.int64)
    mu, sigma = model.encode(windows)
    assert mu.shape == sigma.shape == (4, 4) and (sigma > 0).all()
    assert model.sample(mu, temperature=0.0).shape == (4, 32)
    path = model.interpolate(windows[0], windows[1], 5)
    assert path.shape == (5, 32) and (path[0] == windows[0]).all() and (path[-1] == windows[1]).all()
    assert model.continue_(windows[:2], variations=2, seed=0).shape == (4, 32)
    assert model.sample_prior(3, seed=1).shape == (3, 32)

    evaluated = runner.invoke(app, ["evaluate", str(out), "--data", str(data), "--closure", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    closure = json.loads(evaluated.stdout)["closure"]
    assert set(closure["operations"]) == {"identity", "sum", "half", "one_and_half"}
    assert closure["data_valid_share"] > 0.5  # the test tunes are in key, their density and leaps are the rule's
    for row in closure["operations"].values():
        assert 0.0 <= row["valid_and_close_share"] <= min(row["valid_share"], row["close_share"]) <= 1.0
        assert 0.0 < row["distinct_share"] <= 1.0 and row["reencode_relative_error"] >= 0.0
    shown = runner.invoke(app, ["evaluate", str(out), "--data", str(data), "--closure", "--limit", "16"])
    assert shown.exit_code == 0 and "0.5·μa" in shown.output
