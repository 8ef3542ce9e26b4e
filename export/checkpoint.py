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


def export_checkpoint(checkpoint_path: str | os.PathLike, out_dir: str | os.PathLike, **options) -> dict:
    """Load a training checkpoint (or run directory) and export it; options as for exporter.export_model."""
    from musicbridge.export.exporter import export_model

    model, checkpoint = load_checkpoint(checkpoint_path)
    return export_model(model, out_dir, preset=checkpoint["preset"], representation=checkpoint["representation"],
                        dataset_hash=checkpoint.get("dataset_hash"), checkpoint_step=checkpoint.get("step"),
                        task=checkpoint_task(checkpoint), **options)


def checkpoint_task(checkpoint: dict) -> str:
    """What the checkpoint's model was trained for (TrainConfig.task; checkpoints before it: reconstruct)."""
    return checkpoint["config"].get("train", {}).get("task", "reconstruct")


__all__ = ["CheckpointError", "checkpoint_task", "export_checkpoint", "load_checkpoint"]
