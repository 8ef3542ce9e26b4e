"""The continuation path: 4-bar windows → a `continue` task run started from a VAE → exported as the VAE's
continuation/ sub-model → the runtime's continue_ writes the next bars with it; and the metric that measures it."""

import json

import numpy as np
import pytest
import torch
from test_training_e2e import write_tunes
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.runtime import load_model
from musicbridge.training.continuation import continuation_metrics, onset_f1

torch.set_num_threads(1)

TINY = ["--set", "embed_size=16", "--set", "enc_size=32", "--set", "dec_size=48", "--set", "z_size=16",
        "--set", "eval_every=20", "--set", "log_every=10", "--batch-size", "16", "--device", "cpu", "--no-progress"]


def test_onset_f1_counts_same_pitch_on_the_same_step():
    truth = np.array([[62, 0, 1, 64, 0, 0, 66, 0]])
    assert onset_f1(truth, truth)[0] == 1.0
    shifted = np.array([[0, 62, 1, 64, 0, 0, 66, 0]])  # one of three onsets a step late
    assert onset_f1(shifted, truth)[0] == pytest.approx(2 * 2 / 6)
    holds = np.zeros_like(truth)  # silence is no answer: holds never score
    assert onset_f1(holds, truth)[0] == 0.0
    assert onset_f1(holds, holds)[0] == 1.0


def test_metrics_refuse_windows_of_the_wrong_length():
    with pytest.raises(ValueError, match="twice the model"):
        continuation_metrics(None, np.zeros((4, 32), np.int64), steps=32)


@pytest.fixture(scope="module")
def continuation_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("continuation")
    runner = CliRunner()
    write_tunes(root / "midi", count=40, bars=8)
    for bars in (2, 4):
        built = runner.invoke(app, ["data", "build", str(root / "midi"), "-o", str(root / f"data{bars}"), "--bars",
                                    str(bars), "--workers", "1", "--cache-dir", str(root / "cache")])
        assert built.exit_code == 0, built.output
    vae = runner.invoke(app, ["train", "--preset", "mel_2bar", "--data", str(root / "data2"), "--out",
                              str(root / "vae"), "--steps", "20", *TINY])
    assert vae.exit_code == 0, vae.output
    follower = runner.invoke(app, ["train", "--preset", "mel_2bar_next", "--data", str(root / "data4"), "--out",
                                   str(root / "next"), "--steps", "40", "--set", f"init_from={root / 'vae' / 'last.pt'}",
                                   *TINY])
    assert follower.exit_code == 0, follower.output
    return root, runner


def test_continuation_task_trains_from_the_vae_and_validates_against_both_baselines(continuation_run):
    root, _ = continuation_run
    records = [json.loads(line) for line in (root / "next" / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [20, 40]
    for key in ("onset_f1", "onset_f1_repeat", "onset_f1_random", "onset_f1_to_input", "copies"):
        assert 0.0 <= valid[-1][key] <= 1.0


def test_init_from_starts_with_the_vae_weights_and_refuses_another_model(continuation_run):
    root, runner = continuation_run
    frozen = runner.invoke(app, ["train", "--preset", "mel_2bar_next", "--data", str(root / "data4"), "--out",
                                 str(root / "frozen"), "--steps", "1", "--set", "lr=0", "--set", "lr_min=0",
                                 "--set", f"init_from={root / 'vae' / 'last.pt'}", *TINY])
    assert frozen.exit_code == 0, frozen.output
    start = torch.load(root / "vae" / "last.pt", weights_only=True)["model"]
    after = torch.load(root / "frozen" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(start[name], after[name]) for name in start)
    other = runner.invoke(app, ["train", "--preset", "mel_2bar_next", "--data", str(root / "data4"), "--out",
                                str(root / "other"), "--steps", "1", "--set", f"init_from={root / 'vae' / 'last.pt'}",
                                *TINY, "--set", "z_size=8"])
    assert other.exit_code != 0 and "different model" in other.output


def test_a_reconstruction_dataset_is_refused_for_the_continuation_task(continuation_run):
    root, runner = continuation_run
    wrong = runner.invoke(app, ["train", "--preset", "mel_2bar_next", "--data", str(root / "data2"), "--out",
                                str(root / "wrong"), "--steps", "2", *TINY])
    assert wrong.exit_code != 0 and "--bars 4" in wrong.output


def test_exported_continuation_is_used_by_continue(continuation_run):
    root, runner = continuation_run
    out = root / "model"
    exported = runner.invoke(app, ["export", str(root / "vae" / "last.pt"), "-o", str(out), "--continuation",
                                   str(root / "next" / "last.pt"), "--parity-sequences", "16", "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads((out / "continuation" / "model.json").read_text())["task"] == "continue"
    model = load_model(out, threads=1)
    assert model.continuation is not None and model.metadata["task"] == "reconstruct"
    phrase = np.asarray(load_model(out, threads=1).sample_prior(3, seed=1))
    answer = model.continue_(phrase, novelty=0.0, temperature=0.0)
    mu, _ = model.continuation.encode(phrase)
    assert np.array_equal(answer, model.continuation.sample(mu, temperature=0.0))  # the follower wrote it
    assert not np.array_equal(model.encode(phrase)[0], mu)  # its own encoder, not the VAE's
    longer = model.continue_(phrase[:1], bars=6, novelty=0.0, temperature=0.0)
    assert longer.shape == (1, 6 * 16)
    # Chained: bars 3–4 of the answer continue bars 1–2 of it.
    second = model.continuation.sample(model.continuation.encode(longer[:, :32])[0], temperature=0.0)
    assert np.array_equal(longer[:, 32:64], second)


def test_a_vae_exported_as_continuation_is_refused(continuation_run):
    root, runner = continuation_run
    refused = runner.invoke(app, ["export", str(root / "vae" / "last.pt"), "-o", str(root / "bad"), "--continuation",
                                  str(root / "vae" / "last.pt")])
    assert refused.exit_code == 1 and "not to continue" in refused.output
