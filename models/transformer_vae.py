"""Transformer VAE: a transformer encoder → q(z|x) → a causal transformer decoder that must use z.

Same step tokens, same sampling API and same training recipe as MusicVAE (models/musicvae.py), so results
compare on the same data and export, evaluation and the bridge take either model:
    mu, sigma = model.encode(tokens)                  # (B, T) int64 → (B, Z), (B, Z)
    tokens = model.decode(z, temperature=0.0, seed=1)  # (B, Z) → (B, T); temperature 0 = greedy

A transformer decoder can model a melody alone and then ignores z (posterior collapse — both seed systems of
this project ended there). What makes it use z:
- z reaches the decoder twice: as memory tokens it cross-attends to, and (z_in_inputs) projected and added to
  every input embedding, so every position sees it without having to look;
- the trainer's token dropout (mask or random tokens in the decoder inputs) weakens the autoregressive path;
- free bits and β warm-up (training/loss.py, schedules.py) let the encoder put information into z first.

Bottleneck (config.latent):
- vector: mean-pooled encoder states → μ, σ of one z (B, Z);
- matrix: a strided 1-D conv stack halves the encoder states down to L = latent_frames frames, each with its own
  μ, σ of Z / L dimensions; z is the frames flattened (B, L·Z/L), so everything downstream still sees (B, Z).
Each latent frame becomes `memory_tokens` memory tokens of the decoder.

Layout for exporters: pre-norm blocks (LayerNorm → attention / feed-forward → residual); attention projections
`q` (d → d) and `kv` (d → 2d, keys then values); GELU (exact, erf) feed-forward; token ids 0..V-1 the
representation's, V the start token, V + 1 the mask token of token dropout (training only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from musicbridge.models.config import ArchitectureConfig, require_positive
from musicbridge.models.musicvae import vae_forward

LATENTS = ("vector", "matrix")
POSITIONS = ("learned", "sinusoidal")


@dataclass
class TransformerVAEConfig(ArchitectureConfig):
    """A Transformer VAE's sizes (the shared fields are ArchitectureConfig's). The layer counts keep the names
    enc_layers / dec_layers that checkpoints, TOML files and --set lines already use; here they count blocks."""

    architecture: ClassVar[str] = "transformer"

    d_model: int = 128  # width of every block
    heads: int = 4  # attention heads (divide d_model)
    ff_size: int = 512  # hidden units of each block's feed-forward
    enc_layers: int = 3  # encoder transformer blocks
    dec_layers: int = 4  # decoder transformer blocks
    dropout: float = 0.1  # on every residual branch, training only
    positions: str = "learned"  # learned | sinusoidal absolute positions (a position-in-bar embedding is added)
    latent: str = "vector"  # vector: one z from pooled states; matrix: latent_frames frames of z_size/frames
    latent_frames: int = 4  # matrix only: a strided conv stack halves the steps down to this many frames
    memory_tokens: int = 4  # cross-attention memory tokens per latent frame
    z_in_inputs: bool = True  # also add a projection of z to every decoder input embedding

    def validate(self) -> None:
        super().validate()
        require_positive(self, "d_model", "heads", "ff_size", "enc_layers", "dec_layers", "memory_tokens")
        check_config(self)


def sinusoidal(steps: int, size: int) -> torch.Tensor:
    """The fixed position table of Vaswani et al. (steps, size)."""
    position = torch.arange(steps, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, size, 2, dtype=torch.float32) * (-math.log(10_000.0) / size))
    table = torch.zeros(steps, size)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : size // 2]
    return table


class Positions(nn.Module):
    """Absolute position (learned or sinusoidal) + a learned position-in-bar embedding: a (T, d) table."""

    def __init__(self, steps: int, steps_per_bar: int, size: int, kind: str):
        super().__init__()
        if kind == "learned":
            self.absolute = nn.Parameter(torch.randn(steps, size) * 0.02)
        else:
            self.register_buffer("absolute", sinusoidal(steps, size), persistent=False)
        self.in_bar = nn.Embedding(steps_per_bar, size)
        self.register_buffer("bar_step", torch.arange(steps) % steps_per_bar, persistent=False)

    def forward(self) -> torch.Tensor:
        return self.absolute + self.in_bar(self.bar_step)


class Attention(nn.Module):
    """Multi-head attention of queries from x over keys/values of a source (itself, or the latent memory)."""

    def __init__(self, size: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(size, size)
        self.kv = nn.Linear(size, 2 * size)
        self.out = nn.Linear(size, size)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, S, d) → (B, h, S, d/h)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.kv(source).chunk(2, dim=-1)
        return self.split_heads(keys), self.split_heads(values)

    def attend(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, causal: bool = False) -> torch.Tensor:
        y = F.scaled_dot_product_attention(self.split_heads(self.q(x)), keys, values, is_causal=causal)
        return self.out(y.transpose(1, 2).flatten(2))

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        return self.attend(x, *self.keys_values(x if source is None else source), causal=causal)


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, optional cross-attention to a memory, feed-forward."""

    def __init__(self, size: int, heads: int, ff_size: int, dropout: float, cross: bool):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(size), Attention(size, heads)
        self.norm2 = nn.LayerNorm(size) if cross else None
        self.cross = Attention(size, heads) if cross else None
        self.norm3 = nn.LayerNorm(size)
        self.ff = nn.Sequential(nn.Linear(size, ff_size), nn.GELU(), nn.Linear(ff_size, size))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), causal=causal))
        if self.cross is not None:
            x = x + self.drop(self.cross(self.norm2(x), memory))
        return x + self.drop(self.ff(self.norm3(x)))

    def step(self, x: torch.Tensor, cache: tuple | None, memory_kv: tuple) -> tuple[torch.Tensor, tuple]:
        """One new position x (B, 1, d) given the keys/values of the earlier ones; returns them extended."""
        h = self.norm1(x)
        keys, values = self.attn.keys_values(h)
        if cache is not None:
            keys, values = torch.cat([cache[0], keys], dim=2), torch.cat([cache[1], values], dim=2)
        x = x + self.attn.attend(h, keys, values)
        x = x + self.cross.attend(self.norm2(x), *memory_kv)
        return x + self.ff(self.norm3(x)), (keys, values)


class TransformerEncoder(nn.Module):
    """Bidirectional transformer over the step tokens → states (B, T, d)."""

    def __init__(self, config: TransformerVAEConfig):
        super().__init__()
        d = config.d_model
        self.embed = nn.Embedding(config.vocab_size, d)
        self.positions = Positions(config.steps, config.steps_per_bar, d, config.positions)
        self.blocks = nn.ModuleList(Block(d, config.heads, config.ff_size, config.dropout, cross=False)
                                    for _ in range(config.enc_layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.positions()
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class VectorLatent(nn.Module):
    """Mean-pooled states → μ, σ = softplus(·) of one z (B, Z)."""

    frames = 1

    def __init__(self, config: TransformerVAEConfig):
        super().__init__()
        self.mu = nn.Linear(config.d_model, config.z_size)
        self.sigma = nn.Linear(config.d_model, config.z_size)

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = states.mean(dim=1)
        return self.mu(pooled), F.softplus(self.sigma(pooled))


class MatrixLatent(nn.Module):
    """Strided convs (kernel 4, stride 2) halve T down to L frames; μ, σ per frame, flattened to (B, L·Z/L)."""

    def __init__(self, config: TransformerVAEConfig):
        super().__init__()
        d, self.frames = config.d_model, config.latent_frames
        halvings = int(math.log2(config.steps // self.frames))
        layers: list[nn.Module] = []
        for i in range(halvings):
            layers += [nn.Conv1d(d, d, kernel_size=4, stride=2, padding=1)] + ([nn.GELU()] if i < halvings - 1 else [])
        self.down = nn.Sequential(*layers)
        self.mu = nn.Linear(d, config.z_size // self.frames)
        self.sigma = nn.Linear(d, config.z_size // self.frames)

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self.down(states.transpose(1, 2)).transpose(1, 2)  # (B, L, d)
        return self.mu(frames).flatten(1), F.softplus(self.sigma(frames)).flatten(1)


class TransformerDecoder(nn.Module):
    """Causal transformer over [start, x_1, …] that cross-attends to z's memory tokens (and sees z in its inputs)."""

    def __init__(self, config: TransformerVAEConfig, frames: int):
        super().__init__()
        d, self.vocab_size, self.frames = config.d_model, config.vocab_size, frames
        self.start_token, self.mask_token = config.vocab_size, config.vocab_size + 1
        self.memory_tokens = frames * config.memory_tokens
        self.embed = nn.Embedding(config.vocab_size + 2, d)
        self.positions = Positions(config.steps, config.steps_per_bar, d, config.positions)
        # z → memory: each frame (the whole z for a vector) → memory_tokens tokens, plus a learned position each.
        self.memory = nn.Linear(config.z_size // frames, config.memory_tokens * d)
        self.memory_positions = nn.Parameter(torch.randn(self.memory_tokens, d) * 0.02)
        self.z_to_inputs = nn.Linear(config.z_size, d) if config.z_in_inputs else None
        self.blocks = nn.ModuleList(Block(d, config.heads, config.ff_size, config.dropout, cross=True)
                                    for _ in range(config.dec_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab_size)

    def condition(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Memory tokens (B, M, d) and the term added to every input embedding (B, 1, d) or None."""
        memory = self.memory(z.view(z.shape[0], self.frames, -1)).view(z.shape[0], self.memory_tokens, -1)
        extra = self.z_to_inputs(z)[:, None] if self.z_to_inputs is not None else None
        return memory + self.memory_positions, extra

    def embed_inputs(self, inputs: torch.Tensor, extra: torch.Tensor | None, offset: int = 0) -> torch.Tensor:
        x = self.embed(inputs) + self.positions()[offset:offset + inputs.shape[1]]
        return x if extra is None else x + extra

    def forward(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, S, V) for inputs (B, S) that start with the start token."""
        memory, extra = self.condition(z)
        x = self.embed_inputs(inputs, extra)
        for block in self.blocks:
            x = block(x, memory, causal=True)
        return self.head(self.norm(x))

    def sample(self, z: torch.Tensor, n_steps: int, temperature: float = 0.0,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens (B, n_steps), one position at a time with cached keys/values: argmax(logits / temperature +
        Gumbel), argmax at temperature 0; or argmax(logits + noise[:, step]) when `noise` (B, n_steps, V) is given
        (the exported sampler's reference)."""
        memory, extra = self.condition(z)
        memory_kv = [block.cross.keys_values(memory) for block in self.blocks]
        caches: list = [None] * len(self.blocks)
        tokens = torch.full((z.shape[0], 1), self.start_token, dtype=torch.long, device=z.device)
        out = []
        for step in range(n_steps):
            x = self.embed_inputs(tokens, extra, offset=step)
            for i, block in enumerate(self.blocks):
                x, caches[i] = block.step(x, caches[i], memory_kv[i])
            logits = self.head(self.norm(x[:, 0]))
            if noise is not None:
                logits = logits + noise[:, step]
            elif temperature > 0:
                uniform = torch.rand(logits.shape, generator=generator, device=logits.device)
                logits = logits / temperature - torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
            tokens = logits.argmax(dim=-1, keepdim=True)
            out.append(tokens)
        return torch.cat(out, dim=1)


class TransformerVAE(nn.Module):
    def __init__(self, config: TransformerVAEConfig):
        super().__init__()
        check_config(config)
        self.config, self.steps, self.z_size = config, config.steps, config.z_size
        self.segment = config.steps  # one flat sequence (the exporters' and runtime's term)
        self.encoder = TransformerEncoder(config)
        self.latent = VectorLatent(config) if config.latent == "vector" else MatrixLatent(config)
        self.latent_frames = self.latent.frames
        self.decoder = TransformerDecoder(config, self.latent_frames)

    # -- the sampling API (as MusicVAE's) ---------------------------------------------------------------------

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ, σ (B, Z) of q(z | tokens (B, T))."""
        if tokens.dim() != 2 or tokens.shape[1] != self.steps:
            raise ValueError(f"expected tokens of shape (batch, {self.steps}), got {tuple(tokens.shape)}")
        return self.latent(self.encoder(tokens))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, temperature: float = 1.0, seed: int | None = None) -> torch.Tensor:
        """Tokens (B, T) decoded from z (B, Z); greedy when temperature == 0, else reproducible for a seed."""
        generator = None
        if seed is not None and temperature > 0:
            generator = torch.Generator(device=z.device).manual_seed(int(seed))
        return self.decoder.sample(z, self.steps, float(temperature), generator)

    # -- training / evaluation --------------------------------------------------------------------------------

    def decoder_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing inputs (B, T): the tokens shifted right by one behind the start token."""
        start = torch.full_like(tokens[:, :1], self.decoder.start_token)
        return torch.cat([start, tokens[:, :-1]], dim=1)

    def teacher_forced_logits(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) given z and decoder inputs (B, T) from `decoder_inputs` (possibly altered)."""
        return self.decoder(z, inputs)

    def forward(self, tokens: torch.Tensor, inputs: torch.Tensor | None = None, eps: torch.Tensor | None = None,
                resample=None, source: torch.Tensor | None = None):
        """One training pass, as MusicVAE.forward: encode (`source` if given), z = μ + σ·eps, (guide pass), logits."""
        return vae_forward(self, tokens, inputs, eps, resample, source)


def check_config(config: TransformerVAEConfig) -> None:
    """Refuse sizes the model cannot be built with, saying which field to change."""
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {config.dropout}; set it with --set dropout=0.1")
    if config.d_model % config.heads or config.d_model % 2:
        raise ValueError(f"d_model {config.d_model} must be even and divisible by heads {config.heads}; change "
                         f"d_model or heads (--set d_model=128 --set heads=4)")
    if config.latent not in LATENTS:
        raise ValueError(f"unknown latent {config.latent!r}; choose one of {', '.join(LATENTS)}")
    if config.positions not in POSITIONS:
        raise ValueError(f"unknown positions {config.positions!r}; choose one of {', '.join(POSITIONS)}")
    if config.latent == "matrix":
        frames, steps = config.latent_frames, config.steps
        ratio = steps // frames if frames > 0 and steps % frames == 0 else 0
        if ratio < 1 or ratio & (ratio - 1):
            fitting = [str(steps >> k) for k in range(5) if steps % (1 << k) == 0]  # steps / 1, 2, 4, 8, 16
            raise ValueError(f"latent_frames {frames} must divide the {steps} steps by a power of two; choose one "
                             f"of {', '.join(fitting)}")
        if config.z_size % frames:
            raise ValueError(f"z_size {config.z_size} must be a multiple of latent_frames {frames}; change z_size "
                             f"or latent_frames")
