"""What the decoder and encoder see during training: transposed melodies, scheduled sampling, token dropout."""

from __future__ import annotations

import torch

from musicbridge.codecs import MelodyCodec

FIRST_NOTE_ON = MelodyCodec.FIRST_NOTE_ON  # melody tokens from here on are note-ons


def transpose_melodies(tokens: torch.Tensor, max_shift: int, last_note_on: int,
                       generator: torch.Generator | None) -> torch.Tensor:
    """Shift each melody's note-ons by a random whole number of semitones in [-max_shift, max_shift].

    Works on tokens directly (note-on id − 2 = pitch − 21); a melody whose shifted notes would leave the
    range stays as it is, so the pitch distribution at the edges is not distorted by clipping.
    """
    if max_shift <= 0:
        return tokens
    shift = torch.randint(-max_shift, max_shift + 1, (tokens.shape[0], 1), generator=generator)
    is_note = tokens >= FIRST_NOTE_ON
    low = torch.where(is_note, tokens, torch.full_like(tokens, last_note_on)).min(dim=1, keepdim=True).values
    high = torch.where(is_note, tokens, torch.full_like(tokens, FIRST_NOTE_ON)).max(dim=1, keepdim=True).values
    fits = (low + shift >= FIRST_NOTE_ON) & (high + shift <= last_note_on)
    return torch.where(is_note & fits, tokens + shift, tokens)


def sample_tokens(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per step from softmax(logits) (Gumbel-max)."""
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(1e-10, 1.0 - 1e-7)
    return (logits - torch.log(-torch.log(uniform))).argmax(dim=-1)


def mix_targets(targets: torch.Tensor, sampled: torch.Tensor, probability: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """Targets with each step replaced by the model's sample with `probability`."""
    mask = torch.rand(targets.shape, generator=generator, device=targets.device) < probability
    return torch.where(mask, sampled, targets)


def token_dropout(inputs: torch.Tensor, rate: float, start_token: int, mask_token: int,
                  generator: torch.Generator | None, vocab_size: int | None = None) -> torch.Tensor:
    """Replace a fraction `rate` of decoder inputs (never the start tokens) by the mask token (word dropout),
    or, given `vocab_size`, by a uniformly random token of the vocabulary (the decoder cannot tell which)."""
    if rate <= 0:
        return inputs
    drop = (torch.rand(inputs.shape, generator=generator, device=inputs.device) < rate) & (inputs != start_token)
    if vocab_size is None:
        replacement = torch.full_like(inputs, mask_token)
    else:
        replacement = torch.randint(0, vocab_size, inputs.shape, generator=generator, device=inputs.device)
    return torch.where(drop, replacement, inputs)
