"""Tiny models for tests (of this stage and of the bridge): build, save as a checkpoint, export.

    from musicbridge.export.testing import export_tiny
    model_dir = export_tiny(tmp_path / "tiny")            # a melody model, 2 bars, fp32
    model = musicbridge.runtime.load_model(model_dir)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from musicbridge.codecs import get_codec
from musicbridge.models import MusicVAEConfig, Preset, build_model
from musicbridge.training.checkpoint import checkpoint_payload, save_checkpoint

TINY_SIZES = dict(embed_size=8, enc_size=12, enc_layers=2, z_size=6, conductor_size=10, conductor_layers=2,
                  dec_size=16, dec_layers=2)


def tiny_model(representation: str = "melody", hierarchical: bool = False, bars: int = 2, seed: int = 0, **sizes):
    """An untrained MusicVAE with a few thousand weights (eval mode, deterministic for a seed)."""
    codec = get_codec(representation)
    config = MusicVAEConfig(representation=representation, vocab_size=codec.vocab_size,
                            steps_per_bar=codec.steps_per_bar, bars=bars, hierarchical=hierarchical,
                            **(TINY_SIZES | sizes))
    torch.manual_seed(seed)
    return build_model(config).eval()


def save_model_checkpoint(model, path: str | os.PathLike, preset: str = "tiny", dataset_hash: str = "0" * 64,
                          step: int = 0) -> Path:
    """`model` as a checkpoint at `path`, written by the training stage's own writer (no optimizer state: it
    exports and evaluates, it does not resume)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    representation = get_codec(model.config.representation).describe()
    save_checkpoint(path, checkpoint_payload(model, Preset(preset, model.config), representation, dataset_hash, step))
    return path


def export_tiny(out_dir: str | os.PathLike, representation: str = "melody", hierarchical: bool = False,
                bars: int = 2, seed: int = 0, variants=("fp32",), **sizes) -> Path:
    """Build a tiny model and export it to out_dir; returns out_dir (a Path) for musicbridge.runtime.load_model."""
    from musicbridge.export.exporter import export_model

    model = tiny_model(representation, hierarchical, bars, seed, **sizes)
    export_model(model, out_dir, preset="tiny", dataset_hash="0" * 64, variants=variants)
    return Path(out_dir)
