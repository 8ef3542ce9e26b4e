"""Loss terms, schedules, augmentation, batches, checkpoints and exact resume (tiny models, one thread)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from musicbridge.codecs import UnknownRepresentationError, get_codec
from musicbridge.data import load_dataset
from musicbridge.data.build import dataset_hash
from musicbridge.models import TrainConfig, get_preset
from musicbridge.training import augment, schedules
from musicbridge.training.batches import BatchStream
from musicbridge.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_trained_model,
    save_checkpoint,
)
from musicbridge.training.loss import LN2, kl_divergence, reconstruction_loss, vae_loss
from musicbridge.training.trainer import Trainer

torch.set_num_threads(1)

TINY = {"embed_size": 8, "enc_size": 16, "dec_size": 16, "dec_layers": 1, "z_size": 4, "conductor_size": 8,
        "conductor_layers": 1, "batch_size": 8, "log_every": 1, "eval_every": 3, "eval_sequences": 16}


def synthetic_melodies(n: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Simple tunes: a start pitch, a rhythm and a contour per window (learnable, varied)."""
    out = np.zeros((n, steps), np.uint16)
    for i in range(n):
        base, every, contour = rng.integers(40, 80), rng.choice([2, 4, 8]), rng.choice([-2, -1, 1, 2])
        for j, step in enumerate(range(0, steps, every)):
            out[i, step] = base + contour * (j % 4) - 19  # melody token = pitch − 19
            if every >= 4:
                out[i, step + every - 1] = 1
    return out


def write_dataset(path: Path, sizes=(64, 16, 16), bars=2, seed=0, representation="melody") -> Path:
    """A dataset directory as `musicbridge data build` writes it (arrays + manifest), from synthetic windows."""
    codec, rng = get_codec(representation), np.random.default_rng(seed)
    steps = bars * codec.steps_per_bar
    if representation == "melody":
        arrays = {name: synthetic_melodies(n, steps, rng) for name, n in zip(("train", "valid", "test"), sizes, strict=True)}
    else:
        arrays = {name: (rng.integers(0, 512, (n, steps)) * (rng.random((n, steps)) < 0.4)).astype(np.uint16)
                  for name, n in zip(("train", "valid", "test"), sizes, strict=True)}
    path.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(path / f"{name}.npy", array)
    manifest = {"format": 1, "representation": codec.describe(), "bars": bars, "steps": steps, "hop": 1,
                "sources": ["synthetic"], "splits": {k: {"windows": len(v), "pieces": len(v)} for k, v in arrays.items()},
                "pieces": sum(sizes), "skipped": {"count": 0, "reasons": []}, "build_seconds": 0.0,
                "hash": dataset_hash(codec, arrays)}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "mel")


# -- loss ---------------------------------------------------------------------------------------------------


def test_kl_matches_torch_distributions():
    mu, sigma = torch.randn(5, 7), torch.rand(5, 7) + 0.1
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mu, sigma),
                                                 torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_divergence(mu, sigma), expected)
    assert torch.allclose(kl_divergence(torch.zeros(2, 3), torch.ones(2, 3)), torch.zeros(2))


def test_reconstruction_is_cross_entropy_summed_over_steps():
    logits, targets = torch.randn(3, 6, 10), torch.randint(0, 10, (3, 6))
    per_step = torch.nn.functional.cross_entropy(logits.reshape(-1, 10), targets.reshape(-1), reduction="none")
    torch.testing.assert_close(reconstruction_loss(logits, targets), per_step.view(3, 6).sum(1))


def test_free_bits_and_beta():
    logits, targets = torch.randn(2, 4, 5), torch.randint(0, 5, (2, 4))
    recon = reconstruction_loss(logits, targets).mean()
    # With σ = 1 the KL is μ²/2 nats: choose μ for exactly 10 bits per sequence.
    mu = torch.full((2, 1), math.sqrt(2 * 10 * LN2))
    sigma = torch.ones(2, 1)
    loss, stats = vae_loss(logits, targets, mu, sigma, beta=0.5, free_bits=12.0)
    torch.testing.assert_close(loss, recon)  # KL under the free bits costs nothing
    assert stats["kl_bits"].item() == pytest.approx(10.0, abs=1e-3)
    loss, _ = vae_loss(logits, targets, mu, sigma, beta=0.5, free_bits=4.0)
    torch.testing.assert_close(loss, recon + 0.5 * 6 * LN2, atol=1e-4, rtol=0)  # 6 bits over, in nats, × β
    loss, _ = vae_loss(logits, targets, mu, sigma, beta=0.0, free_bits=0.0)
    torch.testing.assert_close(loss, recon)


def test_loss_gradients_reach_encoder_and_decoder():
    from musicbridge.models import build_model

    model = build_model(get_preset("mel_2bar", TINY).model)
    tokens = torch.randint(0, 90, (3, 32))
    out = model(tokens)
    loss, _ = vae_loss(out["logits"], tokens, out["mu"], out["sigma"], beta=1.0, free_bits=0.0)
    loss.backward()
    for name in ("encoder.rnn.weight_ih_l0", "encoder.mu.weight", "encoder.sigma.weight", "decoder.rnn.weight_hh_l0",
                 "decoder.init.weight", "decoder.head.weight"):
        assert dict(model.named_parameters())[name].grad.abs().sum() > 0, name


# -- schedules ----------------------------------------------------------------------------------------------


def test_beta_schedules():
    config = TrainConfig(beta_max=0.4, beta_rate=0.99, beta_warmup_steps=100, beta_cycle_steps=40)
    config.beta_schedule = "exponential"
    assert schedules.beta(0, config) == 0.0
    assert schedules.beta(100, config) == pytest.approx(0.4 * (1 - 0.99**100))
    assert schedules.beta(10_000, config) == pytest.approx(0.4)
    config.beta_schedule = "linear"
    assert [schedules.beta(s, config) for s in (0, 50, 100, 500)] == pytest.approx([0, 0.2, 0.4, 0.4])
    config.beta_schedule = "cyclical"
    assert [schedules.beta(s, config) for s in (0, 10, 20, 30, 40, 50)] == pytest.approx([0, 0.2, 0.4, 0.4, 0, 0.2])
    config.beta_schedule = "constant"
    assert schedules.beta(0, config) == 0.4
    config.beta_schedule = "sigmoid"
    with pytest.raises(ValueError, match="exponential, linear, cyclical, constant"):
        schedules.check(config)


def test_inverse_sigmoid_sampling_schedule():
    config = TrainConfig(sampling_schedule="inverse_sigmoid", sampling_rate=1000.0, sampling_max=1.0, sampling_min=0.0)
    p = [schedules.sampling_probability(s, config) for s in range(0, 20_001, 500)]
    assert p[0] == pytest.approx(1 - 1000 / 1001)
    assert all(a < b for a, b in zip(p, p[1:], strict=False))
    assert schedules.sampling_probability(round(1000 * math.log(1000)), config) == pytest.approx(0.5, abs=1e-3)
    assert schedules.sampling_probability(10**7, config) == 1.0  # no overflow
    config.sampling_min = 0.01  # the floor: no guide pass while p < 1 %
    assert schedules.sampling_probability(2300, config) == 0.0
    assert schedules.sampling_probability(2400, config) == pytest.approx(1 - 1000 / (1000 + math.exp(2.4)))
    config.sampling_max = 0.3
    assert schedules.sampling_probability(20_000, config) == 0.3
    config.sampling_schedule, config.sampling_rate = "constant", 0.25
    assert schedules.sampling_probability(7, config) == 0.25
    config.sampling_schedule = "none"
    assert schedules.sampling_probability(10**6, config) == 0.0


def test_learning_rate_decays_to_floor():
    config = TrainConfig(lr=1e-3, lr_decay=0.999, lr_min=1e-5)
    assert schedules.learning_rate(0, config) == pytest.approx(1e-3)
    assert schedules.learning_rate(1000, config) == pytest.approx((1e-3 - 1e-5) * 0.999**1000 + 1e-5)
    assert schedules.learning_rate(10**6, config) == pytest.approx(1e-5)


# -- augmentation -------------------------------------------------------------------------------------------


def test_transposition_moves_note_ons_only_and_stays_in_range():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.tensor([[2 + 40, 0, 1, 2 + 45, 0, 0, 1, 0]] * 200 + [[2, 0, 89, 1, 0, 0, 0, 0]])
    shifted = augment.transpose_melodies(tokens, 5, 89, generator)
    assert torch.equal(shifted[:, [1, 2, 4, 5, 6, 7]][:200], tokens[:, [1, 2, 4, 5, 6, 7]][:200])
    shifts = shifted[:200, 0] - tokens[:200, 0]
    assert torch.equal(shifted[:200, 3] - tokens[:200, 3], shifts)  # one shift per melody
    assert set(shifts.tolist()) == set(range(-5, 6))
    assert torch.equal(shifted[200], tokens[200])  # spans the whole range: no shift fits
    assert torch.equal(augment.transpose_melodies(tokens, 0, 89, generator), tokens)


def test_token_dropout_keeps_start_tokens():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 90, (64, 32))
    inputs[:, 0] = 90
    dropped = augment.token_dropout(inputs, 0.3, start_token=90, mask_token=91, generator=generator)
    assert (dropped[:, 0] == 90).all()
    changed = dropped != inputs
    assert (dropped[changed] == 91).all()
    assert 0.25 < changed[:, 1:].float().mean() < 0.35


def test_scheduled_sampling_mixes_samples_at_the_schedule_rate():
    generator = torch.Generator().manual_seed(0)
    targets = torch.zeros(100, 32, dtype=torch.long)
    sampled = torch.ones(100, 32, dtype=torch.long)
    mixed = augment.mix_targets(targets, sampled, 0.2, generator)
    assert 0.17 < mixed.float().mean() < 0.23
    assert torch.equal(augment.mix_targets(targets, sampled, 0.0, generator), targets)
    logits = torch.full((2000, 3), -1e9)
    logits[:, 1] = 0.0
    logits[:1000, 2] = 0.0  # half the rows: tokens 1 and 2 equally likely
    drawn = augment.sample_tokens(logits, generator)
    assert (drawn[1000:] == 1).all()
    assert 0.45 < (drawn[:1000] == 2).float().mean() < 0.55


# -- batches ------------------------------------------------------------------------------------------------


def test_batches_are_seeded_sharded_and_cross_epochs():
    windows = np.arange(20, dtype=np.uint16)[:, None].repeat(4, 1)
    single = BatchStream(windows, 6, seed=3)
    assert [single.indices(s) for s in range(5)] == [BatchStream(windows, 6, seed=3).indices(s) for s in range(5)]
    first_epoch = single.indices(0) + single.indices(1) + single.indices(2) + single.indices(3)[:2]
    assert sorted(first_epoch) == list(range(20))  # step 3 straddles the epoch boundary
    assert single.batch(1).shape == (6, 4) and single.batch(1).dtype == torch.int64
    rank0, rank1 = BatchStream(windows, 5, 3, 0, 2), BatchStream(windows, 5, 3, 1, 2)
    seen0, seen1 = rank0.indices(0) + rank0.indices(1), rank1.indices(0) + rank1.indices(1)
    assert not set(seen0) & set(seen1) and sorted(seen0 + seen1) == list(range(20))


# -- checkpoints and resume ---------------------------------------------------------------------------------


def tiny_preset(name="mel_2bar", **overrides):
    return get_preset(name, {**TINY, **overrides})


def test_resume_continues_exactly(dataset, tmp_path):
    knobs = {"sampling_schedule": "constant", "sampling_rate": 0.5, "token_dropout": 0.1, "beta_rate": 0.9}
    straight = Trainer(tiny_preset(steps=6, **knobs), load_dataset(dataset), tmp_path / "a", device="cpu",
                       show_progress=False)
    straight.run()
    Trainer(tiny_preset(steps=3, **knobs), load_dataset(dataset), tmp_path / "b", device="cpu",
            show_progress=False).run()
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 3
    resumed = Trainer(tiny_preset(steps=6, **knobs), load_dataset(dataset), tmp_path / "b", device="cpu",
                      resume=True, show_progress=False)
    assert resumed.step == 3
    resumed.run()
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    state_a, state_b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(state_a[k]["exp_avg_sq"], state_b[k]["exp_avg_sq"]) for k in state_a)
    # Metrics: the resumed run's log holds each step once, like the straight run's (plus one "end" per session).
    def steps(path):
        return [(r["kind"], r["step"]) for r in map(json.loads, path.read_text().splitlines()) if r["kind"] != "end"]

    assert steps(tmp_path / "a" / "metrics.jsonl") == steps(tmp_path / "b" / "metrics.jsonl")


def test_train_cli_resume_takes_the_checkpoint_preset(dataset, tmp_path):
    from typer.testing import CliRunner

    from musicbridge.cli import app

    run = tmp_path / "run"
    sets = [part for key in ("embed_size", "enc_size", "dec_size", "z_size") for part in ("--set", f"{key}={TINY[key]}")]
    first = CliRunner().invoke(app, ["train", "--preset", "mel_2bar", "--data", str(dataset), "--out", str(run),
                                     "--steps", "2", "--batch-size", "8", "--device", "cpu", "--no-progress", *sets])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(app, ["train", "--resume", "--data", str(dataset), "--out", str(run), "--steps", "4",
                                     "--no-progress"])
    assert again.exit_code == 0, again.output
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint["step"] == 4 and checkpoint["config"]["model"]["z_size"] == TINY["z_size"]
    wrong = CliRunner().invoke(app, ["train", "--resume", "--preset", "drums_2bar", "--data", str(dataset),
                                     "--out", str(run), "--no-progress"])
    assert wrong.exit_code == 1 and "is a 'mel_2bar' run" in wrong.output


def test_checkpoint_contents_and_weights_only_loading(dataset, tmp_path):
    Trainer(tiny_preset(steps=3), load_dataset(dataset), tmp_path, device="cpu", show_progress=False).run()
    raw = torch.load(tmp_path / "last.pt", weights_only=True)
    assert raw["format"] == 1 and raw["preset"] == "mel_2bar" and raw["step"] == 3
    assert raw["representation"] == {"name": "melody", "version": "1", "vocab_size": 90, "steps_per_bar": 16}
    assert raw["dataset_hash"] == load_dataset(dataset).hash
    assert raw["config"]["model"]["z_size"] == 4 and raw["config"]["train"]["steps"] == 3
    assert (tmp_path / "best.pt").is_file()
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporary files
    model, checkpoint = load_trained_model(tmp_path)
    assert checkpoint["step"] == 3 and model.z_size == 4


def test_unknown_representation_version_is_refused(dataset, tmp_path):
    Trainer(tiny_preset(steps=1), load_dataset(dataset), tmp_path, device="cpu", show_progress=False).run()
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    checkpoint["representation"]["version"] = "7"
    save_checkpoint(tmp_path / "future.pt", checkpoint)
    with pytest.raises(UnknownRepresentationError, match=r"future\.pt.*'melody' version '7' is not known"):
        load_checkpoint(tmp_path / "future.pt")


def test_broken_checkpoints_are_refused(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable musicbridge checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": 1, "model": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


def test_dataset_must_fit_the_preset(dataset, tmp_path):
    with pytest.raises(ValueError, match="16-bar windows.*--bars 16"):
        Trainer(get_preset("mel_16bar_hier", TINY), load_dataset(dataset), tmp_path, device="cpu")
    with pytest.raises(ValueError, match="'drums'"):
        Trainer(get_preset("drums_2bar", TINY), load_dataset(dataset), tmp_path, device="cpu")


def test_hierarchical_and_drums_presets_train(tmp_path):
    mel16 = write_dataset(tmp_path / "mel16", sizes=(16, 4, 4), bars=16)
    Trainer(get_preset("mel_16bar_hier", {**TINY, "steps": 2}), load_dataset(mel16), tmp_path / "h", device="cpu",
            show_progress=False).run()
    drums = write_dataset(tmp_path / "drums", sizes=(16, 4, 4), representation="drums")
    summary = Trainer(get_preset("drums_2bar", {**TINY, "steps": 2}), load_dataset(drums), tmp_path / "d",
                      device="cpu", show_progress=False).run()
    assert summary["step"] == 2
    assert load_checkpoint(tmp_path / "h" / "last.pt")["config"]["model"]["hierarchical"] is True
