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


def kl_divergence(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per sequence, in nats: (B,)."""
    log_sigma = torch.log(sigma.clamp_min(1e-8))
    return 0.5 * (mu.square() + sigma.square() - 1.0 - 2.0 * log_sigma).sum(dim=-1)


def reconstruction_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over steps, per sequence, in nats: (B,)."""
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return nll.view(targets.shape).sum(dim=-1)


def vae_loss(logits, targets, mu, sigma, beta: float, free_bits: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The scalar training loss (mean over the batch) and detached per-batch statistics."""
    recon = reconstruction_loss(logits, targets)
    kl = kl_divergence(mu, sigma)
    kl_cost = torch.clamp(kl - free_bits * LN2, min=0.0)  # per sequence, as Magenta does
    loss = (recon + beta * kl_cost).mean()
    with torch.no_grad():
        stats = {
            "loss": loss.detach(),
            "recon": recon.mean(),
            "kl_bits": kl.mean() / LN2,
            "acc": (logits.argmax(dim=-1) == targets).float().mean(),
        }
    return loss, stats
