"""The MusicVAE objective: reconstruction cross-entropy summed over steps + β · max(KL − free bits, 0).

Units: the loss is in nats per sequence. `free_bits` is given in bits (as in Magenta's hparams) and converted:
free_nats = free_bits · ln 2. The KL below `free_nats` costs nothing, so the encoder may spend that much
information in z before β pushes back — the guard against posterior collapse. KL is reported in bits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LN2 = math.log(2.0)
SIGMA_FLOOR = 0.01  # code_nll: a source σ below this counts as this (a near-certain dimension, not an infinite weight)


def kl_divergence(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per sequence, in nats: (B,)."""
    log_sigma = torch.log(sigma.clamp_min(1e-8))
    return 0.5 * (mu.square() + sigma.square() - 1.0 - 2.0 * log_sigma).sum(dim=-1)


def reconstruction_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over steps, per sequence, in nats: (B,)."""
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return nll.view(targets.shape).sum(dim=-1)


def kl_cost(mu: torch.Tensor, sigma: torch.Tensor, free_bits: float, groups: int = 1) -> torch.Tensor:
    """max(KL − free bits, 0) per sequence (B,), in nats. groups > 1 splits z into that many equal contiguous
    groups (z_size: per dimension; latent_frames: per frame of a matrix latent), each with free_bits / groups
    of its own, so no group can spend another's budget — every dimension or frame is free to carry a little."""
    log_sigma = torch.log(sigma.clamp_min(1e-8))
    per_dim = 0.5 * (mu.square() + sigma.square() - 1.0 - 2.0 * log_sigma)
    per_group = per_dim.view(mu.shape[0], groups, -1).sum(dim=-1)
    return torch.clamp(per_group - free_bits * LN2 / groups, min=0.0).sum(dim=-1)


def free_bits_groups(per: str, z_size: int, frames: int = 1) -> int:
    """Groups of z for `kl_cost` from TrainConfig.free_bits_per: sequence (1), dimension (z_size), frame."""
    groups = {"sequence": 1, "dimension": z_size, "frame": frames}.get(per)
    if groups is None:
        raise ValueError(f"unknown free_bits_per {per!r}; choose sequence, dimension or frame")
    return groups


def vae_loss(logits, targets, mu, sigma, beta: float, free_bits: float,
             groups: int = 1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The scalar training loss (mean over the batch) and detached per-batch statistics."""
    recon = reconstruction_loss(logits, targets)
    kl = kl_divergence(mu, sigma)
    cost = kl_cost(mu, sigma, free_bits, groups)  # per sequence, as Magenta does (groups = 1)
    loss = (recon + beta * cost).mean()
    with torch.no_grad():
        stats = {
            "loss": loss.detach(),
            "recon": recon.mean(),
            "kl_bits": kl.mean() / LN2,
            "acc": (logits.argmax(dim=-1) == targets).float().mean(),
        }
    return loss, stats


# -- the vsae (models/vsae.py; training/objectives.py VSAEObjective) -------------------------------------------


def hinge_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss (SN-GAN): mean max(0, 1 − D(real)) + mean max(0, 1 + D(fake))."""
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def hinge_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The decoder's side of the hinge loss: −mean D(fake)."""
    return -fake_scores.mean()


def latent_mse(mu: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The vsae's latent regression: mean squared error of μ(decode(z)) against z, per dimension."""
    return F.mse_loss(mu, z)


def gaussian_nll(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """−log N(z; μ, σ²) per dimension, mean over the batch, constant left out: what σ learns from (μ detached by
    the caller, so it measures μ's error without changing it)."""
    log_sigma = torch.log(sigma.clamp_min(1e-4))
    return (log_sigma + 0.5 * ((z - mu) / sigma.clamp_min(1e-4)).square()).mean()


def code_nll(condition: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, scale: float) -> torch.Tensor:
    """How far a hierarchical model's conditions (B, S, C) are from a source model's codes of the same segments,
    μ and σ (B, S, Z), Z ≤ C, read as condition[..., :Z] · scale (models/musicvae.py CONDITION_SCALE): the
    Gaussian negative log-likelihood ½ ((c · scale − μ) / σ)² summed over dimensions and segments, per sequence
    (B,), in nats. Dividing by the source's own σ weighs each dimension by what its decoder tells apart: an error
    within σ is the noise it was trained with; the dimensions it ignores (σ ≈ 1) cost next to nothing."""
    error = (condition[..., : mu.shape[-1]] * scale - mu) / sigma.clamp_min(SIGMA_FLOOR)
    return 0.5 * error.square().flatten(1).sum(dim=-1)
