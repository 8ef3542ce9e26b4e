"""Checkpoint → ONNX: graphs that carry their own metadata, for the torch-free runtime (musicbridge.runtime).

    from musicbridge.export import export_checkpoint, export_model
    export_checkpoint("runs/mel_2bar/best.pt", "exports/mel_2bar", variants=("fp32", "int8"))
"""

from musicbridge.export.checkpoint import CheckpointError, load_checkpoint
from musicbridge.export.exporter import DEFAULT_OPSET, VARIANTS, export_model


def export_checkpoint(checkpoint_path, out_dir, **options) -> dict:
    """Load a training checkpoint (weights_only) and export it; options as for export_model."""
    model, checkpoint = load_checkpoint(checkpoint_path)
    return export_model(model, out_dir, preset=checkpoint["preset"], representation=checkpoint["representation"],
                        dataset_hash=checkpoint.get("dataset_hash"), checkpoint_step=checkpoint.get("step"),
                        **options)


__all__ = ["DEFAULT_OPSET", "VARIANTS", "CheckpointError", "export_checkpoint", "export_model", "load_checkpoint"]
