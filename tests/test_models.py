"""MusicVAE shapes, the sampling API and the presets (tiny models, one thread)."""

import pytest
import torch

from musicbridge.models import (
    ModelConfig,
    apply_overrides,
    build_model,
    get_preset,
    load_toml_overrides,
    preset_from_dict,
    preset_names,
)

torch.set_num_threads(1)


def tiny(hierarchical=False, representation="melody", bars=2, steps_per_bar=4):
    vocab = {"melody": 90, "drums": 512}[representation]
    config = ModelConfig(representation=representation, vocab_size=vocab, steps_per_bar=steps_per_bar, bars=bars,
                         hierarchical=hierarchical, embed_size=8, enc_size=12, enc_layers=2, z_size=6,
                         conductor_size=10, conductor_layers=2, dec_size=16, dec_layers=2)
    torch.manual_seed(0)
    return build_model(config).eval()


CASES = [(False, "melody"), (True, "melody"), (False, "drums"), (True, "drums")]


@pytest.mark.parametrize("hierarchical,representation", CASES)
def test_shapes(hierarchical, representation):
    model = tiny(hierarchical, representation)
    vocab, steps = model.config.vocab_size, model.steps
    tokens = torch.randint(0, vocab, (5, steps))
    mu, sigma = model.encode(tokens)
    assert mu.shape == sigma.shape == (5, 6)
    assert (sigma > 0).all()
    out = model(tokens)
    assert out["logits"].shape == (5, steps, vocab)
    assert out["z"].shape == (5, 6)
    decoded = model.decode(mu, temperature=1.0, seed=3)
    assert decoded.shape == (5, steps) and decoded.dtype == torch.long
    assert decoded.min() >= 0 and decoded.max() < vocab  # never the start or mask token


def test_wrong_length_is_refused():
    model = tiny()
    with pytest.raises(ValueError, match=r"\(batch, 8\)"):
        model.encode(torch.zeros(2, 9, dtype=torch.long))


@pytest.mark.parametrize("hierarchical,representation", CASES)
def test_stepwise_decoding_matches_teacher_forcing(hierarchical, representation):
    """`prepare` + `step` (the exporters' reference) compute the same logits as the fused teacher-forced pass."""
    model = tiny(hierarchical, representation)
    z = torch.randn(4, 6)
    greedy = model.decode(z, temperature=0.0)
    with torch.no_grad():
        logits = model.teacher_forced_logits(z, model.decoder_inputs(greedy))
    assert torch.equal(logits.argmax(-1), greedy)
    # And the per-step logits themselves.
    decoder = model.decoder
    with torch.no_grad():
        cond = model.conditions(z)
        token_gates, cond_gates, layers, state = decoder.prepare(cond)
        inputs = model.decoder_inputs(greedy).reshape(cond.shape[0], -1)
        stepped = []
        for t in range(inputs.shape[1]):
            step_logits, state = decoder.step(inputs[:, t], state, token_gates, cond_gates, layers)
            stepped.append(step_logits)
    stepped = torch.stack(stepped, 1).reshape(logits.shape)
    torch.testing.assert_close(stepped, logits, atol=1e-5, rtol=1e-5)


def test_resample_pass_replaces_the_decoder_inputs():
    """forward(resample=f): f gets teacher-forced logits and its inputs drive the real pass."""
    model = tiny(True)
    tokens, eps = torch.randint(0, 90, (3, 8)), torch.randn(3, 6)
    other = model.decoder_inputs(torch.randint(0, 90, (3, 8)))
    seen = []

    def resample(logits):
        seen.append(logits)
        return other

    out = model(tokens, eps=eps, resample=resample)
    with torch.no_grad():
        teacher_forced = model(tokens, eps=eps)["logits"]
    assert len(seen) == 1 and not seen[0].requires_grad
    torch.testing.assert_close(seen[0], teacher_forced)
    torch.testing.assert_close(out["logits"], model(tokens, other, eps)["logits"])
    assert out["logits"].requires_grad


def test_greedy_is_deterministic_and_seeds_reproduce():
    model = tiny()
    z = torch.randn(8, 6) * 3
    assert torch.equal(model.decode(z, 0.0), model.decode(z, 0.0, seed=5))
    a, b, c = model.decode(z, 1.5, seed=1), model.decode(z, 1.5, seed=1), model.decode(z, 1.5, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_decoder_inputs_start_every_segment():
    flat, hier = tiny(False), tiny(True)
    tokens = torch.arange(8)[None] + 2
    start = flat.decoder.start_token
    assert flat.decoder_inputs(tokens).tolist() == [[start, 2, 3, 4, 5, 6, 7, 8]]
    assert hier.decoder_inputs(tokens).tolist() == [[start, 2, 3, 4, start, 6, 7, 8]]


def test_hierarchical_bars_only_meet_through_the_conductor():
    """Changing bar 1's tokens changes nothing in bar 2's logits for a fixed z (flat: it does)."""
    for hierarchical, should_change in ((True, False), (False, True)):
        model = tiny(hierarchical)
        z = torch.randn(1, 6)
        tokens = torch.randint(2, 90, (1, 8))
        altered = tokens.clone()
        altered[0, :3] = torch.tensor([5, 1, 0])
        with torch.no_grad():
            a = model.teacher_forced_logits(z, model.decoder_inputs(tokens))[0, 4:]
            b = model.teacher_forced_logits(z, model.decoder_inputs(altered))[0, 4:]
        assert torch.equal(a, b) != should_change


def test_z_reaches_the_decoder():
    model = tiny(True)
    inputs = model.decoder_inputs(torch.randint(0, 90, (1, 8)))
    with torch.no_grad():
        a = model.teacher_forced_logits(torch.zeros(1, 6), inputs)
        b = model.teacher_forced_logits(torch.ones(1, 6), inputs)
    assert not torch.allclose(a, b)


def test_presets_build_and_override(tmp_path):
    assert {"mel_2bar", "mel_16bar_hier", "mel_16bar_flat", "drums_2bar"} <= set(preset_names())
    for name in preset_names():
        preset = get_preset(name)
        assert preset.model.steps == preset.model.bars * preset.model.steps_per_bar
    hier = get_preset("mel_16bar_hier")
    assert hier.model.hierarchical and hier.model.bars == 16
    assert not get_preset("mel_16bar_flat").model.hierarchical
    assert get_preset("drums_2bar").model.vocab_size == 512

    preset = get_preset("mel_2bar", {"z_size": "64", "train.batch_size": 32, "model": {"dec_layers": 3},
                                     "lr": "3e-4", "hierarchical": "true", "steps": "2e4"})
    assert (preset.model.z_size, preset.train.batch_size, preset.model.dec_layers) == (64, 32, 3)
    assert preset.train.lr == 3e-4 and preset.model.hierarchical is True and preset.train.steps == 20000
    assert get_preset("mel_2bar").model.z_size != 64  # the registry is not mutated
    assert preset_from_dict(preset.to_dict()) == preset

    with pytest.raises(KeyError, match="unknown setting 'zsize'"):
        get_preset("mel_2bar", {"zsize": 3})
    with pytest.raises(ValueError, match="batch_size"):
        get_preset("mel_2bar", {"batch_size": 0.5})
    with pytest.raises(KeyError, match="unknown preset"):
        get_preset("mel_3bar")
    drums = apply_overrides(get_preset("mel_2bar"), {"representation": "drums"})
    assert drums.model.vocab_size == 512 and drums.train.transpose == 0

    toml = tmp_path / "run.toml"
    toml.write_text('preset = "mel_2bar"\nsteps = 10\n[model]\nz_size = 16\n[train]\nfree_bits = 12.5\n')
    preset = get_preset("mel_2bar", load_toml_overrides(toml))
    assert (preset.train.steps, preset.model.z_size, preset.train.free_bits) == (10, 16, 12.5)


def test_build_model_from_checkpoint_dict():
    preset = get_preset("mel_2bar", {"enc_size": 8, "dec_size": 8, "z_size": 4, "embed_size": 4})
    model = build_model(preset.to_dict()["model"])
    assert model.z_size == 4 and model.steps == 32
