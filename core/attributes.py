"""Latent attribute vectors: directions in z along which a musical attribute of the decoded phrase grows
(MusicVAE's attribute vectors, Roberts et al. 2018, section 5.3), fitted at export and added live (torch-free).

    vectors = AttributeVectors.from_bytes(data, kind, z_size)      # validates; ValueError with the reason
    z = vectors.shift(z, {"density": 1.0, "register": -0.5})       # z + Σ α·v, (B, Z) float32

The attributes (ATTRIBUTES) are per-phrase statistics of musicbridge.music_stats: note density, register (mean
pitch), pitch range and stepwise motion. `fit_vectors` makes one vector per attribute from the encoder's μ of
training windows and the windows' own attributes, by one of METHODS:

- quartiles (MusicVAE's): v = mean μ of the windows in the attribute's top quartile − mean μ of its bottom one.
- regression: the joint least-squares fit μ ≈ c + Σ_k a_k · b_k over every attribute at once; v_k = b_k · gap_k,
  gap_k the difference of attribute k's mean between its top and bottom quartile. b_k is how the code moves per
  unit of attribute k with the other attributes held where they are: the quartile difference without what the
  attributes that go with k contribute (in the data a denser melody also moves by step more often).
- orthogonal: each quartile vector minus its projection on the span of the others.
- calibrated: the regression's vectors, scaled and mixed by what the DECODER does with them
  (musicbridge.export.attributes.calibrate): each knob's sweep over α = −2…+2 is decoded from training windows'
  codes and measured; its scale makes α = ±1 move the decoded attribute by about one standard deviation (or as far
  as a bounded move in z allows), and a little of the other vectors is mixed in where that makes the other
  attributes move less (the decoder couples them: fewer steps come with a wider range).

For the methods fitted to codes alone α = 1 is meant as the move from the bottom quartile's mean of the attribute
to the top quartile's (`low`, `high`, in the attribute's own unit); for `calibrated` as about one standard
deviation of the decoded attribute. docs/latent.md has the measurements behind the default.

The file (ATTRIBUTES_FILE, beside the graphs, listed and hashed in model.json under "attributes") is an
`np.savez` of plain arrays, read with allow_pickle=False: names (K,) str, vectors (K, Z), low (K,), high (K,).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping

import numpy as np

from musicbridge.music_stats import phrase_stats
from musicbridge.npz_arrays import read_arrays

ATTRIBUTES_FILE = "attributes.npz"  # beside the graphs in a model directory
ATTRIBUTE_VECTORS = "attribute_vectors"  # the kind model.json names
ARRAYS = ("names", "vectors", "low", "high")  # the arrays of attributes.npz
# Knob name → (the music_stats statistic it moves, what that is). A phrase without the notes a statistic needs
# (no note-on; fewer than two for step_share) leaves it undefined and out of the fit.
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "density": ("onsets_per_bar", "note-ons per bar"),
    "register": ("mean_pitch", "mean MIDI pitch of the note-ons"),
    "range": ("pitch_range", "semitones from the lowest note-on to the highest"),
    "stepwise": ("step_share", "share of successive note-ons at most 2 semitones apart"),
}
QUARTILES, REGRESSION, ORTHOGONAL, CALIBRATED = "quartiles", "regression", "orthogonal", "calibrated"
CODE_METHODS = (QUARTILES, REGRESSION, ORTHOGONAL)  # fitted to codes alone (fit_vectors)
METHODS = (*CODE_METHODS, CALIBRATED)  # calibrated needs the decoder too (the export's fit_attributes)
DEFAULT_METHOD = CALIBRATED  # measured against the others on mel_2bar: docs/latent.md
QUARTILE = 4  # the top and bottom groups are each a quarter of the windows


def attribute_values(tokens, steps_per_bar: int) -> np.ndarray:
    """(N, K) float64: each phrase's attributes (N phrases of melody tokens (N, T)), in ATTRIBUTES order; NaN where
    a phrase leaves one undefined."""
    stats = phrase_stats(tokens, steps_per_bar)
    return np.stack([stats[statistic] for statistic, _ in ATTRIBUTES.values()], axis=1).astype(np.float64)


def quartile_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the bottom and top quarter (each N // 4) of the finite `values` (N,), ranked by value (ties in
    index order: a stable sort)."""
    defined = np.flatnonzero(np.isfinite(values))
    size = len(defined) // QUARTILE
    if size < 1:
        raise ValueError(f"fitting attribute vectors needs at least {QUARTILE} windows that define each attribute "
                         f"(found {len(defined)}); give the export more training windows")
    ranked = defined[np.argsort(values[defined], kind="stable")]
    return ranked[:size], ranked[-size:]


def mean_values(values) -> np.ndarray:
    """(K,) the mean of each attribute over the phrases (N, K) that define it; NaN for one that none define."""
    values = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(values)
    counts = defined.sum(axis=0)
    return np.where(counts > 0, np.where(defined, values, 0.0).sum(axis=0) / np.maximum(counts, 1), np.nan)


def fit_vectors(mu, values, method: str = REGRESSION) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One vector per attribute from codes μ (N, Z) and the windows' attributes `values` (N, K) (NaN: undefined):
    (vectors (K, Z), low (K,), high (K,)) — low and high the attribute's mean over its bottom and top quartile.
    `method` is one of CODE_METHODS (the module docstring says what each does; `calibrated` starts from
    `regression` here, then musicbridge.export.attributes.calibrate decodes)."""
    if method == CALIBRATED:
        raise ValueError("calibrated attribute vectors need the decoder: fit them with "
                         "musicbridge.export.attributes.fit_attributes (musicbridge export --data)")
    if method not in METHODS:
        raise ValueError(f"unknown attribute method {method!r}; choose one of {', '.join(METHODS)}")
    mu, values = np.asarray(mu, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if mu.ndim != 2 or values.ndim != 2 or len(mu) != len(values):
        raise ValueError(f"expected codes (N, Z) and attributes (N, K) of the same N, got {mu.shape} and {values.shape}")
    if method == REGRESSION:  # the windows that define every attribute, for the joint fit
        complete = np.isfinite(values).all(axis=1)
        mu, values = mu[complete], values[complete]
    groups = [quartile_groups(column) for column in values.T]
    low = np.array([values[bottom, k].mean() for k, (bottom, _) in enumerate(groups)])
    high = np.array([values[top, k].mean() for k, (_, top) in enumerate(groups)])
    quartile = np.stack([mu[top].mean(axis=0) - mu[bottom].mean(axis=0) for bottom, top in groups])  # (K, Z)
    if method == QUARTILES:
        return quartile, low, high
    if method == ORTHOGONAL:
        return _orthogonal(quartile), low, high
    attributes = values - values.mean(axis=0)  # (N, K)
    slopes, *_ = np.linalg.lstsq(attributes, mu - mu.mean(axis=0), rcond=None)  # (K, Z): μ per unit of each
    return slopes * (high - low)[:, None], low, high


def _orthogonal(vectors: np.ndarray) -> np.ndarray:
    """Each row minus its projection on the span of the other rows (K, Z)."""
    out = np.empty_like(vectors)
    for k in range(len(vectors)):
        others = np.delete(vectors, k, axis=0)  # (K - 1, Z)
        if len(others) == 0:
            out[k] = vectors[k]
            continue
        basis, *_ = np.linalg.lstsq(others.T, vectors[k], rcond=None)  # coefficients of the projection
        out[k] = vectors[k] - others.T @ basis
    return out


def parse_attribute(spec: str) -> tuple[str, float]:
    """(name, α) of "NAME=VALUE" (`generate --attribute density=+1.0`); a ValueError that names the fix."""
    name, sep, value = spec.partition("=")
    name = name.strip()
    try:
        alpha = float(value)
    except ValueError:
        alpha = math.nan
    if not sep or not name or not math.isfinite(alpha):
        raise ValueError(f"{spec!r} is not NAME=VALUE with a number (e.g. density=+1.0; attributes: "
                         f"{', '.join(ATTRIBUTES)})")
    return name, alpha


def knobs(attributes: Mapping[str, float] | None, vectors: AttributeVectors | None) -> dict[str, float]:
    """The knobs of `attributes` that move z ({name: α} with α ≠ 0), checked: a ValueError for a name the model's
    vectors (or, without vectors, musicbridge) do not know, an α that is not a finite number, or a moving knob on
    a model without vectors. Knobs at 0 are dropped, so a model without vectors takes them."""
    if not attributes:
        return {}
    if not isinstance(attributes, Mapping):
        raise ValueError(f"attributes must be a mapping of name to α, e.g. {{'density': 1.0}}, not "
                         f"{type(attributes).__name__}")
    known = vectors.names if vectors is not None else tuple(ATTRIBUTES)
    moving = {}
    for name, alpha in attributes.items():
        if name not in known:
            raise ValueError(f"unknown attribute {name!r}; this model knows {', '.join(known)}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) \
                or not math.isfinite(alpha):
            raise ValueError(f"attribute {name}: α must be a finite number, got {alpha!r}")
        if alpha != 0:
            moving[name] = float(alpha)
    if moving and vectors is None:
        raise ValueError("this model has no attribute vectors; export it with --data DATASET to compute them, or "
                         "leave the attributes at 0")
    return moving


class AttributeVectors:
    """K named directions in z (K, Z), with each attribute's bottom- and top-quartile means (K,)."""

    kind = ATTRIBUTE_VECTORS

    def __init__(self, names, vectors, low, high):
        self.names = tuple(str(name) for name in names)
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.low, self.high = (np.asarray(a, dtype=np.float64) for a in (low, high))
        self._check()
        self.z_size = self.vectors.shape[1]

    def __repr__(self) -> str:
        return f"AttributeVectors({', '.join(self.names)}, z={self.z_size})"

    def vector(self, name: str) -> np.ndarray:
        """The direction (Z,) float32 of attribute `name`."""
        return self.vectors[self.names.index(name)]

    def shift(self, z, attributes: Mapping[str, float] | None) -> np.ndarray:
        """z (B, Z) + Σ α·v over `attributes` ({name: α}, checked by `knobs`); z itself, untouched, when every α is 0
        (so a knob at 0 decodes bit for bit what no knob does)."""
        moving = knobs(attributes, self)
        if not moving:
            return z
        offset = sum(np.float32(alpha) * self.vector(name) for name, alpha in moving.items())  # (Z,)
        return (np.asarray(z, dtype=np.float32) + offset).astype(np.float32)

    def to_bytes(self) -> bytes:
        """The attributes.npz file: its arrays, nothing else."""
        buffer = io.BytesIO()
        np.savez(buffer, names=np.array(self.names, dtype=str), vectors=self.vectors,
                 low=self.low.astype(np.float32), high=self.high.astype(np.float32))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, kind: str | None, z_size: int) -> AttributeVectors:
        """Read an attributes.npz for a model with codes of `z_size`; a ValueError that says what is wrong with it."""
        if kind != ATTRIBUTE_VECTORS:
            raise ValueError(f"its kind {kind!r} is unknown to this musicbridge (it knows {ATTRIBUTE_VECTORS!r})")
        arrays = read_arrays(data, ARRAYS)
        if arrays["names"].dtype.kind != "U":
            raise ValueError(f"its names hold {arrays['names'].dtype}, not strings")
        for name in ARRAYS[1:]:
            if arrays[name].dtype.kind != "f":
                raise ValueError(f"its array {name!r} holds {arrays[name].dtype}, not floats")
        vectors = cls(**arrays)
        if vectors.z_size != z_size:
            raise ValueError(f"its vectors have {vectors.z_size} dimensions and the model's codes {z_size}")
        return vectors

    def _check(self) -> None:
        """Shapes that agree, finite values, distinct names: a ValueError naming what is wrong."""
        count = len(self.names)
        if count < 1 or len(set(self.names)) != count or not all(self.names):
            raise ValueError(f"its names {list(self.names)} are not distinct non-empty names")
        if self.vectors.ndim != 2 or self.vectors.shape[0] != count or self.vectors.shape[1] < 1:
            raise ValueError(f"its vectors have shape {self.vectors.shape}, not ({count}, z_size)")
        for name, array in (("vectors", self.vectors), ("low", self.low), ("high", self.high)):
            if array.shape[:1] != (count,):
                raise ValueError(f"its {name} have shape {array.shape}, not ({count}, …)")
            if not np.isfinite(array).all():
                raise ValueError(f"its {name} hold NaN or infinite values")
