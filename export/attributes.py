"""Fit a model's attribute vectors at export: μ of a seeded choice of training windows against their attributes.

    vectors, entry = fit_attributes(model, dataset.split("train"), steps_per_bar)   # AttributeVectors + its entry
    add_attributes(out_dir, metadata, vectors, entry)      # OUT/attributes.npz, listed and hashed in model.json

The windows' μ come from the torch encoder on their own tokens (export/prior.py `posteriors`), their attributes
from musicbridge.music_stats (musicbridge.attributes.ATTRIBUTES); musicbridge.attributes.fit_vectors makes the
vectors (the methods, and the measurements behind the default, in docs/latent.md). Melody models only: the
attributes are statistics of melodies.

The `calibrated` method (the default) starts from the regression's vectors and asks the decoder (`calibrate`):
CALIBRATION_WINDOWS of those training windows' μ are moved along lines and decoded greedily — the same codes for
every line, so two lines differ by what the decoder does, not by which windows were drawn — at the α that
`evaluate --attributes` measures (−2…+2), and the mean of every decoded attribute is taken, in standard deviations
of the training windows' attribute:

1. scale: the effect of each regression vector on its own decoded attribute between α = −1 and +1 gives the
   largest scale, the one for TARGET_EFFECT standard deviations per unit α, capped so that one unit of α moves the
   code at most TRAVEL posterior standard deviations (the Mahalanobis distance under the training codes'
   covariance): far along a vector the decoder leaves the codes it was trained on and plays narrow, repetitive
   phrases. The strongest of SCALES (shares of it) whose sweep is clean is taken (`is_clean`: the others move at
   most RATIO_GOAL of the own attribute, which rises at every α); a bounded attribute (the step share) saturates,
   and further along only the others keep moving.
2. mix, for a knob that no scale makes clean: each other vector that acts to first order is added in a measured
   amount, its effect on the sweep taken as linear in the amount, and the mix of ADMIXTURE_GRID that makes the
   largest other attribute's move smallest against the own (`choose_mix`) is measured; it is kept when the
   decoder agrees that it is cleaner. On mel_2bar this is what separates `stepwise` from `range`: the decoder
   plays fewer steps as a wider range, and a little of the density vector (more notes: more steps, a wider range)
   cancels that.

About 40,000 greedy decodes of a 2-bar model (half a minute on one core with the int8 graphs the export has just
written — `musicbridge export` decodes with its default variant, the one that plays the knobs). The measured
sweep of each chosen knob is recorded in model.json (`attributes.calibration`). docs/latent.md has why fewer
windows are not enough (the range of a phrase jumps by octaves: means over 128 windows chose different knobs
from run to run) and the measurements.

Refitting the vectors of a model exported before (the graphs stay as they are):

    python -m musicbridge.export.attributes runs/mel_2bar/best.pt exported/mel_2bar --data data/mel_2bar
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch

from musicbridge.attributes import (
    ATTRIBUTE_VECTORS,
    ATTRIBUTES,
    ATTRIBUTES_FILE,
    CALIBRATED,
    DEFAULT_METHOD,
    METHODS,
    REGRESSION,
    AttributeVectors,
    attribute_values,
    fit_vectors,
    mean_values,
)
from musicbridge.export.exporter import add_file, write_metadata
from musicbridge.export.prior import BATCH_SIZE, choose_windows, posteriors
from musicbridge.training.evaluate import ATTRIBUTE_ALPHAS

DEFAULT_WINDOWS = 20_000  # windows encoded for the fit (a few seconds of a 2-bar encoder per thousand on a CPU)
ATTRIBUTES_SEED = 1  # the seeded choice of windows (another than the prior's: the two fits are independent)
SOURCE = "μ of training windows against their musicbridge.music_stats attributes"
CALIBRATED_SOURCE = SOURCE + ", scaled and mixed by the decoder's measured sweeps"
REPRESENTATIONS = ("melody",)  # what the attributes are defined for
# calibrated (the module docstring says how they are used):
CALIBRATION_WINDOWS = 384  # of the fit's windows, decoded along every line (the same ones for all lines)
TARGET_EFFECT = 1.0  # wanted: α = 1 moves the decoded attribute by this many standard deviations
TRAVEL = 2.0  # the most posterior standard deviations (Mahalanobis) one unit of α may move the code
SCALES = (1.0, 0.75, 0.5)  # shares of the largest scale tried, strongest first (their α share decoded points)
RATIO_GOAL = 0.75  # clean: the largest other attribute's move over α at most this share of the own one's
MONOTONIC_MARGIN = 0.5  # clean: the own attribute's smallest step along α at least this share of an even rise's
ADMIXTURE_EFFECT = 0.25  # each other vector is measured in the amount that moves its own attribute this far per α
ADMIXTURE_GRID = tuple(np.linspace(-1.0, 1.0, 9))  # the amounts of a mix tried, in units of the measured one
ADMIXTURE_PRICE = 0.25  # added to a mix's score per measured unit it uses: noise must not buy a mix
MIX_KEEPS = 0.75  # a mix must leave the knob at least this share of its own move over α
SHIFT_ALPHAS = (-2.0, -1.0, 0.0, 1.0, 2.0)  # where an admixture's effect is decoded (between: interpolated)


class GreedyDecoder:
    """Codes (N, Z) → greedy tokens (N, T), batch by batch, by the torch model or an exported model's runtime;
    `name` says which, for the record."""

    def __init__(self, decode, name: str, batch_size: int = BATCH_SIZE):
        self._decode, self.name, self.batch_size = decode, name, batch_size

    @classmethod
    def torch(cls, model, batch_size: int = BATCH_SIZE) -> GreedyDecoder:
        device = next(model.parameters()).device

        @torch.no_grad()
        def decode(codes: np.ndarray) -> np.ndarray:
            return model.decode(torch.as_tensor(codes, device=device), temperature=0.0).cpu().numpy()

        return cls(decode, "torch", batch_size)

    @classmethod
    def runtime(cls, runtime, batch_size: int = BATCH_SIZE) -> GreedyDecoder:
        """musicbridge.runtime's model (onnxruntime), the variant it was loaded with."""
        return cls(lambda codes: runtime.sample(codes, temperature=0.0), f"onnxruntime ({runtime.variant})",
                   batch_size)

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.float32)
        return np.concatenate([self._decode(codes[start:start + self.batch_size])
                               for start in range(0, len(codes), self.batch_size)])


def fit_attributes(model, train: np.ndarray, steps_per_bar: int, windows: int = DEFAULT_WINDOWS,
                   method: str = DEFAULT_METHOD, seed: int = ATTRIBUTES_SEED, batch_size: int = BATCH_SIZE,
                   decoder: GreedyDecoder | None = None) -> tuple[AttributeVectors, dict]:
    """The attribute vectors of `model` from its training windows `train` (N, T) (an array or a memory map): μ of
    `windows` of them chosen with `seed`, fitted by `method`; and the model.json entry that describes them.
    `calibrated` decodes with `decoder` (default: the torch model's)."""
    if method not in METHODS:
        raise ValueError(f"unknown attribute method {method!r}; choose one of {', '.join(METHODS)}")
    if windows < 1 or len(train) < 1:
        raise ValueError(f"attribute vectors need at least one training window (asked for {windows} of {len(train)})")
    index = choose_windows(len(train), windows, seed)
    tokens = np.asarray(train[index], dtype=np.int64)
    mu, _ = posteriors(model.eval(), tokens, batch_size)
    values = attribute_values(tokens, steps_per_bar)  # (N, K)
    vectors, low, high = fit_vectors(mu, values, REGRESSION if method == CALIBRATED else method)
    entry = {"kind": ATTRIBUTE_VECTORS, "file": ATTRIBUTES_FILE, "method": method, "windows": int(len(index)),
             "seed": seed, "source": SOURCE}
    if method == CALIBRATED:
        decoder = decoder or GreedyDecoder.torch(model, batch_size)
        vectors, entry["calibration"] = calibrate(decoder, mu, values, vectors, steps_per_bar, seed)
        entry["source"] = CALIBRATED_SOURCE
    return AttributeVectors(tuple(ATTRIBUTES), vectors, low, high), entry


def calibrate(decoder: GreedyDecoder, mu: np.ndarray, values: np.ndarray, vectors: np.ndarray, steps_per_bar: int,
              seed: int = ATTRIBUTES_SEED, windows: int = CALIBRATION_WINDOWS) -> tuple[np.ndarray, dict]:
    """The knobs' vectors (K, Z) from the regression's `vectors` (K, Z), scaled and mixed by what `decoder` makes
    of them (the module docstring), measured on `windows` of the fit's codes `mu` (N, Z) chosen with `seed`;
    attributes in standard deviations of the fit's `values` (N, K). Returns them and the record of what was
    measured (model.json `attributes.calibration`). A ValueError with the fix when the decoder gives nothing to
    calibrate on."""
    vectors = np.asarray(vectors, dtype=np.float64)
    names = tuple(ATTRIBUTES)
    spread = np.nanstd(values, axis=0)  # (K,)
    if not np.all(spread > 0):
        raise ValueError("an attribute takes one value in every training window, so no knob can be calibrated on "
                         "it; export with --attribute-method regression")
    sweeps = _Sweeps(decoder, mu[choose_windows(len(mu), windows, seed)], spread, steps_per_bar)
    ends = np.stack([(sweeps.means(v), sweeps.means(-v)) for v in vectors])  # (K, 2, K): α = ±1 per vector
    effects = (ends[:, 0] - ends[:, 1]) / 2  # (K, K) row i: what grows with α along vector i
    bends = ends.mean(axis=1) - sweeps.at_rest  # (K, K) row i: what moves the same way at α = +1 and −1
    own = np.nan_to_num(np.diag(effects))  # (K,) 0 where α = ±1 leaves the attribute (undefined or) where it was
    # A mix is modelled as linear in its amount: only vectors that act to first order on the other attributes
    # qualify (the register's vector narrows the range both ways, so it cannot cancel a knob's range move).
    others_of = ~np.eye(len(names), dtype=bool)
    linear = [bool(np.abs(np.nan_to_num(effects[i][others_of[i]])).max()
                   >= np.abs(np.nan_to_num(bends[i][others_of[i]])).max()) for i in range(len(names))]
    precision = np.linalg.pinv(np.atleast_2d(np.cov(mu, rowvar=False)))
    travel = np.sqrt(np.einsum("kz,zy,ky->k", vectors, precision, vectors))  # (K,) posterior stds per unit α
    # A vector that does not move its attribute at α = ±1 goes as far as TRAVEL allows, the way the regression
    # points (and where it has no length at all, it stays as it is).
    largest = np.where(own < 0, -1.0, 1.0) * _at_most(TARGET_EFFECT, np.abs(own), TRAVEL, travel)  # (K,)
    amount = _at_most(ADMIXTURE_EFFECT, np.abs(own), TRAVEL / 2, travel)  # (K,) each vector's measured mix
    knobs, record = np.empty_like(vectors), {}
    for k, name in enumerate(names):
        pure = {share: sweeps.along(vectors[k], largest[k] * share) for share in SCALES}  # share → (A, K)
        clean = [share for share in SCALES if is_clean(pure[share], k)]
        share = clean[0] if clean else min(SCALES, key=lambda share: score(pure[share], k))
        line, mix, sweep = largest[k] * share * vectors[k], np.zeros(len(names)), pure[share]
        others = [i for i in range(len(names)) if i != k and linear[i]]
        if others and not clean:
            mixed, measured = _mix(sweeps, line, vectors, sweep, k, others, amount)
            if score(measured, k) < score(sweep, k):  # kept only when the decoder agrees that it is cleaner
                mix, sweep = mixed, measured
        knobs[k] = line + mix @ vectors
        ratio, margin = judge(sweep, k)
        record[name] = {"scale": _round(largest[k] * share),
                        "mixed_in": {names[i]: _round(m) for i, m in enumerate(mix) if m},
                        "means": _round(sweep[:, k] * spread[k]),  # the own attribute at each α, in its unit
                        "max_relative_range": _round(ratio), "monotonic": bool(margin > 0)}
    return knobs, {"decoder": decoder.name, "windows": int(len(sweeps.codes)), "alphas": list(ATTRIBUTE_ALPHAS),
                   "decodes": sweeps.decodes, "knobs": record}


def _at_most(effect: float, per_unit: np.ndarray, travel: float, travel_per_unit: np.ndarray) -> np.ndarray:
    """(K,) the amount of each vector that moves its attribute by `effect` (given its effect `per_unit`) but the
    code by at most `travel` (given its `travel_per_unit`); 1 for a vector with neither."""
    with np.errstate(divide="ignore"):
        amount = np.minimum(effect / per_unit, travel / travel_per_unit)
    return np.where(np.isfinite(amount), amount, 1.0)


def judge(sweep: np.ndarray, own: int) -> tuple[float, float]:
    """(the largest other attribute's range over α / the own one's, the own one's smallest step along α / its range
    per step) of a sweep (A, K) in standard deviations — what `evaluate --attributes` reports as
    max_relative_range and, where the second is > 0, monotonic (1: it rises evenly). A sweep whose own attribute is
    undefined somewhere or does not move is (inf, −inf)."""
    if not np.all(np.isfinite(sweep[:, own])):
        return np.inf, -np.inf
    moved = np.array([np.ptp(column[np.isfinite(column)]) if np.isfinite(column).any() else 0.0
                      for column in sweep.T])  # (K,)
    if not moved[own] > 0:
        return np.inf, -np.inf
    steps = np.diff(sweep[:, own])
    return float(np.delete(moved, own).max() / moved[own]), float(steps.min() / (moved[own] / len(steps)))


def is_clean(sweep: np.ndarray, own: int) -> bool:
    """Whether a sweep (A, K) makes a clean knob: the other attributes move at most RATIO_GOAL of the own one,
    which rises at every α step by at least MONOTONIC_MARGIN of an even rise's step."""
    ratio, margin = judge(sweep, own)
    return ratio <= RATIO_GOAL and margin >= MONOTONIC_MARGIN


def score(sweep: np.ndarray, own: int) -> float:
    """How far a sweep (A, K) is from a clean knob (lower is better): the largest other / own ratio, plus the
    shortfall of the own attribute's smallest step below MONOTONIC_MARGIN of an even rise's; inf where it falls."""
    ratio, margin = judge(sweep, own)
    return ratio + max(0.0, MONOTONIC_MARGIN - margin) if margin > 0 else np.inf


def choose_mix(sweep: np.ndarray, shifts: np.ndarray, own: int) -> np.ndarray:
    """(M,) how much of each measured admixture to add to a knob whose sweep is `sweep` (A, K), given `shifts`
    (M, A, K), the change of the sweep one measured amount of each makes: the mix of ADMIXTURE_GRID with the lowest
    predicted `score` plus ADMIXTURE_PRICE per amount used, among those that keep MIX_KEEPS of the knob's own move.
    Zeros when no mix beats none."""
    strength = np.ptp(sweep[:, own])
    best, chosen = score(sweep, own), np.zeros(len(shifts))
    for mix in itertools.product(ADMIXTURE_GRID, repeat=len(shifts)):
        mix = np.array(mix)
        predicted = sweep + np.tensordot(mix, shifts, axes=1)  # (A, K)
        if np.ptp(predicted[:, own]) < MIX_KEEPS * strength:
            continue  # a mix that cancels the knob itself is not a cleaner knob
        priced = score(predicted, own) + ADMIXTURE_PRICE * np.abs(mix).sum()
        if priced < best:
            best, chosen = priced, mix
    return chosen


def _mix(sweeps: _Sweeps, line: np.ndarray, vectors: np.ndarray, sweep: np.ndarray, own: int, others: list[int],
         amount: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The knob `line` (Z,), whose sweep is `sweep` (A, K), mixed with `others` of `vectors` (K, Z): each decoded
    in its `amount`, the mix chosen on those measurements (choose_mix), then decoded itself: (mix (K,), sweep)."""
    shifts = np.stack([sweeps.along(line + amount[i] * vectors[i], at=SHIFT_ALPHAS) - sweep for i in others])
    mix = np.zeros(len(vectors))
    mix[others] = choose_mix(sweep, shifts, own) * amount[others]
    return mix, (sweeps.along(line + mix @ vectors) if np.any(mix) else sweep)


class _Sweeps:
    """The mean decoded attributes (K,), in standard deviations, of fixed calibration codes moved along lines."""

    def __init__(self, decoder: GreedyDecoder, codes: np.ndarray, spread: np.ndarray, steps_per_bar: int):
        self.decoder, self.codes, self.spread, self.steps_per_bar = decoder, np.asarray(codes), spread, steps_per_bar
        self.decodes = 0  # phrases decoded, for the record
        self._measured: dict[tuple[bytes, float], np.ndarray] = {}  # (vector, α·scale) → means: scales share points
        self.at_rest = self.means(np.zeros(self.codes.shape[1]))  # (K,) α = 0: the codes themselves

    def means(self, offset: np.ndarray) -> np.ndarray:
        """(K,) the mean attributes of the codes + `offset` (Z,), decoded, in standard deviations."""
        tokens = self.decoder(self.codes + offset)  # (N, T)
        self.decodes += len(tokens)
        with np.errstate(invalid="ignore"):
            return mean_values(attribute_values(tokens, self.steps_per_bar)) / self.spread

    def along(self, vector: np.ndarray, scale: float = 1.0, at=ATTRIBUTE_ALPHAS) -> np.ndarray:
        """(A, K): the mean attributes at each α of ATTRIBUTE_ALPHAS along `scale` · `vector` (Z,), decoded at the
        α in `at` and interpolated in α between them; a point another scale of the vector decoded is not decoded
        again."""
        rows = []
        for alpha in at:
            step = round(float(alpha * scale), 9)
            if step == 0:
                rows.append(self.at_rest)
                continue
            key = (vector.tobytes(), step)
            if key not in self._measured:
                self._measured[key] = self.means(step * vector)
            rows.append(self._measured[key])
        measured = np.stack(rows)  # (len(at), K)
        return np.stack([np.interp(ATTRIBUTE_ALPHAS, at, column) for column in measured.T], axis=1)


def _round(value):
    """JSON-friendly floats for the record, 4 decimals; None for a value that is not finite."""
    rounded = np.round(np.asarray(value, dtype=np.float64), 4)
    return np.where(np.isfinite(rounded), rounded, None).tolist()


def unclean_knobs(calibration: dict) -> list[str]:
    """The knobs a calibration record says did not come out clean on its windows: '<knob> (<why>)'."""
    unclean = []
    for name, knob in calibration["knobs"].items():
        ratio = knob["max_relative_range"]
        if not knob["monotonic"]:
            unclean.append(f"{name} (does not rise at every α)")
        elif ratio is None or ratio >= 1:
            unclean.append(f"{name} (moves another attribute as far as its own)")
    return unclean


def add_attributes(out: Path, metadata: dict, vectors: AttributeVectors, entry: dict) -> None:
    """Write attributes.npz into the model directory `out` and list it (entry, sha256) in `metadata`; the caller
    writes model.json. The stored file is read back first, so an export never ships vectors its runtime refuses."""
    data = vectors.to_bytes()
    AttributeVectors.from_bytes(data, entry["kind"], vectors.z_size)  # a ValueError when storing broke them
    add_file(Path(out), metadata, entry["file"], data)
    metadata["attributes"] = entry


def refit(checkpoint: Path, model_dir: Path, data: Path, method: str = DEFAULT_METHOD,
          windows: int = DEFAULT_WINDOWS) -> dict:
    """Fit the attribute vectors of the exported model `model_dir` again (its graphs untouched) from the checkpoint
    it was exported from and the dataset it was trained on; attributes.npz and model.json are rewritten. Returns
    the new model.json entry. A ValueError says why the three do not belong together."""
    from musicbridge.data import load_dataset
    from musicbridge.runtime import load_model
    from musicbridge.training.checkpoint import load_trained_model

    metadata = json.loads((model_dir / "model.json").read_text())
    model, ckpt = load_trained_model(checkpoint)
    dataset = load_dataset(data)
    for what, exported, given in (("step", metadata.get("checkpoint_step"), ckpt.get("step")),
                                  ("dataset hash", metadata.get("dataset_hash"), ckpt.get("dataset_hash")),
                                  ("dataset hash", metadata.get("dataset_hash"), dataset.hash)):
        if exported != given:
            raise ValueError(f"{model_dir} was exported with {what} {exported}, not {given} ({checkpoint}, {data}); "
                             f"give the checkpoint and dataset it was exported from")
    decoder = GreedyDecoder.runtime(load_model(model_dir, threads=0, warmup=False))
    vectors, entry = fit_attributes(model, dataset.split("train"), dataset.codec.steps_per_bar, windows, method,
                                    decoder=decoder)
    add_attributes(model_dir, metadata, vectors, entry)
    write_metadata(model_dir, metadata)
    load_model(model_dir, warmup=False)  # refuses a broken result
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description="Fit the attribute vectors of an exported model again.")
    parser.add_argument("checkpoint", type=Path, help="the checkpoint the model was exported from")
    parser.add_argument("model_dir", type=Path, help="the exported model directory (its graphs stay)")
    parser.add_argument("--data", type=Path, required=True, help="the dataset the checkpoint was trained on")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS)
    parser.add_argument("--windows", type=int, default=DEFAULT_WINDOWS)
    args = parser.parse_args()
    try:
        entry = refit(args.checkpoint, args.model_dir, args.data, args.method, args.windows)
    except (ValueError, OSError) as error:  # a mismatch, a damaged file, a missing folder: one sentence
        raise SystemExit(f"error: {error}") from None
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
