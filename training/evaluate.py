"""Evaluation metrics for any model with the sampling API — the torch checkpoint here, the ONNX runtime later.

A model is anything with (numpy in, numpy out):
    z_size: int
    encode(tokens (B, T) int) -> (mu (B, Z), sigma (B, Z))
    sample(z (B, Z), temperature=1.0, seed=None) -> tokens (B, T)      # greedy at temperature 0
and optionally teacher_forced_logits(tokens (B, T), z (B, Z)) -> logits (B, T, V) (without it
recon_acc_teacher_forced is None) and continue_(tokens, bars, temperature, variations, novelty, seed) (the
continuation `music_metrics` measures; without it, the greedy decoding of μ). A lookback continuation model
(`lookback` true: its decoder reads the phrase it continues step by step) takes that phrase as sample(…,
lookback=tokens) and teacher_forced_logits(…, lookback=tokens). `TorchModel` adapts a MusicVAE to this;
musicbridge.runtime.Model has the same encode/sample, so `evaluate(runtime_model, ...)` needs no torch.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from musicbridge.music_stats import MAJOR_SCALE, summarize

LN2 = float(np.log(2.0))
ACTIVE_UNIT_VARIANCE = 0.01
# Prior samples drawn for the prior's statistics: a share near 40 % is known to ±0.7 points (one standard error)
# from 5,000, ±1.5 from 1,000 (mel_2bar's out-of-key share read 37.6–40.7 % over five seeds of 1,000)
PRIOR_SAMPLES = 5000


class SamplingModel(Protocol):
    z_size: int

    def encode(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def sample(self, z: np.ndarray, temperature: float = 1.0, seed: int | None = None) -> np.ndarray: ...


class TorchModel:
    """A MusicVAE behind the numpy sampling API (what `musicbridge evaluate CHECKPOINT` measures).

    `rule` is how `sample` picks each token (musicbridge.models.musicvae.DECODING_RULES) — the rule the model
    ships with (`decoding_rule_for(config, task)`: event_first for a melody continuation model), so validation
    measures what the exported sampler plays."""

    def __init__(self, model, device="cpu", rule: str = "argmax"):
        self.model, self.device, self.rule = model.eval(), device, rule
        self.z_size, self.steps = model.z_size, model.steps
        self.lookback = bool(getattr(model, "lookback", False))

    def encode(self, tokens):
        import torch

        with torch.no_grad():
            mu, sigma = self.model.encode(torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=self.device))
        return mu.cpu().numpy(), sigma.cpu().numpy()

    def sample(self, z, temperature=1.0, seed=None, lookback=None):
        import torch

        z = torch.as_tensor(np.asarray(z, dtype=np.float32), device=self.device)
        by_rule = {} if self.rule == "argmax" else {"rule": self.rule}  # the Transformer VAE knows argmax only
        return self.model.decode(z, temperature=temperature, seed=seed, **by_rule,
                                 **self._lookback(lookback)).cpu().numpy()

    def teacher_forced_logits(self, tokens, z, lookback=None):
        import torch

        with torch.no_grad():
            tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=self.device)
            z = torch.as_tensor(np.asarray(z, dtype=np.float32), device=self.device)
            logits = self.model.teacher_forced_logits(z, self.model.decoder_inputs(tokens), **self._lookback(lookback))
        return logits.cpu().numpy()

    def _lookback(self, lookback) -> dict:
        """The lookback keyword for the torch model (none when not given: models without lookback take none)."""
        if lookback is None:
            return {}
        import torch

        return {"lookback": torch.as_tensor(np.asarray(lookback, dtype=np.int64), device=self.device)}


def _batched(function, arrays, batch_size):
    """Apply `function` to aligned slices of `arrays`; concatenate each output."""
    outputs = [function(*(a[i:i + batch_size] for a in arrays)) for i in range(0, len(arrays[0]), batch_size)]
    if isinstance(outputs[0], tuple):
        return tuple(np.concatenate(parts) for parts in zip(*outputs, strict=True))
    return np.concatenate(outputs)


def kl_bits(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """KL(q(z|x) ‖ N(0, I)) per sequence, in bits."""
    sigma = np.maximum(sigma.astype(np.float64), 1e-8)
    mu = mu.astype(np.float64)
    return 0.5 * (mu**2 + sigma**2 - 1.0 - 2.0 * np.log(sigma)).sum(axis=-1) / LN2


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point (n ≥ 2): sequence i gets another sequence's z."""
    order = rng.permutation(n)
    result = np.empty(n, dtype=np.int64)
    result[order] = np.roll(order, 1)
    return result


def reconstruction_metrics(model: SamplingModel, tokens: np.ndarray, onsets: np.ndarray, seed: int = 0,
                           batch_size: int = 512) -> dict[str, Any]:
    """Accuracies of reconstruction from μ, the collapse check (decoding from another sequence's μ), KL."""
    tokens = np.asarray(tokens, dtype=np.int64)
    n = len(tokens)
    if n < 2:
        raise ValueError("evaluation needs at least 2 sequences (the shuffled-z check pairs them)")
    mu, sigma = _batched(model.encode, [tokens], batch_size)
    greedy = _batched(lambda z: model.sample(z, temperature=0.0), [mu], batch_size)
    shuffled = _batched(lambda z: model.sample(z, temperature=0.0), [mu[derangement(n, np.random.default_rng(seed))]],
                        batch_size)
    teacher_forced = None
    if hasattr(model, "teacher_forced_logits"):
        predicted = _batched(lambda t, z: model.teacher_forced_logits(t, z).argmax(-1), [tokens, mu], batch_size)
        teacher_forced = float((predicted == tokens).mean())
    sampled = float((greedy == tokens).mean())
    shuffled_acc = float((shuffled == tokens).mean())
    variance = mu.astype(np.float64).var(axis=0)
    return {
        "recon_acc_teacher_forced": teacher_forced,
        "recon_acc_sampled": sampled,
        "recon_acc_sampled_onsets": float((greedy == tokens)[onsets].mean()) if onsets.any() else None,
        "recon_acc_sampled_shuffled_z": shuffled_acc,
        "delta_acc": sampled - shuffled_acc,
        # Predicting token 0 (melody: hold, drums: no hit) at every step: the accuracy a drone gets for free.
        "all_hold_baseline": float((tokens == 0).mean()),
        "kl_bits": float(kl_bits(mu, sigma).mean()),
        "active_units": int((variance > ACTIVE_UNIT_VARIANCE).sum()),
        "z_size": int(mu.shape[1]),
        "n_sequences": n,
    }


def slerp(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """Spherical interpolation between rows of a and b (linear where they are nearly parallel)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    unit_a = a64 / np.maximum(np.linalg.norm(a64, axis=-1, keepdims=True), 1e-12)
    unit_b = b64 / np.maximum(np.linalg.norm(b64, axis=-1, keepdims=True), 1e-12)
    omega = np.arccos(np.clip((unit_a * unit_b).sum(-1, keepdims=True), -1.0, 1.0))
    sin = np.sin(omega)
    safe = np.where(sin < 1e-6, 1.0, sin)
    spherical = (np.sin((1 - alpha) * omega) * a64 + np.sin(alpha * omega) * b64) / safe
    linear = (1 - alpha) * a64 + alpha * b64
    return np.where(sin < 1e-6, linear, spherical).astype(a.dtype)


def interpolation_metrics(model: SamplingModel, tokens: np.ndarray, points: int = 11, max_pairs: int = 256,
                          seed: int = 0, batch_size: int = 512) -> dict[str, Any]:
    """Mean normalised Hamming distance to endpoint A along latent slerp paths and naive data-space mixes.

    Data-space baseline (as in the MusicVAE paper): at α each step takes B's token with probability α.
    A smooth latent path moves away from A gradually and lands on B; the data-space path is a noisy mix.
    """
    rng = np.random.default_rng(seed)
    tokens = np.asarray(tokens, dtype=np.int64)
    order = rng.permutation(len(tokens))
    pairs = min(max_pairs, len(tokens) // 2)
    a, b = tokens[order[:pairs]], tokens[order[pairs:2 * pairs]]
    mu_a, _ = _batched(model.encode, [a], batch_size)
    mu_b, _ = _batched(model.encode, [b], batch_size)
    alphas = np.linspace(0.0, 1.0, points)
    latent_to_a, latent_to_b, data_to_a = [], [], []
    for alpha in alphas:
        decoded = _batched(lambda z: model.sample(z, temperature=0.0), [slerp(mu_a, mu_b, alpha)], batch_size)
        latent_to_a.append(float((decoded != a).mean()))
        latent_to_b.append(float((decoded != b).mean()))
        mixed = np.where(rng.random(a.shape) < alpha, b, a)
        data_to_a.append(float((mixed != a).mean()))
    result = {"alphas": [round(float(x), 3) for x in alphas], "latent_hamming_to_a": latent_to_a,
              "latent_hamming_to_b": latent_to_b, "data_hamming_to_a": data_to_a, "n_pairs": pairs}
    if hasattr(model, "interpolate"):  # the path the bridge plays: it starts on A and ends on B themselves
        path = np.concatenate([model.interpolate(a[i:i + batch_size], b[i:i + batch_size], points)
                               for i in range(0, pairs, batch_size)])  # (pairs, points, T)
        result["path_hamming_to_a"] = (path != a[:, None]).mean(axis=(0, 2)).tolist()
        result["path_hamming_to_b"] = (path != b[:, None]).mean(axis=(0, 2)).tolist()
    return result


def sequence_stats(tokens: np.ndarray, representation: str, steps_per_bar: int) -> dict[str, np.ndarray]:
    """Per-sequence musical statistics; NaN where undefined (no notes)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    bars = tokens.shape[1] / steps_per_bar
    if representation == "drums":
        hits = tokens > 0
        classes = sum((tokens >> bit) & 1 for bit in range(9))  # drum classes hit per step
        return {"onset_density": hits.sum(1) / bars, "hits_per_onset": _safe_ratio(classes.sum(1), hits.sum(1))}
    stats = {name: np.full(len(tokens), np.nan) for name in ("pitch_range", "distinct_pitches", "in_scale_ratio")}
    stats["onset_density"] = (tokens >= 2).sum(1) / bars
    for i, row in enumerate(tokens):
        pitches = row[row >= 2] + 19  # melody note-on id → MIDI pitch
        if len(pitches) == 0:
            continue
        stats["pitch_range"][i] = pitches.max() - pitches.min()
        stats["distinct_pitches"][i] = len(np.unique(pitches))
        classes = pitches % 12
        # The best-fitting major scale (any of the 12 keys; its relative minor shares the notes).
        stats["in_scale_ratio"][i] = max(np.isin((classes - key) % 12, MAJOR_SCALE).mean() for key in range(12))
    return stats


def _safe_ratio(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def overlap(a: np.ndarray, b: np.ndarray, bins: int = 20) -> float | None:
    """Overlapping area of two histograms (1 = same distribution, 0 = disjoint), on shared bins."""
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return None
    low, high = min(a.min(), b.min()), max(a.max(), b.max())
    integral = np.all(np.mod(np.concatenate([a, b]), 1) == 0) and high - low <= 200
    edges = np.arange(low - 0.5, high + 1.5) if integral else np.linspace(low, high + 1e-9, bins + 1)
    pa, _ = np.histogram(a, edges)
    pb, _ = np.histogram(b, edges)
    return float(np.minimum(pa / len(a), pb / len(b)).sum())


def prior_samples(model: SamplingModel, n_samples: int, temperature: float = 1.0, seed: int = 0,
                  batch_size: int = 512, prior: str = "auto") -> np.ndarray:
    """Phrases (n_samples, T) decoded from seeded z of the model's prior — the same draws for the same seed: an
    exported model's `prior_z` (its fitted prior, or N(0, I) with prior="standard" or without one), else N(0, I)."""
    rng = np.random.default_rng(seed)
    if hasattr(model, "prior_z"):
        z = model.prior_z(n_samples, rng, prior)
    else:
        z = rng.standard_normal((n_samples, model.z_size)).astype(np.float32)
    return np.concatenate([model.sample(z[i:i + batch_size], temperature=temperature, seed=seed + i)
                           for i in range(0, n_samples, batch_size)])


def prior_metrics(model: SamplingModel, data: np.ndarray, representation: str, steps_per_bar: int,
                  n_samples: int = PRIOR_SAMPLES, temperature: float = 1.0, seed: int = 0,
                  batch_size: int = 512) -> dict[str, Any]:
    """Statistics of samples from the prior N(0, I) next to the data's, with their histogram overlap."""
    samples = prior_samples(model, n_samples, temperature, seed, batch_size)
    prior = sequence_stats(samples, representation, steps_per_bar)
    real = sequence_stats(data, representation, steps_per_bar)
    result: dict[str, Any] = {"n_samples": n_samples, "temperature": temperature}
    for name in prior:
        result[name] = {"prior_mean": _nanmean(prior[name]), "data_mean": _nanmean(real[name]),
                        "overlap": overlap(prior[name], real[name])}
    return result


def _nanmean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


CONTINUE_PATH = "continue_"  # the model's own continuation (the runtime's Model.continue_, what the bridge plays)
GREEDY_MU_PATH = "greedy_mu"  # models without one: the greedy decoding of each window's μ


def continuations(model: SamplingModel, inputs: np.ndarray, temperature: float = 0.0, seed: int = 0,
                  batch_size: int = 512, chunks: int = 1) -> np.ndarray:
    """The model's next `chunks` phrases for each input (N, T) → (N, chunks · T), each chunk continuing the one
    before, with novelty 0 (greedy at temperature 0, so it measures the model rather than sampling noise): its
    own continue_ when it has one (an exported model: its continuation sub-model where it ships one), else the
    decoding of μ (a continuation-task checkpoint, or a VAE's paraphrase) — a lookback model's reading the phrase
    it continues, as continue_ feeds it."""
    inputs = np.asarray(inputs, dtype=np.int64)
    steps = inputs.shape[1]
    out = []
    for start in range(0, len(inputs), batch_size):
        window = inputs[start:start + batch_size]
        if hasattr(model, "continue_"):
            bars = chunks * model.bars
            out.append(np.asarray(model.continue_(window, bars=bars, temperature=temperature, variations=1,
                                                  novelty=0.0, seed=seed + start))[:, : chunks * steps])
            continue
        answer = []
        for _ in range(chunks):
            lookback = {"lookback": window} if getattr(model, "lookback", False) else {}
            window = np.asarray(model.sample(model.encode(window)[0], temperature=temperature, seed=seed + start,
                                             **lookback))
            answer.append(window)
        out.append(np.concatenate(answer, axis=1))
    return np.concatenate(out).astype(np.int64)


def music_metrics(model: SamplingModel, tokens: np.ndarray, steps_per_bar: int, n_samples: int = PRIOR_SAMPLES,
                  temperature: float = 1.0, seed: int = 0, batch_size: int = 512) -> dict[str, Any]:
    """musicbridge.music_stats.summarize of the data windows, of seeded prior samples at `temperature` and of
    the model's continuation of each window, side by side (keys documented in docs/evaluate.md). A model with a
    fitted prior (an export's prior.npz) is also sampled from N(0, I), as "prior_standard" (None without one)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    answers = continuations(model, tokens, seed=seed, batch_size=batch_size)
    path = CONTINUE_PATH if hasattr(model, "continue_") else GREEDY_MU_PATH
    fitted = getattr(model, "prior", None)
    standard = prior_samples(model, n_samples, temperature, seed, batch_size, "standard") if fitted else None
    return {
        "data": summarize(tokens, steps_per_bar),
        "prior": summarize(prior_samples(model, n_samples, temperature, seed, batch_size), steps_per_bar),
        "prior_standard": None if standard is None else summarize(standard, steps_per_bar),
        "prior_kind": fitted.kind if fitted else "standard",
        "continuation": summarize(answers, steps_per_bar),
        "prior_temperature": float(temperature),
        "continuation_path": path,
    }


def retrieval_metrics(model: SamplingModel, tokens: np.ndarray, origins: np.ndarray, codec, bars: int,
                      seed: int = 0, batch_size: int = 512) -> dict[str, Any]:
    """How well μ finds music: windows of the same piece nearer than other pieces' windows, and a window's
    transposed copy nearer than every other window (keys documented in docs/latent.md).

    `origins` (N, 3): each window's piece, voice and bar (Dataset.origins). Same-piece candidates that overlap the
    query in time (its own voice, fewer than `bars` bars away) are left out: they share notes. Both distances are
    measured; `chance` is the same ranking on random vectors."""
    from musicbridge.embeddings import (
        METRICS,
        TRANSPOSITIONS,
        copy_ranks,
        mean_cosine,
        ranking_summary,
        same_piece_ranks,
        transposed_windows,
    )

    tokens = np.asarray(tokens, dtype=np.int64)
    pieces, voices, starts = np.asarray(origins).T
    mu = _batched(lambda t: model.encode(t)[0], [tokens], batch_size)
    rng = np.random.default_rng(seed)

    def same_piece(vectors, metric):
        return ranking_summary(same_piece_ranks(vectors, pieces, metric, voices, starts, window_bars=bars))

    result: dict[str, Any] = {"windows": int(len(tokens)), "pieces": int(len(np.unique(pieces)))}
    result["same_piece"] = {metric: same_piece(mu, metric) for metric in METRICS}
    result["same_piece"]["chance"] = same_piece(rng.standard_normal(mu.shape), METRICS[0])
    if codec.name != "melody":
        result["transposition"] = None  # drums have no pitch
        return result
    semitones = rng.choice(TRANSPOSITIONS, len(tokens))
    copies = _batched(lambda t: model.encode(t)[0], [transposed_windows(codec, tokens, semitones, bars)], batch_size)
    others = mu[derangement(len(mu), rng)] if len(mu) > 1 else mu
    result["transposition"] = {
        **{metric: ranking_summary(copy_ranks(mu, copies, metric)) for metric in METRICS},
        "cosine_to_copy": mean_cosine(mu, copies),
        "cosine_to_other_window": mean_cosine(mu, others),
    }
    return result


# -- closure: is the latent valid under addition and scaling? (the vsae's measure, docs/latent.md) ------------

# z of each measured point, from the μ of two phrases a and b; "identity" (decode μ_a itself) is the reference.
CLOSURE_OPERATIONS = {"identity": lambda a, b: a, "sum": lambda a, b: a + b, "half": lambda a, b: 0.5 * a,
                      "one_and_half": lambda a, b: 1.5 * a}
DENSITY_QUANTILES = (0.05, 0.95)  # a valid melody's onsets per bar lie within the data's 5th–95th percentiles
LEAP_QUANTILE = 0.95  # and its leap share at most the data's 95th percentile


def validity_rule(data: np.ndarray, steps_per_bar: int) -> dict[str, Any]:
    """What a valid melody is, calibrated on the data's own phrases (musicbridge.music_stats, as --music): at least
    MIN_KEY_NOTES note-ons, every one in the best-fit key's scale, onsets per bar within the data's
    DENSITY_QUANTILES, a leap share at most the data's LEAP_QUANTILE."""
    from musicbridge.music_stats import MIN_KEY_NOTES, phrase_stats

    stats = phrase_stats(data, steps_per_bar)
    low, high = np.quantile(stats["onsets_per_bar"], DENSITY_QUANTILES)
    leaps = stats["leap_share"][~np.isnan(stats["leap_share"])]
    return {"min_notes": MIN_KEY_NOTES, "in_key": True, "onsets_per_bar": [float(low), float(high)],
            "max_leap_share": float(np.quantile(leaps, LEAP_QUANTILE)) if len(leaps) else 0.0}


def valid_melodies(tokens: np.ndarray, rule: dict[str, Any], steps_per_bar: int) -> np.ndarray:
    """(N,) bool: which phrases (N, T) are valid melodies by `rule` (validity_rule)."""
    from musicbridge.music_stats import phrase_stats

    stats = phrase_stats(tokens, steps_per_bar)
    low, high = rule["onsets_per_bar"]
    with np.errstate(invalid="ignore"):  # NaN (too few notes) compares False: not valid
        return ((stats["notes"] >= rule["min_notes"]) & (stats["out_of_key"] == 0)
                & (stats["onsets_per_bar"] >= low) & (stats["onsets_per_bar"] <= high)
                & (stats["leap_share"] <= rule["max_leap_share"]))


def closure_metrics(model: SamplingModel, tokens: np.ndarray, steps_per_bar: int, max_pairs: int = 512,
                    seed: int = 0, batch_size: int = 512) -> dict[str, Any]:
    """For seeded pairs of phrases (a, b): decode (greedy) z = μ_a + μ_b, 0.5·μ_a, 1.5·μ_a and μ_a itself; per
    operation the share of valid melodies (validity_rule, on the data given), how close each re-encodes to the z
    it came from (relative error ‖μ(decoded) − z‖ / ‖z‖, cosine; "close": nearer to its own z than to any other
    pair's z of that operation), and the share of distinct phrases (a collapsed decoder repeats itself).
    Keys documented in docs/latent.md."""
    from musicbridge.music_stats import FIRST_NOTE_ON

    tokens = np.asarray(tokens, dtype=np.int64)
    pairs = min(max_pairs, len(tokens) // 2)
    if pairs < 2:
        raise ValueError(f"--closure needs at least 4 phrases (2 pairs); the data has {len(tokens)}")
    order = np.random.default_rng(seed).permutation(len(tokens))
    a, b = tokens[order[:pairs]], tokens[order[pairs:2 * pairs]]
    mu_a, mu_b = (_batched(lambda t: model.encode(t)[0], [x], batch_size).astype(np.float64) for x in (a, b))
    rule = validity_rule(tokens, steps_per_bar)
    result: dict[str, Any] = {"n_pairs": pairs, "rule": rule,
                              "data_valid_share": float(valid_melodies(tokens, rule, steps_per_bar).mean()),
                              "operations": {}}
    for name, operation in CLOSURE_OPERATIONS.items():
        z = operation(mu_a, mu_b)  # (P, Z)
        decoded = _batched(lambda x: model.sample(x.astype(np.float32), temperature=0.0), [z], batch_size)
        back = _batched(lambda t: model.encode(t)[0], [decoded], batch_size).astype(np.float64)  # (P, Z)
        error = np.linalg.norm(back - z, axis=1) / np.maximum(np.linalg.norm(z, axis=1), 1e-12)
        cosine = (back * z).sum(1) / np.maximum(np.linalg.norm(back, axis=1) * np.linalg.norm(z, axis=1), 1e-12)
        distances = np.linalg.norm(back[:, None, :] - z[None, :, :], axis=2)  # (P, P): re-encoded i to z of j
        close = distances.argmin(axis=1) == np.arange(pairs)
        valid = valid_melodies(decoded, rule, steps_per_bar)
        result["operations"][name] = {
            "valid_share": float(valid.mean()), "close_share": float(close.mean()),
            "valid_and_close_share": float((valid & close).mean()),
            "reencode_relative_error": float(error.mean()), "reencode_relative_error_median": float(np.median(error)),
            "reencode_cosine": float(cosine.mean()),
            "distinct_share": float(len(np.unique(decoded, axis=0)) / pairs),
            "onsets_per_bar": float((decoded >= FIRST_NOTE_ON).sum(1).mean() * steps_per_bar / decoded.shape[1]),
        }
    return result


# -- attributes: does each attribute knob move what it names, and only that? (docs/latent.md) ----------------

ATTRIBUTE_ALPHAS = tuple(float(a) for a in np.linspace(-2.0, 2.0, 9))  # the α of each knob measured


def attribute_metrics(model: SamplingModel, vectors, tokens: np.ndarray, steps_per_bar: int,
                      alphas=ATTRIBUTE_ALPHAS, batch_size: int = 512) -> dict[str, Any]:
    """For each knob (an attribute vector v of `vectors`, musicbridge.attributes) and each α: the inputs' μ moved to
    μ + α·v, decoded greedy, and the mean of every attribute over those phrases. Per knob: whether its own attribute
    rises with α (Spearman ρ over α, the smallest step between neighbouring α, `monotonic` when every step rises)
    and how far each other attribute moves (its range over α relative to the knob's own, both in units of the
    inputs' standard deviation of that attribute). Keys documented in docs/latent.md."""
    from musicbridge.attributes import ATTRIBUTES, attribute_values

    tokens = np.asarray(tokens, dtype=np.int64)
    names = tuple(ATTRIBUTES)
    inputs = attribute_values(tokens, steps_per_bar)  # (N, K)
    spread = np.nanstd(inputs, axis=0)  # (K,) what one unit of each attribute is worth
    mu = _batched(lambda t: model.encode(t)[0], [tokens], batch_size).astype(np.float32)

    def decoded_means(z: np.ndarray) -> np.ndarray:
        decoded = _batched(lambda x: model.sample(x, temperature=0.0), [z], batch_size)
        return _column_means(attribute_values(decoded, steps_per_bar))  # (K,)

    unmoved = decoded_means(mu)
    result: dict[str, Any] = {"alphas": list(alphas), "n_inputs": int(len(tokens)),
                              "inputs": dict(zip(names, _floats(_column_means(inputs)), strict=True)),
                              "input_std": dict(zip(names, _floats(spread), strict=True)), "knobs": {}}
    for knob in vectors.names:
        if knob not in names:
            continue  # vectors of an attribute this musicbridge cannot measure
        own = names.index(knob)
        means = np.stack([unmoved if alpha == 0 else decoded_means(vectors.shift(mu, {knob: alpha}))
                          for alpha in alphas])  # (A, K)
        steps = np.diff(means[:, own])
        moved = (np.nanmax(means, axis=0) - np.nanmin(means, axis=0)) / np.where(spread > 0, spread, np.nan)  # (K,)
        relative = {name: _float(moved[k] / moved[own]) if moved[own] > 0 else None
                    for k, name in enumerate(names) if k != own}
        result["knobs"][knob] = {
            "means": {name: _floats(means[:, k]) for k, name in enumerate(names)},
            "spearman": _spearman(np.asarray(alphas), means[:, own]),
            "min_step": _float(steps.min()) if len(steps) else None,
            "monotonic": bool(len(steps) and np.all(steps > 0)),
            "own_range_std": _float(moved[own]),
            "relative_range": relative,
            "max_relative_range": max((r for r in relative.values() if r is not None), default=None),
        }
    return result


def _column_means(values: np.ndarray) -> np.ndarray:
    """The mean of each column (N, K) over its defined (finite) rows; NaN for a column with none."""
    defined = np.isfinite(values)
    counts = defined.sum(axis=0)
    sums = np.where(defined, values, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _float(value) -> float | None:
    return float(value) if np.isfinite(value) else None


def _floats(values) -> list[float | None]:
    return [_float(v) for v in values]


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of `values`, ties sharing their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    _, inverse = np.unique(values, return_inverse=True)
    return (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation of x and y; None where y is undefined somewhere or either is constant."""
    if not np.all(np.isfinite(y)):
        return None
    rx, ry = _average_ranks(x), _average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])
