"""Checkpoints: one dict of plain types and tensors, written atomically, read with weights_only=True.

    {"format": 1, "preset": name, "config": Preset.to_dict(), "representation": {name, version, vocab_size,
     steps_per_bar}, "dataset_hash", "step", "model": state_dict, "optimizer": state_dict, "best_val_loss",
     "elapsed_seconds", "musicbridge_version"}

There is no RNG state to store: every random draw of step s comes from generators seeded by (seed, s, rank).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

import musicbridge
from musicbridge.codecs import UnknownRepresentationError, codec_from_description
from musicbridge.models import MusicVAE, Preset, build_model, preset_from_dict

FORMAT = 1
REQUIRED = ("format", "preset", "config", "representation", "dataset_hash", "step", "model")


class CheckpointError(ValueError):
    """A file that is not a usable musicbridge checkpoint."""


def checkpoint_payload(model: torch.nn.Module, preset: Preset, representation: dict, dataset_hash: str, step: int,
                       **training_state) -> dict:
    """The checkpoint of `model` in this format (the trainer adds its optimizer, best_val_loss and
    elapsed_seconds as training_state; a checkpoint without them exports and evaluates, it cannot resume)."""
    return {"format": FORMAT, "preset": preset.name, "config": preset.to_dict(), "representation": representation,
            "dataset_hash": dataset_hash, "step": step, "model": model.state_dict(), **training_state,
            "musicbridge_version": musicbridge.__version__}


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint dict, after checking its format and that its representation version is known."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable musicbridge checkpoint ({first_line})") from error
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED):
        raise CheckpointError(f"{path} is not a musicbridge checkpoint (missing {', '.join(REQUIRED)})")
    if checkpoint["format"] != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {checkpoint['format']}; this musicbridge reads {FORMAT}")
    try:
        codec_from_description(checkpoint["representation"])
    except UnknownRepresentationError as error:
        raise UnknownRepresentationError(f"cannot use checkpoint {path}: {error}") from error
    return checkpoint


def model_from_checkpoint(checkpoint: dict) -> tuple[MusicVAE, Preset]:
    """The trained model (eval mode, CPU unless the checkpoint was mapped elsewhere) and its preset."""
    preset = preset_from_dict(checkpoint["config"])
    model = build_model(preset.model)
    model.load_state_dict(checkpoint["model"])
    return model.eval(), preset


def load_trained_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[MusicVAE, dict]:
    """Model (eval mode, on `device`) and checkpoint dict from a checkpoint file, or from a run directory (its
    best.pt, else last.pt). Unusable files raise CheckpointError, unknown representations
    UnknownRepresentationError. (An exported model loads with musicbridge.runtime.load_model.)"""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "best.pt", path / "last.pt"]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    checkpoint = load_checkpoint(path, map_location=device)
    try:
        model, _ = model_from_checkpoint(checkpoint)
    except (KeyError, TypeError, RuntimeError) as error:  # a config or weights that do not fit the model
        raise CheckpointError(f"{path}: the checkpoint's config or weights are unusable ({error})") from None
    return model.to(device), checkpoint
