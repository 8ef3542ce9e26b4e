"""Checkpoint → ONNX: graphs that carry their own metadata, for the torch-free runtime (musicbridge.runtime).

    from musicbridge.export.checkpoint import export_checkpoint
    export_checkpoint("runs/mel_2bar/best.pt", "models/mel_2bar", variants=("fp32", "int8"))

Modules: checkpoint (read a training checkpoint, export it), exporter (write the model directory), musicvae and
transformer (the graphs of each architecture), graph (a small onnx.helper builder), parity (exported vs torch),
ship (copy an export into core/shipped/), testing (tiny models for tests), commands (`musicbridge export`). This
package file imports nothing: the CLI loads `commands` on every start, and torch must not come with it.
"""
