"""The vector-space autoencoder (vsae), Musicformer's proposal for a latent that stays valid under addition and
scaling: a decoder trained as the generator of a GAN over z ~ N(0, I), an encoder trained to recover z from what
the decoder made (MSE) — a low-dimensional GAN with an auxiliary network that predicts the input noise from the
output — so every z, and sums and scalings of them, should decode to music that encodes back to that z.

Composition (Magenta style): the encoder and decoder are a flat MusicVAE's (models/musicvae.py Encoder and
LSTMDecoder, the same weight names), so the sampling API, the exported graphs (export/musicvae.py) and the
runtime are MusicVAE's unchanged; the vsae adds a discriminator, used in training only. What differs is the
objective (training/objectives.py VSAEObjective), per step:
- z ~ N(0, I) for the batch, a share `closure_share` of it replaced by sums (z₁ + z₂) and scalings (0.5·z₁,
  1.5·z₁) of such draws — the very operations the latent exists for, so the decoder and encoder are trained
  on them rather than hoped to extrapolate;
- the decoder runs free from z, each step's token drawn by STRAIGHT-THROUGH Gumbel-softmax: forward, the hard
  one-hot of argmax(logits + g) — exactly what the exported sampler plays at temperature 1 (argmax(l + 1·g)) —
  backward, the gradient of softmax((logits + g) / τ). Hard rather than soft outputs because a discriminator
  told soft vectors from real one-hot rows by their entropy alone (it would win without judging music), and the
  decoder feeds its own sample back as the next input, as it does when it plays;
- the discriminator (1-D convolutions over the one-hot steps) scores real phrases against decoded ones with the
  hinge loss; every weight of it under spectral norm, which bounds its Lipschitz constant so its scores cannot
  blow up and its gradients to the decoder stay informative (SN-GAN, Miyato et al. 2018) — at no double backward
  through anything, which a gradient penalty would need; it learns faster than the decoder (two time-scale
  update rule, Heusel et al. 2017: its learning rate × disc_lr_scale), the cheap remedy for a discriminator that
  lags;
- encoder: μ(decoded) regresses z (MSE); σ learns the size of that error (a Gaussian NLL on a detached μ), so the
  runtime's σ (novelty in continue_) means "how far the encoder usually misses";
- decoder: fool the discriminator, make z recoverable (the same MSE, through the relaxed sample: mapping two z to
  one phrase costs MSE, the mode collapse both seed models ended in is what it fights), and — the one term the
  seed recipe did not have — reconstruct real phrases from μ (teacher-forced cross-entropy, `recon_weight`),
  which anchors the decoder's modes to the data and trains the encoder on real phrases, which it must read at
  run time (recon_weight = 0 is the seed recipe).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from musicbridge.models.config import ArchitectureConfig, require_positive
from musicbridge.models.musicvae import MusicVAE, MusicVAEConfig

CLOSURE_OPERATIONS = ("sum", "half", "one_and_half")  # z₁ + z₂, 0.5·z₁, 1.5·z₁ (closure_latents)
LEAKY_SLOPE = 0.2  # the discriminator's LeakyReLU (DCGAN's)


@dataclass
class VSAEConfig(ArchitectureConfig):
    """A vsae's sizes and the weights of its objective (the shared fields are ArchitectureConfig's). The encoder
    and decoder sizes default to mel_2bar's, so a trained mel_2bar can start one (--set init_from=…/best.pt)."""

    architecture: ClassVar[str] = "vsae"

    embed_size: int = 64  # token embedding of the encoder and decoder
    enc_size: int = 256  # LSTM units per direction of the bidirectional encoder
    enc_layers: int = 1  # encoder LSTM layers
    dec_size: int = 256  # decoder LSTM units
    dec_layers: int = 2  # decoder LSTM layers
    disc_size: int = 128  # channels of the discriminator's convolutions
    disc_layers: int = 3  # its strided convolutions, each halving the steps (2^disc_layers ≤ steps)
    # The objective (training/objectives.py VSAEObjective; the module docstring says why each term is there).
    gumbel_tau: float = 1.0  # temperature of the relaxed sample's gradient (its forward is the hard one-hot)
    adversarial_weight: float = 1.0  # the decoder's hinge loss against the discriminator
    latent_weight: float = 1.0  # MSE of μ(decode(z)) against z, per dimension (encoder and decoder)
    recon_weight: float = 1.0  # cross-entropy per step of real phrases decoded from μ (0: the seed recipe)
    disc_lr_scale: float = 2.0  # the discriminator's learning rate over the autoencoder's (two time-scales)
    closure_share: float = 0.25  # share of each batch's z made by sums and scalings of prior draws

    def validate(self) -> None:
        super().validate()
        require_positive(self, "embed_size", "enc_size", "enc_layers", "dec_size", "dec_layers", "disc_size",
                         "disc_layers")
        if 2 ** self.disc_layers > self.steps:
            raise ValueError(f"disc_layers {self.disc_layers} would halve the {self.steps} steps below one; use at "
                             f"most {int(math.log2(self.steps))} (--set disc_layers=N)")
        for name in ("gumbel_tau", "disc_lr_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0, got {getattr(self, name)}; set it with --set {name}=X")
        for name in ("adversarial_weight", "latent_weight", "recon_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}; set it with --set {name}=X")
        if not 0.0 <= self.closure_share <= 1.0:
            raise ValueError(f"closure_share must lie in [0, 1], got {self.closure_share}; set it with "
                             f"--set closure_share=0.25")

    def autoencoder(self) -> MusicVAEConfig:
        """The flat MusicVAE whose encoder and decoder this vsae has (and whose graphs it exports as)."""
        return MusicVAEConfig(representation=self.representation, vocab_size=self.vocab_size,
                              steps_per_bar=self.steps_per_bar, bars=self.bars, z_size=self.z_size,
                              embed_size=self.embed_size, enc_size=self.enc_size, enc_layers=self.enc_layers,
                              dec_size=self.dec_size, dec_layers=self.dec_layers)


class Discriminator(nn.Module):
    """One-hot phrases (B, T, V) → a realness score (B,): an embedding (a linear map of the one-hot rows), a
    learned table of the step's position (the downbeat matters), `disc_layers` convolutions (kernel 4, stride 2,
    LeakyReLU) that halve the steps, the mean over what is left, a linear score. Spectral norm on every weight."""

    def __init__(self, config: VSAEConfig):
        super().__init__()
        size = config.disc_size
        self.embed = spectral_norm(nn.Linear(config.vocab_size, size, bias=False))
        self.positions = nn.Parameter(torch.zeros(config.steps, size))
        self.convs = nn.ModuleList(spectral_norm(nn.Conv1d(size, size, kernel_size=4, stride=2, padding=1))
                                   for _ in range(config.disc_layers))
        self.score = spectral_norm(nn.Linear(size, 1))

    def forward(self, one_hot: torch.Tensor) -> torch.Tensor:
        x = (self.embed(one_hot) + self.positions).transpose(1, 2)  # (B, C, T)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)  # (B, C, T / 2^i)
        return self.score(x.mean(dim=2))[:, 0]  # (B,)


class VSAE(MusicVAE):
    """A flat MusicVAE (encoder, decoder, the sampling API and everything exported) plus the discriminator."""

    def __init__(self, config: VSAEConfig):
        config.validate()
        super().__init__(config.autoencoder())
        self.config = config
        self.discriminator = Discriminator(config)

    def one_hot(self, tokens: torch.Tensor) -> torch.Tensor:
        """Real phrases (B, T) as the discriminator and a relaxed encoder read them: (B, T, V) float."""
        return F.one_hot(tokens, self.config.vocab_size).float()

    def generate(self, z: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder run free from z (B, Z): tokens (B, T) and their straight-through relaxed one-hot rows
        (B, T, V) — forward exactly one_hot(tokens), backward the gradient of softmax((logits + g) / τ), g the
        Gumbel noise that drew the token (drawn from `generator`)."""
        decoder, tau = self.decoder, self.config.gumbel_tau
        token_gates, cond_gates, layers, state = decoder.prepare(self.conditions(z))
        previous: torch.Tensor = torch.full((z.shape[0],), decoder.start_token, dtype=torch.long, device=z.device)
        tokens, relaxed = [], []
        for _ in range(self.steps):
            logits, state = decoder.step(previous, state, token_gates, cond_gates, layers)  # (B, V)
            uniform = torch.rand(logits.shape, generator=generator, device=logits.device)
            scores = logits - torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))  # logits + Gumbel
            soft = F.softmax(scores / tau, dim=-1)
            token = scores.argmax(dim=-1)  # (B,)
            previous = F.one_hot(token, logits.shape[-1]).float() - soft.detach() + soft  # straight-through
            tokens.append(token)
            relaxed.append(previous)
        return torch.stack(tokens, dim=1), torch.stack(relaxed, dim=1)

    def encode_relaxed(self, one_hot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ, σ (B, Z) of one-hot rows (B, T, V), gradients flowing into them; σ from the encoder's features
        detached, so what σ learns (the size of μ's error) does not pull on the features μ is read from."""
        features = self.encoder.features(one_hot)
        return self.encoder.mu(features), F.softplus(self.encoder.sigma(features.detach()))


def closure_latents(z: torch.Tensor, partner: torch.Tensor, share: float, generator: torch.Generator | None):
    """z (B, Z) with a share of its rows replaced by closure operations (CLOSURE_OPERATIONS, chosen uniformly) of
    those rows and `partner`'s (B, Z), another batch of prior draws: the latents a vsae is trained to decode."""
    chosen = torch.rand(z.shape[0], generator=generator, device=z.device) < share  # (B,)
    operation = torch.randint(0, len(CLOSURE_OPERATIONS), (z.shape[0],), generator=generator, device=z.device)
    made = torch.stack([z + partner, 0.5 * z, 1.5 * z])[operation, torch.arange(z.shape[0], device=z.device)]
    return torch.where(chosen[:, None], made, z)


def vsae_state_from_musicvae(state: dict[str, torch.Tensor], model: VSAE) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A state dict for `model` from a flat MusicVAE's weights of the same sizes (VSAEConfig.autoencoder()): its
    encoder and decoder copied, the discriminator kept as `model` initialised it. Returns (state, fresh names)."""
    own = model.state_dict()
    shared = {key: tuple(tensor.shape) for key, tensor in own.items() if not key.startswith("discriminator.")}
    if {key: tuple(tensor.shape) for key, tensor in state.items()} != shared:
        raise ValueError("these weights are not those of the flat MusicVAE this vsae is made of (encoder and decoder "
                         "sizes, z_size and representation must match: VSAEConfig.autoencoder())")
    fresh = [key for key in own if key not in state]
    return {key: state.get(key, tensor) for key, tensor in own.items()}, fresh
