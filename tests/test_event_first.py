"""The event_first decoding rule (the event class first — hold, note-off or note-on, the note-ons scored by their
logsumexp — then the pitch): on hand-made scores in torch and in the ONNX step, torch vs exported sampler on the
same noise, the scale lock inside it, argmax exports unchanged, model.json, the export CLI's continuation/ and the
runtime's continue_, and the TorchModel that validates continuation runs (tiny models, one thread)."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.codecs import get_codec
from musicbridge.export.exporter import export_model
from musicbridge.export.graph import FLOAT, INT64, Graph, make_model
from musicbridge.export.musicvae import choose_token
from musicbridge.export.parity import check_parity, torch_sample_with_noise
from musicbridge.export.testing import save_model_checkpoint, tiny_model
from musicbridge.models import Preset, TrainConfig, build_model, get_preset
from musicbridge.models.musicvae import choose_tokens, decoding_rule_for
from musicbridge.runtime import load_model
from musicbridge.scales import LOCKED, logit_mask, out_of_scale_onsets
from musicbridge.training.checkpoint import checkpoint_payload, save_checkpoint
from musicbridge.training.evaluate import TorchModel

torch.set_num_threads(1)

MELODY = get_codec("melody")
HOLD, NOTE_OFF, NOTE_ON = MELODY.HOLD, MELODY.NOTE_OFF, MELODY.FIRST_NOTE_ON
VOCAB = MELODY.vocab_size
PITCHES = VOCAB - NOTE_ON
SCALE = "C:major"
# A decoder head that is sure THAT a note comes but not WHICH: hold scores HOLD_BIAS, every note-on 0 (±
# HEAD_WEIGHT_SCALE-sized wobble) — argmax holds, while the note-ons' logsumexp (log 88 ≈ 4.5) wins the class.
HOLD_BIAS = 2.0
HEAD_WEIGHT_SCALE = 1e-2


def onnx_rule(rule: str):
    """A one-node-family graph: scores (N, V) → tokens (N,) by export.musicvae.choose_token."""
    graph = Graph("rule")
    scores = graph.input("scores", FLOAT, ["n", VOCAB])
    graph.output(choose_token(graph, scores, rule, NOTE_ON if rule == "event_first" else None), "tokens", INT64, ["n"])
    session = ort.InferenceSession(make_model(graph, 17, {}).SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda array: session.run(None, {"scores": np.asarray(array, np.float32)})[0]


def hand_made_scores() -> tuple[np.ndarray, np.ndarray]:
    """Rows of scores (N, V) and the token event_first must pick for each."""
    rows, expected = [], []
    split = np.zeros(VOCAB, np.float32)  # unsure which pitch, sure a note comes: argmax would hold
    split[HOLD], split[NOTE_OFF], split[NOTE_ON + 40] = 1.0, -5.0, 0.3
    rows.append(split)
    expected.append(NOTE_ON + 40)
    hold = np.zeros(VOCAB, np.float32)  # a confident hold beats the pooled note-ons (log 88 ≈ 4.5)
    hold[HOLD] = 10.0
    rows.append(hold)
    expected.append(HOLD)
    off = np.full(VOCAB, -3.0, np.float32)
    off[NOTE_OFF] = 6.0
    rows.append(off)
    expected.append(NOTE_OFF)
    masked = split.copy()  # the best pitch locked out: the next one plays, never the locked one
    masked[NOTE_ON + 40] += LOCKED
    masked[NOTE_ON + 7] = 0.2
    rows.append(masked)
    expected.append(NOTE_ON + 7)
    lone = split.copy()  # every pitch but one locked: the locked mass is gone, so hold wins again
    lone[NOTE_ON:] += LOCKED
    lone[NOTE_ON + 12] = 0.0
    rows.append(lone)
    expected.append(HOLD)
    return np.stack(rows), np.array(expected)


def test_the_rule_on_hand_made_scores_in_torch_and_onnx():
    scores, expected = hand_made_scores()
    chosen = choose_tokens(torch.from_numpy(scores), "event_first", NOTE_ON).numpy()
    assert chosen.tolist() == expected.tolist()
    assert choose_tokens(torch.from_numpy(scores)).numpy()[0] == HOLD  # what argmax does with the split row
    assert onnx_rule("event_first")(scores).tolist() == expected.tolist()
    # Random scores, a scale's mask on half the rows: the graph step and torch pick the same tokens, and
    # event_first never picks a locked note-on.
    rng = np.random.default_rng(0)
    random = rng.normal(0, 2, (256, VOCAB)).astype(np.float32)
    random[::2] += logit_mask(MELODY, SCALE)
    ours = onnx_rule("event_first")(random)
    assert np.array_equal(ours, choose_tokens(torch.from_numpy(random), "event_first", NOTE_ON).numpy())
    assert out_of_scale_onsets(MELODY, ours[::2], SCALE).sum() == 0
    assert np.array_equal(onnx_rule("argmax")(random), random.argmax(axis=1))


def test_unknown_rules_and_representations_without_note_ons_are_refused(tmp_path):
    with pytest.raises(ValueError, match="choose one of argmax, event_first"):
        choose_tokens(torch.zeros(1, VOCAB), "sampled")
    with pytest.raises(ValueError, match="rule='argmax'"):
        export_model(tiny_model("drums"), tmp_path / "drums", preset="tiny", rule="event_first")
    transformer = build_model(get_preset("mel_2bar_transformer", {"d_model": 16, "heads": 2, "ff_size": 32,
                                                                  "enc_layers": 1, "dec_layers": 1, "z_size": 8}).model)
    with pytest.raises(ValueError, match="argmax decoding only"):
        export_model(transformer, tmp_path / "transformer", preset="tiny", rule="event_first")
    assert not (tmp_path / "drums").exists() and not (tmp_path / "transformer").exists()  # refused before writing


def unsure_model(hierarchical: bool = False):
    """A tiny melody model whose head is the one HOLD_BIAS describes."""
    model = tiny_model("melody", hierarchical, bars=2)
    with torch.no_grad():
        model.decoder.head.weight.mul_(HEAD_WEIGHT_SCALE)
        model.decoder.head.bias.zero_()
        model.decoder.head.bias[HOLD] = HOLD_BIAS
    return model


@pytest.mark.parametrize("hierarchical", [False, True])
def test_exported_event_first_matches_torch_on_the_same_noise(tmp_path, hierarchical):
    model = unsure_model(hierarchical)
    metadata = export_model(model, tmp_path, preset="tiny", rule="event_first")
    runtime = load_model(tmp_path, threads=1)
    z = np.random.default_rng(1).standard_normal((8, model.z_size)).astype(np.float32)
    for temperature in (0.0, 0.8):
        noise = runtime.noise(8, temperature, np.random.default_rng(2))
        ours = runtime.run_sampler(z, noise)
        reference = torch_sample_with_noise(model, torch.from_numpy(z), torch.from_numpy(noise), "event_first")
        assert np.array_equal(ours, reference.numpy()), temperature
    greedy = runtime.sample(z, temperature=0.0)
    assert np.array_equal(greedy, model.decode(torch.from_numpy(z), temperature=0.0, rule="event_first").numpy())
    # The point of the rule: the unsure model plays notes where argmax only holds.
    argmax = model.decode(torch.from_numpy(z), temperature=0.0).numpy()
    assert (argmax >= NOTE_ON).sum() == 0 and (greedy >= NOTE_ON).mean() > 0.5
    report = check_parity(model, tmp_path, greedy, batch_size=4)  # reads the rule from model.json
    assert report["passed"] and report["decoding_rule"] == "event_first" and report["sampled_identical"] == 1.0
    assert metadata["decoding_rule"] == json.loads((tmp_path / "model.json").read_text())["decoding_rule"]
    for name in metadata["variants"]["fp32"].values():
        props = {p.key: json.loads(p.value) for p in onnx.load(tmp_path / name).metadata_props}
        assert props["musicbridge.decoding_rule"] == "event_first"


def test_the_scale_lock_holds_inside_the_event_first_sampler_of_every_variant(tmp_path):
    model = unsure_model()
    export_model(model, tmp_path, preset="tiny", rule="event_first", variants=("int8", "fp16"))
    for variant in ("fp32", "int8", "fp16"):  # fp16 turns the −1e9 mask into −inf: exp(−inf) = 0 all the same
        runtime = load_model(tmp_path, variant=variant, threads=1)
        played = runtime.sample_prior(64, temperature=1.0, seed=3, scale=SCALE)
        assert out_of_scale_onsets(MELODY, played, SCALE).sum() == 0, variant
        assert (played >= NOTE_ON).mean() > 0.5, variant  # it still plays notes, inside the scale


def test_argmax_exports_are_unchanged(tmp_path):
    model = tiny_model("melody", bars=2)
    default = export_model(model, tmp_path / "default", preset="tiny")
    export_model(model, tmp_path / "event_first", preset="tiny", rule="event_first")
    assert default["decoding_rule"] == "argmax"

    def ops(folder):
        return sorted(n.op_type for n in onnx.load(folder / "sampler.onnx").graph.node)

    def loop_ops(folder):
        loop = next(n for n in onnx.load(folder / "sampler.onnx").graph.node if n.op_type == "Scan")
        return {n.op_type for n in loop.attribute[0].g.node}

    assert ops(tmp_path / "default") == ops(tmp_path / "event_first")  # the rule lives in the step only
    assert "LogSoftmax" not in loop_ops(tmp_path / "default") and "TopK" not in loop_ops(tmp_path / "default")
    assert {"LogSoftmax", "TopK", "Concat"} <= loop_ops(tmp_path / "event_first")
    runtime = load_model(tmp_path / "default", threads=1)
    z = np.random.default_rng(4).standard_normal((8, model.z_size)).astype(np.float32)
    noise = runtime.noise(8, 0.9, np.random.default_rng(5))
    # The reference as it was before rules existed: argmax(logits + noise) at every step.
    decoder, cond = model.decoder, model.conditions(torch.from_numpy(z))
    token_gates, cond_gates, layers, state = decoder.prepare(cond)
    tokens, expected = torch.full((8,), decoder.start_token), []
    with torch.no_grad():
        for step in range(model.steps):
            logits, state = decoder.step(tokens, state, token_gates, cond_gates, layers)
            tokens = (logits + torch.from_numpy(noise[:, step])).argmax(dim=-1)
            expected.append(tokens)
    assert np.array_equal(runtime.run_sampler(z, noise), torch.stack(expected, dim=1).numpy())
    z_torch = torch.from_numpy(z)
    assert torch.equal(model.decode(z_torch, 0.9, seed=6), model.decode(z_torch, 0.9, seed=6, rule="argmax"))


def test_export_cli_gives_the_continuation_event_first_and_continue_uses_it(tmp_path):
    vae = tiny_model("melody", bars=2)
    follower = unsure_model()
    vae_path = save_model_checkpoint(vae, tmp_path / "vae.pt")
    next_path = tmp_path / "next.pt"
    save_checkpoint(next_path, checkpoint_payload(follower, Preset("tiny_next", follower.config,
                                                                    TrainConfig(task="continue")),
                                                  MELODY.describe(), "0" * 64, 1))
    result = CliRunner().invoke(app, ["export", str(vae_path), "-o", str(tmp_path / "out"), "--continuation",
                                      str(next_path), "--parity-sequences", "16", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["continuation_parity"][0]["decoding_rule"] == "event_first"
    assert json.loads((tmp_path / "out" / "model.json").read_text())["decoding_rule"] == "argmax"
    assert json.loads((tmp_path / "out" / "continuation" / "model.json").read_text())["decoding_rule"] == "event_first"
    model = load_model(tmp_path / "out", threads=1)
    phrase = model.sample_prior(3, seed=1)
    answer = model.continue_(phrase, novelty=0.0, temperature=0.0)
    mu, _ = follower.encode(torch.from_numpy(phrase))
    assert np.array_equal(answer, follower.decode(mu, temperature=0.0, rule="event_first").numpy())
    assert (answer >= NOTE_ON).mean() > 0.5  # the unsure follower plays notes: argmax would only hold


def test_continuation_runs_validate_with_the_rule_they_ship_with():
    assert decoding_rule_for(get_preset("mel_2bar_next").model, "continue") == "event_first"
    assert decoding_rule_for(get_preset("mel_2bar").model, "reconstruct") == "argmax"
    assert decoding_rule_for(get_preset("drums_2bar").model, "continue") == "argmax"  # no pitches to pool
    model = unsure_model()
    z = np.random.default_rng(7).standard_normal((4, model.z_size)).astype(np.float32)
    sampled = TorchModel(model, rule="event_first").sample(z, temperature=0.0)
    assert np.array_equal(sampled, model.decode(torch.from_numpy(z), temperature=0.0, rule="event_first").numpy())
    assert (TorchModel(model).sample(z, temperature=0.0) >= NOTE_ON).sum() == 0  # argmax stays the default
