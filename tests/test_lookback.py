"""The lookback continuation (ModelConfig.lookback, Magenta's Lookback RNN): the decoder also reads, at step t,
the token the phrase it continues played at step t. Torch model, init_from a model without lookback, ONNX
export parity, the runtime's continue_, training and evaluation on a tiny 4-bar dataset, and the refusals."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from test_continuation import TINY
from test_training_e2e import write_tunes
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.export.exporter import export_model
from musicbridge.export.parity import check_parity, torch_sample_with_noise
from musicbridge.export.testing import save_model_checkpoint, tiny_model
from musicbridge.models import build_model, get_preset
from musicbridge.models.musicvae import with_lookback_columns
from musicbridge.models.presets import check_lookback
from musicbridge.runtime import load_model
from musicbridge.training.checkpoint import load_trained_model

torch.set_num_threads(1)

TINY_SIZES = {"embed_size": 16, "enc_size": 32, "dec_size": 48, "z_size": 16}  # what TINY sets


def phrases(model, n, seed):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, model.config.vocab_size, (n, model.steps)))


def louder_lookback(model, factor=20.0):
    """Scale the lookback embedding so the lookback visibly steers the answer of an untrained tiny model."""
    with torch.no_grad():
        model.decoder.lookback_embed.weight.mul_(factor)
    return model


# -- the torch model ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hierarchical", [False, True])
def test_lookback_is_read_and_stepping_matches_the_fused_pass(hierarchical):
    model = tiny_model("melody", hierarchical, bars=2, lookback=True)
    z, lookback = torch.randn(4, 6), phrases(model, 4, 0)
    greedy = model.decode(z, temperature=0.0, lookback=lookback)
    with torch.no_grad():
        logits = model.teacher_forced_logits(z, model.decoder_inputs(greedy), lookback=lookback)
        other = model.teacher_forced_logits(z, model.decoder_inputs(greedy), lookback=phrases(model, 4, 1))
    assert torch.equal(logits.argmax(-1), greedy)  # prepare/step/lookback_gates == the fused LSTM
    assert not torch.allclose(logits, other)  # the same z and inputs, another lookback: other logits
    with pytest.raises(ValueError, match="lookback="):
        model.decode(z, temperature=0.0)
    with pytest.raises(ValueError, match="no lookback"):
        tiny_model("melody", hierarchical, bars=2).decode(z, temperature=0.0, lookback=lookback)


def test_lookback_needs_the_continue_task_and_a_musicvae(tmp_path):
    config = tiny_model("melody", lookback=True).config
    check_lookback(config, "continue")
    with pytest.raises(ValueError, match='task = "continue"'):
        check_lookback(config, "reconstruct")
    with pytest.raises(KeyError, match="setting 'lookback' belongs to the musicvae architecture"):
        get_preset("mel_2bar_transformer", {"lookback": True})  # a transformer's config has no lookback
    with pytest.raises(ValueError, match='task = "continue"'):  # an export says what the graphs mean
        export_model(tiny_model("melody", lookback=True), tmp_path, preset="tiny", task="reconstruct")


def test_lookback_columns_start_at_zero_so_the_widened_model_computes_what_the_source_does():
    source = tiny_model("melody", seed=3)
    target = tiny_model("melody", seed=4, lookback=True)
    state, fresh = with_lookback_columns(source.state_dict(), target)
    target.load_state_dict(state)
    assert fresh == ["decoder.lookback_embed.weight"]
    z, inputs, lookback = torch.randn(5, 6), phrases(source, 5, 0), phrases(source, 5, 1)
    with torch.no_grad():
        torch.testing.assert_close(target.teacher_forced_logits(z, inputs, lookback=lookback),
                                   source.teacher_forced_logits(z, inputs), atol=1e-6, rtol=0)
    assert torch.equal(target.decode(z, temperature=0.0, lookback=lookback), source.decode(z, temperature=0.0))
    with pytest.raises(ValueError, match="another model"):
        with_lookback_columns(target.state_dict(), target)  # only a model WITHOUT lookback is widened


# -- export -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hierarchical,rule,variants", [(False, "event_first", ("int8",)), (True, "argmax", ())])
def test_exported_lookback_graphs_match_torch(tmp_path, hierarchical, rule, variants):
    model = louder_lookback(tiny_model("melody", hierarchical, bars=2, lookback=True))
    written = export_model(model, tmp_path, preset="tiny", task="continue", rule=rule, variants=variants)
    assert written["lookback"] is True and json.loads((tmp_path / "model.json").read_text())["lookback"] is True
    windows = phrases(model, 48, 2).numpy()
    report = check_parity(model, tmp_path, windows, batch_size=16)
    assert report["lookback"] and report["passed"], report
    assert report["logits_max_diff"] <= 1e-3 and report["greedy_identical"] >= 0.99
    assert report["sampled_identical"] >= 0.99
    runtime = load_model(tmp_path, variant="fp32")
    assert runtime.lookback
    for role in ("sampler", "teacher_forced"):
        assert "lookback" in {i.name for i in runtime.session(role).get_inputs()}
    # A lookback that is not the encoded phrase, with noise: the graph and the torch reference agree exactly.
    z = np.random.default_rng(3).standard_normal((8, model.z_size)).astype(np.float32)
    noise = runtime.noise(8, 0.8, np.random.default_rng(4))
    lookback = phrases(model, 8, 5)
    reference = torch_sample_with_noise(model, torch.from_numpy(z), torch.from_numpy(noise), rule, lookback).numpy()
    assert np.array_equal(runtime.run_sampler(z, noise, lookback=lookback.numpy()), reference)
    with pytest.raises(ValueError, match="lookback continuation"):
        runtime.sample(z, temperature=0.0)
    for variant in variants:  # int8 loads (its warm-up feeds a lookback) and runs
        assert load_model(tmp_path, variant=variant).sample(z, 0.0, lookback=lookback.numpy()).shape == (8, 32)


def test_continue_feeds_the_window_it_continues_as_lookback(tmp_path):
    export_model(tiny_model("melody", seed=1), tmp_path, preset="tiny")
    follower = louder_lookback(tiny_model("melody", seed=2, lookback=True))
    export_model(follower, tmp_path / "continuation", preset="tiny", task="continue", rule="event_first")
    model = load_model(tmp_path)
    writer = model.continuation
    assert writer.lookback and not model.lookback
    phrase = phrases(follower, 6, 7).numpy()
    answer = model.continue_(phrase, novelty=0.0, temperature=0.0)
    mu = writer.encode(phrase)[0]
    assert np.array_equal(answer, writer.sample(mu, temperature=0.0, lookback=phrase))
    # The same z with another phrase to look back at: other answers — the lookback carries what z does not.
    elsewhere = writer.sample(mu, temperature=0.0, lookback=np.roll(phrase, 1, axis=0))
    assert (elsewhere != answer).any(axis=1).sum() >= 3
    # Variations all continue the input; chained chunks each look back at the chunk before.
    fanned = model.continue_(phrase[:2], variations=3, novelty=0.0, temperature=0.0)
    assert np.array_equal(fanned, np.repeat(answer[:2], 3, axis=0))
    longer = model.continue_(phrase[:2], bars=6, novelty=0.0, temperature=0.0)
    assert np.array_equal(longer[:, :32], answer[:2])
    for chunk in (1, 2):
        before = longer[:, 32 * (chunk - 1):32 * chunk]
        expected = writer.sample(writer.encode(before)[0], temperature=0.0, lookback=before)
        assert np.array_equal(longer[:, 32 * chunk:32 * (chunk + 1)], expected)
    with pytest.raises(ValueError, match="lookback continuation"):
        writer.sample_prior(2)
    with pytest.raises(ValueError, match="no lookback input"):
        model.sample(mu, lookback=phrase)


# -- training, init_from, evaluation, the CLI ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def lookback_data(tmp_path_factory):
    """A tiny 4-bar dataset and a checkpoint of the matching model WITHOUT lookback (what mel_2bar's is)."""
    root = tmp_path_factory.mktemp("lookback")
    runner = CliRunner()
    write_tunes(root / "midi", count=40, bars=8)
    built = runner.invoke(app, ["data", "build", str(root / "midi"), "-o", str(root / "data4"), "--bars", "4",
                                "--workers", "1", "--cache-dir", str(root / "cache")])
    assert built.exit_code == 0, built.output
    config = dataclasses.replace(get_preset("mel_2bar_next_lookback", TINY_SIZES).model, lookback=False)
    torch.manual_seed(0)
    source = save_model_checkpoint(build_model(config), root / "vae.pt", preset="mel_2bar")
    return root, runner, source


def train(runner, root, out, *extra):
    return runner.invoke(app, ["train", "--preset", "mel_2bar_next_lookback", "--data", str(root / "data4"), "--out",
                               str(root / out), *TINY, *extra])


def test_init_from_a_model_without_lookback_starts_where_it_was(lookback_data):
    root, runner, source = lookback_data
    frozen = train(runner, root, "frozen", "--steps", "1", "--set", "lr=0", "--set", "lr_min=0",
                   "--set", f"init_from={source}")
    assert frozen.exit_code == 0, frozen.output
    assert "zero lookback columns" in frozen.output and "decoder.lookback_embed.weight" in frozen.output
    before, _ = load_trained_model(source)
    after, checkpoint = load_trained_model(root / "frozen" / "last.pt")
    assert after.lookback and checkpoint["step"] == 1
    old, new = before.state_dict(), after.state_dict()
    embed = after.config.embed_size
    for name, tensor in old.items():
        if name != "decoder.rnn.weight_ih_l0":
            assert torch.equal(new[name], tensor), name
    w_old, w_new = old["decoder.rnn.weight_ih_l0"], new["decoder.rnn.weight_ih_l0"]
    assert torch.equal(w_new[:, :embed], w_old[:, :embed]) and torch.equal(w_new[:, 2 * embed:], w_old[:, embed:])
    assert not w_new[:, embed:2 * embed].any()
    z, inputs, lookback = torch.randn(6, after.z_size), phrases(after, 6, 0), phrases(after, 6, 1)
    with torch.no_grad():
        torch.testing.assert_close(after.teacher_forced_logits(z, inputs, lookback=lookback),
                                   before.teacher_forced_logits(z, inputs), atol=1e-6, rtol=0)
    # Back the other way is another model: a model without lookback does not start from a lookback checkpoint.
    other = runner.invoke(app, ["train", "--preset", "mel_2bar_next", "--data", str(root / "data4"), "--out",
                                str(root / "other"), "--steps", "1", "--set",
                                f"init_from={root / 'frozen' / 'last.pt'}", *TINY])
    assert other.exit_code != 0 and "different model" in other.output


def test_lookback_refused_on_the_reconstruct_task(lookback_data):
    root, runner, _ = lookback_data
    refused = runner.invoke(app, ["train", "--preset", "mel_2bar", "--data", str(root / "data4"), "--out",
                                  str(root / "refused"), "--steps", "1", "--set", "lookback=true", *TINY])
    assert refused.exit_code != 0 and 'task = "continue"' in refused.output and "Traceback" not in refused.output


def test_lookback_trains_validates_exports_and_evaluates(lookback_data):
    root, runner, source = lookback_data
    trained = train(runner, root, "next", "--steps", "20", "--set", "eval_every=10", "--set", f"init_from={source}")
    assert trained.exit_code == 0, trained.output
    records = [json.loads(line) for line in (root / "next" / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [10, 20]
    assert all(0.0 <= valid[-1][key] <= 1.0 for key in ("onset_f1", "onset_f1_repeat", "onset_f1_random", "copies"))
    train_records = [r for r in records if r["kind"] == "train"]
    assert all(np.isfinite(r["loss"]) for r in train_records)

    checkpoint = root / "next" / "last.pt"
    out = root / "model"
    parity, torch_result, runtime_result = evaluated_through_both_engines(runner, root, source, checkpoint, out)
    assert parity["passed"] and parity["continuation_parity"][0]["lookback"]
    assert json.loads((out / "continuation" / "model.json").read_text())["lookback"] is True
    assert runtime_result["onset_f1_repeat"] == torch_result["onset_f1_repeat"]


def evaluated_through_both_engines(runner, root, source, checkpoint, out):
    """`evaluate --continuation` of a continuation checkpoint (torch), and of `source` exported to `out` with it as
    the continuation sub-model (onnxruntime): (the export's parity report, torch's result, the runtime's). Asserts
    that both engines give the same greedy answers (fp32 graphs compute what the checkpoint does)."""
    by_torch = runner.invoke(app, ["evaluate", str(checkpoint), "--data", str(root / "data4"), "--continuation",
                                   "--json"])
    assert by_torch.exit_code == 0, by_torch.output
    exported = runner.invoke(app, ["export", str(source), "-o", str(out), "--continuation", str(checkpoint),
                                   "--parity-sequences", "16", "--json"])
    assert exported.exit_code == 0, exported.output
    by_runtime = runner.invoke(app, ["evaluate", str(out), "--data", str(root / "data4"), "--continuation", "--json"])
    assert by_runtime.exit_code == 0, by_runtime.output
    torch_result, runtime_result = (json.loads(r.stdout)["continuation"] for r in (by_torch, by_runtime))
    for key in ("onset_f1", "token_acc", "onset_f1_to_input"):
        assert runtime_result[key] == pytest.approx(torch_result[key], abs=0.02), key
    return json.loads(exported.stdout), torch_result, runtime_result
