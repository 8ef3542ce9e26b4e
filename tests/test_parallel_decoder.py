"""The parallel continuation decoder (MusicVAEConfig.decoder_type = "parallel", models/musicvae.py ParallelDecoder):
every step's logits at once from the phrase it continues and z. Torch model, refusals, ONNX export parity (fp32 and
int8, no Scan in the graph), the runtime's continue_ with it as the continuation sub-model, and a CLI run that
trains, validates, exports and evaluates it on a tiny 4-bar dataset."""

import json

import numpy as np
import onnx
import pytest
import torch
from test_continuation import TINY
from test_lookback import TINY_SIZES, evaluated_through_both_engines, lookback_data  # noqa: F401  (a fixture)

from musicbridge.cli import app
from musicbridge.export.exporter import export_model
from musicbridge.export.parity import check_parity, torch_sample_with_noise
from musicbridge.export.testing import tiny_model
from musicbridge.models import build_model, get_preset
from musicbridge.models.musicvae import (
    PARALLEL_TEMPERATURE_SCALE,
    ParallelDecoder,
    choose_tokens,
    first_note_on,
)
from musicbridge.runtime import load_model

torch.set_num_threads(1)

NOTE_ON = 2  # melody's first note-on id


def parallel_model(seed=0, **sizes):
    return tiny_model("melody", seed=seed, lookback=True, decoder_type="parallel", **sizes)


def phrases(model, n, seed):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, model.config.vocab_size, (n, model.steps)))


def test_every_step_is_chosen_from_its_own_logits_given_the_phrase_and_z():
    model = parallel_model()
    assert isinstance(model.decoder, ParallelDecoder)
    z, lookback = torch.randn(5, model.z_size), phrases(model, 5, 0)
    with torch.no_grad():
        logits = model.teacher_forced_logits(z, model.decoder_inputs(lookback), lookback=lookback)  # (B, T, V)
        # No token feeds back: the inputs are not read, the phrase and z are.
        assert torch.equal(logits, model.teacher_forced_logits(z, torch.zeros_like(lookback), lookback=lookback))
        assert not torch.allclose(logits, model.teacher_forced_logits(z, lookback, lookback=phrases(model, 5, 1)))
        assert not torch.allclose(logits, model.teacher_forced_logits(torch.randn(5, model.z_size), lookback,
                                                                       lookback=lookback))
    for rule in ("argmax", "event_first"):
        expected = choose_tokens(logits.reshape(-1, logits.shape[-1]), rule, NOTE_ON).view(5, model.steps)
        assert torch.equal(model.decode(z, temperature=0.0, rule=rule, lookback=lookback), expected)
    # Sampling is reproducible for a seed and differs from greedy.
    first = model.decode(z, temperature=1.0, seed=3, rule="event_first", lookback=lookback)
    assert torch.equal(first, model.decode(z, temperature=1.0, seed=3, rule="event_first", lookback=lookback))
    assert not torch.equal(first, model.decode(z, temperature=0.0, rule="event_first", lookback=lookback))
    with pytest.raises(ValueError, match="lookback="):
        model.decode(z, temperature=0.0)


def test_the_parallel_decoder_is_refused_where_it_has_nothing_to_continue():
    with pytest.raises(ValueError, match='decoder_type "parallel".*lookback'):
        tiny_model("melody", decoder_type="parallel")
    with pytest.raises(ValueError, match='decoder_type "parallel".*flat'):
        tiny_model("melody", hierarchical=True, lookback=True, decoder_type="parallel")
    with pytest.raises(ValueError, match="unknown decoder_type 'sideways'"):
        tiny_model("melody", lookback=True, decoder_type="sideways")
    preset = get_preset("mel_2bar_next_parallel")
    assert preset.model.decoder_type == "parallel" and preset.model.lookback and preset.train.task == "continue"
    assert preset.train.sampling_schedule == "none"  # no decoder inputs to resample


@pytest.mark.parametrize("variants", [(), ("int8",)])
def test_exported_parallel_graphs_match_torch(tmp_path, variants):
    model = parallel_model(seed=2)
    written = export_model(model, tmp_path, preset="tiny", task="continue", rule="event_first", variants=variants)
    assert written["lookback"] is True and written["config"]["decoder_type"] == "parallel"
    report = check_parity(model, tmp_path, phrases(model, 48, 4).numpy(), batch_size=16)
    assert report["passed"] and report["greedy_identical"] == 1.0 and report["sampled_identical"] == 1.0, report
    # Its export declares what temperature means for it: the noise is drawn at temperature × that scale.
    assert json.loads((tmp_path / "model.json").read_text())["temperature_scale"] == PARALLEL_TEMPERATURE_SCALE < 1
    graph = onnx.load(tmp_path / "sampler.onnx").graph
    assert not {"Scan", "Loop"} & {node.op_type for node in graph.node}  # one pass, no recurrence on its tokens
    runtime = load_model(tmp_path, variant="fp32")
    z = np.random.default_rng(5).standard_normal((6, model.z_size)).astype(np.float32)
    noise, lookback = runtime.noise(6, 0.7, np.random.default_rng(6)), phrases(model, 6, 7)
    reference = torch_sample_with_noise(model, torch.from_numpy(z), torch.from_numpy(noise), "event_first", lookback)
    assert np.array_equal(runtime.run_sampler(z, noise, lookback=lookback.numpy()), reference.numpy())
    scaled = runtime.noise(6, PARALLEL_TEMPERATURE_SCALE, np.random.default_rng(9))
    assert np.array_equal(runtime.sample(z, 1.0, rng=np.random.default_rng(9), lookback=lookback.numpy()),
                          runtime.run_sampler(z, scaled, lookback=lookback.numpy()))
    # A scale lock masks every step's note-ons in the one pass as in the Scan.
    locked = runtime.sample(z, 1.0, seed=1, scale="C:major", lookback=lookback.numpy())
    pitches = locked[locked >= NOTE_ON] - NOTE_ON + 21
    assert len(pitches) and set((pitches % 12).tolist()) <= {0, 2, 4, 5, 7, 9, 11}
    for variant in variants:  # int8 loads (its warm-up feeds a lookback), runs and mostly agrees with fp32
        quantized = load_model(tmp_path, variant=variant)
        assert (quantized.sample(z, 0.0, lookback=lookback.numpy()) == runtime.sample(z, 0.0, lookback=lookback.numpy())
                ).mean() > 0.9


def test_continue_answers_with_the_parallel_continuation(tmp_path):
    export_model(tiny_model("melody", seed=1), tmp_path, preset="tiny")
    follower = parallel_model(seed=3)
    export_model(follower, tmp_path / "continuation", preset="tiny", task="continue", rule="event_first")
    model = load_model(tmp_path)
    writer = model.continuation
    phrase = phrases(follower, 4, 8).numpy()
    answer = model.continue_(phrase, novelty=0.0, temperature=0.0)
    with torch.no_grad():
        mu, _ = follower.encode(torch.from_numpy(phrase))
        expected = follower.decode(mu, temperature=0.0, rule="event_first", lookback=torch.from_numpy(phrase))
    assert np.array_equal(answer, expected.numpy())
    # Chained: each chunk continues the one before it, as with the autoregressive continuation.
    longer = model.continue_(phrase[:2], bars=6, novelty=0.0, temperature=0.0)
    assert np.array_equal(longer[:, :32], answer[:2])
    before = longer[:, 32:64]
    assert np.array_equal(longer[:, 64:], writer.sample(writer.encode(before)[0], temperature=0.0, lookback=before))
    # Variations at novelty > 0 differ from each other (z moves, the phrase stays).
    varied = model.continue_(phrase[:1], variations=4, novelty=1.0, temperature=0.0, seed=2)
    assert len({row.tobytes() for row in varied}) > 1


def test_parallel_continuation_trains_exports_and_evaluates(lookback_data):  # noqa: F811
    root, runner, source = lookback_data
    trained = runner.invoke(app, ["train", "--preset", "mel_2bar_next_parallel", "--data", str(root / "data4"),
                                  "--out", str(root / "parallel"), "--steps", "20", *TINY, "--set", "eval_every=10"])
    assert trained.exit_code == 0, trained.output
    records = [json.loads(line) for line in (root / "parallel" / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [10, 20] and all(np.isfinite(r["loss"]) for r in valid)
    assert 0.0 <= valid[-1]["onset_f1"] <= 1.0
    checkpoint = root / "parallel" / "last.pt"
    # An autoregressive model does not start a parallel one: said, not a traceback.
    refused = runner.invoke(app, ["train", "--preset", "mel_2bar_next_parallel", "--data", str(root / "data4"),
                                  "--out", str(root / "refused"), "--steps", "1", "--set", f"init_from={source}",
                                  *TINY])
    assert refused.exit_code != 0 and "different model" in refused.output and "Traceback" not in refused.output
    parity, _, _ = evaluated_through_both_engines(runner, root, source, checkpoint, root / "parallel_model")
    assert parity["continuation_parity"][0]["passed"]


def test_first_note_on_is_what_the_tests_assume():
    assert first_note_on("melody") == NOTE_ON
    assert build_model(get_preset("mel_2bar_next_parallel", TINY_SIZES).model).decoder.steps == 32
