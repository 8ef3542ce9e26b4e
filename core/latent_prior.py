"""A model's own prior: a density over z fitted at export to where its encoder puts real phrases (torch-free).

A VAE is trained to make q(z | x) close to N(0, I), but the aggregate posterior — the codes of all the training
phrases together — never fills N(0, I): decoding z ~ N(0, I) lands where the decoder was never trained (the
"prior hole"), and the phrases it plays there drift out of key and leap. Ex-post density estimation (Ghosh et
al. 2020, "From variational to deterministic autoencoders") samples from a density of the aggregate posterior
instead. `musicbridge export … --data DATASET` writes one (musicbridge.export.prior) as `prior.npz` beside the
graphs, listed and hashed in model.json; the runtime's `Model.sample_prior` draws from it.

The density is a mixture of diagonal Gaussians: z = means[c] + scales[c] · ε with a component c drawn by
`weights` and ε ~ N(0, I). The export makes each component the posterior q(z | x) = N(μ, σ²) of one training
window (docs/export.md says why that, and not one Gaussian or an EM-fitted mixture).

    prior = FittedPrior.from_bytes(data, kind, z_size)     # validates; ValueError with the reason
    z = prior.draw(n, rng)                                 # (n, Z) float32

The file is an `np.savez` of plain arrays (read with allow_pickle=False): weights (K,), means (K, Z), scales (K, Z).
"""

from __future__ import annotations

import io

import numpy as np

from musicbridge.npz_arrays import read_arrays

PRIOR_FILE = "prior.npz"  # beside the graphs in a model directory
GAUSSIAN_MIXTURE = "gaussian_mixture"  # the kind model.json names; diagonal components
ARRAYS = ("weights", "means", "scales")  # the arrays of prior.npz
STORED_DTYPE = np.float16  # ample for a density's components; halves the file (1 MB for 1,000 components at Z=256)
# sample_prior's choices: the fitted prior when the model has one, else N(0, I) / the fitted one (an error
# without one) / N(0, I) always.
AUTO, FITTED, STANDARD = "auto", "fitted", "standard"
PRIOR_CHOICES = (AUTO, FITTED, STANDARD)
WEIGHT_TOLERANCE = 1e-2  # stored weights must sum to 1 within this (float16 rounding); draws renormalise them


class FittedPrior:
    """A mixture of K diagonal Gaussians over z (Z,): weights (K,), means (K, Z), scales (K, Z), held as float64."""

    kind = GAUSSIAN_MIXTURE

    def __init__(self, weights, means, scales):
        self.weights, self.means, self.scales = (np.asarray(a, dtype=np.float64) for a in (weights, means, scales))
        self._check()
        self.z_size = self.means.shape[1]
        self._p = self.weights / self.weights.sum()  # what the component draw uses

    def __repr__(self) -> str:
        return f"FittedPrior({self.kind}, {len(self.weights)} components, z={self.z_size})"

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n codes (n, Z) float32 drawn with `rng`."""
        component = rng.choice(len(self._p), size=int(n), p=self._p)  # (n,)
        epsilon = rng.standard_normal((int(n), self.z_size))  # (n, Z)
        return (self.means[component] + self.scales[component] * epsilon).astype(np.float32)

    def to_bytes(self) -> bytes:
        """The prior.npz file: its arrays as STORED_DTYPE, nothing else."""
        buffer = io.BytesIO()
        np.savez(buffer, **{name: getattr(self, name).astype(STORED_DTYPE) for name in ARRAYS})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, kind: str | None, z_size: int) -> FittedPrior:
        """Read a prior.npz for a model with codes of `z_size`; a ValueError that says what is wrong with it."""
        if kind != GAUSSIAN_MIXTURE:
            raise ValueError(f"its kind {kind!r} is unknown to this musicbridge (it knows {GAUSSIAN_MIXTURE!r})")
        arrays = read_arrays(data, ARRAYS)
        for name, array in arrays.items():
            if array.dtype.kind != "f":
                raise ValueError(f"its array {name!r} holds {array.dtype}, not floats")
        prior = cls(**arrays)
        if prior.z_size != z_size:
            raise ValueError(f"its codes have {prior.z_size} dimensions and the model's {z_size}")
        return prior

    def _check(self) -> None:
        """Shapes that agree, finite values, a distribution of weights: a ValueError naming what is wrong."""
        if self.weights.ndim != 1 or len(self.weights) < 1:
            raise ValueError(f"its weights have shape {self.weights.shape}, not (components,)")
        if self.means.ndim != 2 or self.means.shape[0] != len(self.weights) or self.means.shape[1] < 1:
            raise ValueError(f"its means have shape {self.means.shape}, not ({len(self.weights)}, z_size)")
        if self.scales.shape != self.means.shape:
            raise ValueError(f"its scales have shape {self.scales.shape}, not the means' {self.means.shape}")
        for name in ARRAYS:
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"its {name} hold NaN or infinite values")
        if np.any(self.weights < 0) or abs(self.weights.sum() - 1.0) > WEIGHT_TOLERANCE:
            raise ValueError(f"its weights are not a distribution (they sum to {self.weights.sum():.4f})")
        if np.any(self.scales < 0):
            raise ValueError("its scales hold negative values")
