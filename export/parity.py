"""Exported graphs vs the torch model on the same inputs: the export command's check and the tests'.

Targets (fp32): μ/σ max abs diff ≤ 1e-4, teacher-forced logits ≤ 1e-3, identical greedy sequences for ≥ 99 %.
int8 / fp16 change the numbers on purpose; their report measures by how much (only fp32 decides pass/fail).
The torch side decodes by the export's own decoding rule (model.json "decoding_rule"; argmax before it existed).
A lookback model (a continuation) reads each checked sequence as its lookback too — the phrase it encodes is the
one it continues, as the runtime's continue_ feeds it — on both sides.
"""

from __future__ import annotations

import numpy as np
import torch

from musicbridge.models.musicvae import ParallelDecoder, check_rule, choose_tokens, first_note_on
from musicbridge.runtime import load_model

TARGETS = {"mu_sigma_max_diff": 1e-4, "logits_max_diff": 1e-3, "greedy_identical": 0.99}


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """The largest |a − b|, and inf as soon as one side holds a NaN (or an inf the other does not): a NaN
    difference must fail the check, not vanish in max() (NaN compares false, so max(0.0, nan) is 0.0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = np.where(a == b, 0.0, np.abs(a - b))  # equal infinities agree
    return float(diff.max()) if diff.size and np.isfinite(diff).all() else (0.0 if not diff.size else float("inf"))


def exported_rule(runtime) -> str:
    """The decoding rule an exported model's sampler was written with (argmax for exports that predate the key)."""
    return runtime.metadata.get("decoding_rule", "argmax")


@torch.no_grad()
def torch_sample_with_noise(model, z: torch.Tensor, noise: torch.Tensor, rule: str = "argmax",
                            lookback: torch.Tensor | None = None) -> torch.Tensor:
    """The reference of the sampler graph: the token `rule` picks from logits + noise[:, step] at every step
    (noise 0 = greedy; musicbridge.models.musicvae.choose_tokens); `lookback` (B, T): a lookback model's phrase."""
    if getattr(model.config, "architecture", "musicvae") == "transformer":
        if check_rule(rule) != "argmax":
            raise ValueError(f"the Transformer VAE decodes by argmax only, not {rule!r}")
        return model.decoder.sample(z, model.steps, noise=noise.reshape(z.shape[0], model.steps, -1))
    note_on = first_note_on(model.config.representation) if check_rule(rule) == "event_first" else None
    decoder = model.decoder
    if isinstance(decoder, ParallelDecoder):  # every step at once: the rule on logits + noise
        logits = decoder(model.conditions(z), None, model.lookback_segments(lookback, z.shape[0]))
        return decoder.choose(logits + noise.reshape(logits.shape), rule, note_on)
    cond = model.conditions(z)
    token_gates, cond_gates, layers, state = decoder.prepare(cond)
    segments = model.lookback_segments(lookback, z.shape[0])  # (N, segment), None without lookback
    looked = None if segments is None else decoder.lookback_gates(segments)  # (N, segment, 4H)
    noise = noise.reshape(cond.shape[0], model.segment, -1)
    tokens = torch.full((cond.shape[0],), decoder.start_token, dtype=torch.long)
    out = []
    for step in range(model.segment):
        logits, state = decoder.step(tokens, state, token_gates, cond_gates, layers,
                                     None if looked is None else looked[:, step])
        tokens = choose_tokens(logits + noise[:, step], rule, note_on)
        out.append(tokens)
    return torch.stack(out, dim=1).reshape(z.shape[0], model.steps)


@torch.no_grad()
def check_parity(model, model_dir, sequences: np.ndarray, variant: str = "fp32", batch_size: int = 256,
                 seed: int = 0) -> dict:
    """Compare the torch model with the exported `variant` on `sequences` (n, T); returns the report."""
    runtime = load_model(model_dir, variant=variant, device="cpu", warmup=False)
    rule = exported_rule(runtime)
    by_rule = {} if rule == "argmax" else {"rule": rule}  # the Transformer VAE's decode knows argmax only
    rng = np.random.default_rng(seed)
    lookback = bool(getattr(model, "lookback", False))
    worst = {"mu": 0.0, "sigma": 0.0, "logits": 0.0}
    greedy_same = sampled_same = token_same = 0
    for begin in range(0, len(sequences), batch_size):
        tokens = np.ascontiguousarray(sequences[begin : begin + batch_size], dtype=np.int64)
        mu, sigma = model.encode(torch.from_numpy(tokens))
        ort_mu, ort_sigma = runtime.encode(tokens)
        worst["mu"] = max(worst["mu"], max_abs_diff(ort_mu, mu.numpy()))
        worst["sigma"] = max(worst["sigma"], max_abs_diff(ort_sigma, sigma.numpy()))
        # A lookback model continues the phrase it encodes, so that phrase is its lookback (continue_ does the same).
        looks, ort_looks = ({"lookback": torch.from_numpy(tokens)}, {"lookback": tokens}) if lookback else ({}, {})
        inputs = model.decoder_inputs(torch.from_numpy(tokens))
        logits = model.teacher_forced_logits(mu, inputs, **looks).numpy()
        ort_logits = runtime.teacher_forced_logits(tokens, mu.numpy(), **ort_looks)
        worst["logits"] = max(worst["logits"], max_abs_diff(ort_logits, logits))
        # Both engines decode the same z: differences come from the graphs alone.
        greedy = model.decode(mu, temperature=0.0, **by_rule, **looks).numpy()
        ort_greedy = runtime.sample(mu.numpy(), temperature=0.0, **ort_looks)
        greedy_same += int((ort_greedy == greedy).all(axis=1).sum())
        token_same += int((ort_greedy == greedy).sum())
        noise = runtime.noise(len(tokens), 1.0, rng)
        sampled = torch_sample_with_noise(model, mu, torch.from_numpy(noise), rule, **looks).numpy()
        ort_sampled = runtime.run_sampler(mu.numpy(), noise, **ort_looks)  # logit_mask zeros: unlocked
        sampled_same += int((ort_sampled == sampled).all(axis=1).sum())
    n = len(sequences)
    report = {
        "variant": variant,
        "decoding_rule": rule,
        "lookback": lookback,
        "sequences": n,
        "mu_sigma_max_diff": max(worst["mu"], worst["sigma"]),
        "logits_max_diff": worst["logits"],
        "greedy_identical": greedy_same / n,
        "greedy_tokens_identical": token_same / (n * model.steps),
        "sampled_identical": sampled_same / n,  # temperature 1, the same Gumbel noise fed to both
    }
    report["passed"] = (report["mu_sigma_max_diff"] <= TARGETS["mu_sigma_max_diff"]
                        and report["logits_max_diff"] <= TARGETS["logits_max_diff"]
                        and report["greedy_identical"] >= TARGETS["greedy_identical"])
    return report


@torch.no_grad()
def prior_sequences(model, n: int, seed: int = 0) -> np.ndarray:
    """Sequences to check parity on when no dataset is given: the model's own samples from the prior (a lookback
    model's continuations of silence: it needs a phrase to continue)."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.z_size, generator=generator)
    silence = {"lookback": torch.zeros(n, model.steps, dtype=torch.long)} if getattr(model, "lookback", False) else {}
    return model.decode(z, temperature=1.0, seed=seed, **silence).numpy()
