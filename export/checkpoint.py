"""Reading a training checkpoint for export, through the training stage's own loader (weights_only=True)."""

from __future__ import annotations

import os

from musicbridge.training.checkpoint import CheckpointError, load_model


def load_checkpoint(path: str | os.PathLike):
    """(model in eval mode on the CPU, checkpoint dict) from a checkpoint file or a run directory (its best.pt,
    else last.pt). Unreadable files raise CheckpointError, unknown representations UnknownRepresentationError."""
    try:
        return load_model(path, "cpu")
    except (KeyError, TypeError, RuntimeError) as error:  # a config or weights that do not fit the model
        raise CheckpointError(f"{path}: the checkpoint's config or weights are unusable ({error})") from None


__all__ = ["CheckpointError", "load_checkpoint"]
