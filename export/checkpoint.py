"""Exporting a training checkpoint: read through the training stage's one loader (weights_only=True)."""

from __future__ import annotations

import os

from musicbridge.models.musicvae import decoding_rule_for
from musicbridge.training.checkpoint import checkpoint_task, load_trained_model


def export_checkpoint(checkpoint_path: str | os.PathLike, out_dir: str | os.PathLike, **options) -> dict:
    """Load a training checkpoint (or run directory) and export it; options as for exporter.export_model."""
    from musicbridge.export.exporter import export_model

    model, checkpoint = load_trained_model(checkpoint_path, "cpu")
    return export_model(model, out_dir, preset=checkpoint["preset"], representation=checkpoint["representation"],
                        dataset_hash=checkpoint.get("dataset_hash"), checkpoint_step=checkpoint.get("step"),
                        task=checkpoint_task(checkpoint),
                        **{"rule": decoding_rule_for(model.config, checkpoint_task(checkpoint))} | options)


__all__ = ["checkpoint_task", "export_checkpoint"]
