"""Growing a trained short MusicVAE into a longer one (models/musicvae.py grown_state, `--set init_from=` of a
2-bar checkpoint into a 16-bar preset): what is copied, what starts at zero, and what is refused."""

import dataclasses
import json

import pytest
import torch
from test_continuation import TINY
from test_training_e2e import write_tunes
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.export.testing import save_model_checkpoint, tiny_model
from musicbridge.models.musicvae import CONDITION_SCALE, grown_state, grows_into, segment_codes
from musicbridge.training.checkpoint import load_trained_model
from musicbridge.training.loss import SIGMA_FLOOR, code_nll

torch.set_num_threads(1)


@pytest.mark.parametrize("hierarchical", [True, False])
def test_the_grown_decoder_writes_what_the_source_wrote_from_the_same_leading_condition(hierarchical):
    source = tiny_model("melody", bars=2, seed=1)
    larger = {"z_size": 2 * source.z_size, "conductor_size": 40}
    target = tiny_model("melody", hierarchical, bars=4, seed=2, **larger)
    assert grows_into(source.config, target.config)
    state, fresh = grown_state(source.state_dict(), target)
    target.load_state_dict(state)
    assert all(key.startswith("conductor.") for key in fresh) and (len(fresh) > 0) == hierarchical
    z_old = source.z_size
    # The encoder is the source's; μ's new rows are the target's own initialisation, not zero.
    assert torch.equal(target.encoder.mu.weight[:z_old], source.encoder.mu.weight)
    assert target.encoder.mu.weight[z_old:].abs().sum() > 0
    # A condition whose leading columns are the source's z (for a conductor's: z / CONDITION_SCALE, a range an
    # LSTM's outputs reach), the rest anything: the new columns start at zero, so the bottom decoder writes
    # (teacher-forced and greedy) exactly what the source's decoder wrote from z.
    z = torch.randn(3, z_old)
    leading = z / CONDITION_SCALE if hierarchical else z
    cond = torch.cat([leading, 5 * torch.randn(3, target.decoder.init.in_features - z_old)], dim=-1)
    steps = target.segment
    inputs = source.decoder_inputs(source.decode(z, temperature=0.0))[:, :steps]
    with torch.no_grad():
        torch.testing.assert_close(target.decoder(cond, inputs), source.decoder(z, inputs)[:, :steps], atol=1e-5,
                                   rtol=0)
        assert torch.equal(target.decoder.sample(cond, steps, 0.0, None),
                           source.decoder.sample(z, steps, 0.0, None))


def test_only_a_smaller_model_of_the_same_parts_grows():
    source = tiny_model("melody", bars=2).config
    hier = tiny_model("melody", True, bars=4).config
    assert grows_into(source, hier)
    assert not grows_into(source, source)  # the same model loads as it is
    assert not grows_into(dataclasses.replace(source, dec_size=64), hier)  # another bottom decoder
    assert not grows_into(dataclasses.replace(source, z_size=64), hier)  # a z larger than the condition
    assert not grows_into(hier, dataclasses.replace(source, bars=8))  # a conductor does not shrink away
    assert not grows_into(dataclasses.replace(source, lookback=True), dataclasses.replace(hier, lookback=True))


def build_4bar_data(runner: CliRunner, tmp_path) -> None:
    """4-bar windows of made-up tunes in tmp_path / "data4", built by the CLI."""
    write_tunes(tmp_path / "midi", count=24, bars=8)
    built = runner.invoke(app, ["data", "build", str(tmp_path / "midi"), "-o", str(tmp_path / "data4"), "--bars", "4",
                                "--workers", "1", "--cache-dir", str(tmp_path / "cache")])
    assert built.exit_code == 0, built.output


def test_train_init_from_a_2bar_checkpoint_grows_it_into_the_hierarchical_preset(tmp_path):
    runner = CliRunner()
    build_4bar_data(runner, tmp_path)
    sizes = {"embed_size": 16, "enc_size": 32, "enc_layers": 1, "dec_size": 48, "z_size": 8}  # TINY's, z smaller
    source_model = tiny_model("melody", bars=2, seed=5, **sizes)
    source = save_model_checkpoint(source_model, tmp_path / "two_bar.pt", preset="mel_2bar")
    common = ["train", "--preset", "mel_16bar_hier", "--data", str(tmp_path / "data4"), "--steps", "1",
              "--set", "bars=4", "--set", "conductor_size=32", *TINY]
    frozen = runner.invoke(app, [*common, "--out", str(tmp_path / "grown"), "--set", "lr=0", "--set", "lr_min=0",
                                 "--set", f"init_from={source}"])
    assert frozen.exit_code == 0, frozen.output
    assert "grown into this 4-bar one" in frozen.output and "(conductor)" in frozen.output
    grown, _ = load_trained_model(tmp_path / "grown" / "last.pt")
    assert torch.equal(grown.decoder.head.weight, source_model.decoder.head.weight)
    assert torch.equal(grown.encoder.rnn.weight_hh_l0, source_model.encoder.rnn.weight_hh_l0)
    # A 2-bar model with another decoder size is another model: refused with a sentence, not a traceback.
    other = save_model_checkpoint(tiny_model("melody", bars=2, **(sizes | {"dec_size": 24})), tmp_path / "other.pt",
                                  preset="mel_2bar")
    refused = runner.invoke(app, [*common, "--out", str(tmp_path / "refused"), "--set", f"init_from={other}"])
    assert refused.exit_code != 0 and "different model" in refused.output and "Traceback" not in refused.output


def test_segment_codes_are_the_source_posterior_of_each_segment_and_code_nll_weighs_them_by_its_sigma():
    source = tiny_model("melody", bars=2, seed=3)
    tokens = source.decode(torch.randn(6, source.z_size), temperature=1.0, seed=0).reshape(2, 3 * source.steps)
    mu, sigma = segment_codes(source, tokens, source.steps)  # 2 phrases of 3 segments
    assert mu.shape == sigma.shape == (2, 3, source.z_size)
    alone_mu, alone_sigma = source.encode(tokens[1, source.steps: 2 * source.steps][None])
    torch.testing.assert_close(mu[1, 1], alone_mu[0])
    torch.testing.assert_close(sigma[1, 1], alone_sigma[0])
    # The conditions that read as μ cost nothing; an error costs ½ (error / σ)², per phrase, wider conditions
    # reading only their leading columns.
    conditions = torch.cat([mu / CONDITION_SCALE, torch.randn(2, 3, 5)], dim=-1)
    torch.testing.assert_close(code_nll(conditions, mu, sigma, CONDITION_SCALE), torch.zeros(2), atol=1e-8, rtol=0)
    one = torch.zeros(1, 1, 2)
    sigma_pair = torch.tensor([[[0.5, 1e-6]]])
    off_by = torch.tensor([[[1.0, 0.0]]]) / CONDITION_SCALE
    assert float(code_nll(off_by, one, sigma_pair, CONDITION_SCALE)) == pytest.approx(0.5 * (1 / 0.5) ** 2)
    off_by = torch.tensor([[[0.0, 1.0]]]) / CONDITION_SCALE  # a σ near 0 weighs as SIGMA_FLOOR, not infinitely
    assert float(code_nll(off_by, one, sigma_pair, CONDITION_SCALE)) == pytest.approx(0.5 / SIGMA_FLOOR ** 2)


def test_code_steps_teach_the_grown_encoder_and_conductor_the_source_codes_then_the_whole_model_trains(tmp_path):
    runner = CliRunner()
    build_4bar_data(runner, tmp_path)
    sizes = {"embed_size": 16, "enc_size": 32, "enc_layers": 1, "dec_size": 48, "z_size": 8}
    source = save_model_checkpoint(tiny_model("melody", bars=2, seed=5, **sizes), tmp_path / "two_bar.pt",
                                   preset="mel_2bar")
    common = ["train", "--preset", "mel_16bar_hier", "--data", str(tmp_path / "data4"), "--set", "bars=4",
              "--set", "conductor_size=32", "--set", "segment_bars=2", *TINY, "--set", "log_every=5"]
    result = runner.invoke(app, [*common, "--steps", "30", "--out", str(tmp_path / "grown"), "--set", "code_steps=20",
                                 "--set", f"init_from={source}"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "grown" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    code = [r for r in train if r["step"] <= 20]
    assert all("code_nll" in r and "acc" not in r for r in code)  # no decoder pass in the code steps
    assert all("acc" in r and "code_nll" not in r for r in train if r["step"] > 20)
    assert code[-1]["code_nll"] < 0.5 * code[0]["code_nll"]  # the conditions move to the source's codes
    assert any(r["kind"] == "valid" for r in records)
    # --resume inside the code steps loads the source again and goes on where the run stopped.
    resumed = runner.invoke(app, [*common, "--steps", "12", "--out", str(tmp_path / "again"), "--set", "code_steps=20",
                                  "--set", f"init_from={source}"])
    assert resumed.exit_code == 0, resumed.output
    resumed = runner.invoke(app, [*common, "--steps", "14", "--out", str(tmp_path / "again"), "--set", "code_steps=20",
                                  "--set", f"init_from={source}", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    # Without a flat model to learn from, or with one whose sequence is not one segment: a sentence.
    refused = runner.invoke(app, [*common, "--steps", "1", "--out", str(tmp_path / "alone"), "--set", "code_steps=5"])
    assert refused.exit_code != 0 and "init_from" in refused.output and "Traceback" not in refused.output
    refused = runner.invoke(app, [*common, "--steps", "1", "--out", str(tmp_path / "one_bar"), "--set", "code_steps=5",
                                  "--set", "segment_bars=1", "--set", f"init_from={source}"])
    assert refused.exit_code != 0 and "segment_bars=2" in refused.output and "Traceback" not in refused.output
