"""Fit a model's attribute vectors at export: μ of a seeded choice of training windows against their attributes.

    vectors, entry = fit_attributes(model, dataset.split("train"), steps_per_bar)   # AttributeVectors + its entry
    add_attributes(out_dir, metadata, vectors, entry)      # OUT/attributes.npz, listed and hashed in model.json

The windows' μ come from the torch encoder on their own tokens (export/prior.py `posteriors`), their attributes
from musicbridge.music_stats (musicbridge.attributes.ATTRIBUTES); musicbridge.attributes.fit_vectors makes the
vectors (the methods, and the measurements behind the default, in docs/latent.md). Melody models only: the
attributes are statistics of melodies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicbridge.attributes import (
    ATTRIBUTE_VECTORS,
    ATTRIBUTES,
    ATTRIBUTES_FILE,
    DEFAULT_METHOD,
    AttributeVectors,
    attribute_values,
    fit_vectors,
)
from musicbridge.export.exporter import add_file
from musicbridge.export.prior import BATCH_SIZE, choose_windows, posteriors

DEFAULT_WINDOWS = 20_000  # windows encoded for the fit (a few seconds of a 2-bar encoder per thousand on a CPU)
ATTRIBUTES_SEED = 1  # the seeded choice of windows (another than the prior's: the two fits are independent)
SOURCE = "μ of training windows against their musicbridge.music_stats attributes"
REPRESENTATIONS = ("melody",)  # what the attributes are defined for


def fit_attributes(model, train: np.ndarray, steps_per_bar: int, windows: int = DEFAULT_WINDOWS,
                   method: str = DEFAULT_METHOD, seed: int = ATTRIBUTES_SEED,
                   batch_size: int = BATCH_SIZE) -> tuple[AttributeVectors, dict]:
    """The attribute vectors of `model` from its training windows `train` (N, T) (an array or a memory map): μ of
    `windows` of them chosen with `seed`, fitted by `method`; and the model.json entry that describes them."""
    if windows < 1 or len(train) < 1:
        raise ValueError(f"attribute vectors need at least one training window (asked for {windows} of {len(train)})")
    index = choose_windows(len(train), windows, seed)
    tokens = np.asarray(train[index], dtype=np.int64)
    mu, _ = posteriors(model.eval(), tokens, batch_size)
    vectors, low, high = fit_vectors(mu, attribute_values(tokens, steps_per_bar), method)
    fitted = AttributeVectors(tuple(ATTRIBUTES), vectors, low, high)
    entry = {"kind": ATTRIBUTE_VECTORS, "file": ATTRIBUTES_FILE, "method": method, "windows": int(len(index)),
             "seed": seed, "source": SOURCE}
    return fitted, entry


def add_attributes(out: Path, metadata: dict, vectors: AttributeVectors, entry: dict) -> None:
    """Write attributes.npz into the model directory `out` and list it (entry, sha256) in `metadata`; the caller
    writes model.json. The stored file is read back first, so an export never ships vectors its runtime refuses."""
    data = vectors.to_bytes()
    AttributeVectors.from_bytes(data, entry["kind"], vectors.z_size)  # a ValueError when storing broke them
    add_file(Path(out), metadata, entry["file"], data)
    metadata["attributes"] = entry
