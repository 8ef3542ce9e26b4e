"""Checkpoints: one dict of plain types and tensors, written atomically, read with weights_only=True.

    {"format": 1, "preset": name, "architecture": name, "config": Preset.to_dict(), "representation": {name,
     version, vocab_size, steps_per_bar}, "dataset_hash", "step", "model": state_dict, "optimizer": state_dict,
     "best_val_loss", "elapsed_seconds", "musicbridge_version", "tensors_sha256"}

"config"["model"] names its architecture and holds that architecture's fields (models/architectures.py); the
top-level "architecture" repeats it for readers that want no config. Checkpoints written before the configs were
split (one union of every architecture's fields, no top-level "architecture") load as they did: preset_from_dict
reads both layouts.

There is no RNG state to store: every random draw of step s comes from generators seeded by (seed, s, rank).
"tensors_sha256" covers every tensor of the checkpoint (weights and optimizer state): a flipped byte is an error
at load, not a model that exports with one weight at 7e37. Checkpoints written before it load with a warning.
The weights a model is built from must be finite and below MAX_ABS_WEIGHT (load_trained_model: export and
evaluate), and a config is refused above MAX_PARAMETERS before anything is allocated.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
from pathlib import Path

import torch

import musicbridge
from musicbridge.codecs import UnknownRepresentationError, codec_from_description
from musicbridge.models import MusicVAE, Preset, build_model, preset_from_dict

FORMAT = 1
REQUIRED = ("format", "preset", "config", "representation", "dataset_hash", "step", "model")
CHECKSUM_KEY = "tensors_sha256"
# 100× the largest preset (mel_16bar_hier: 3.7 M) many times over; 500 M parameters are 2 GB of fp32 weights,
# which a laptop would start swapping to allocate for a config that only a typo or a corrupted file produces.
MAX_PARAMETERS = 500_000_000
# Trained weights stay in the single digits (mel_2bar: max |w| = 4.1). 1e4 is 2,500× that and still inside
# fp16's range (65,504) that the fp16 variant must hold; a flipped exponent bit gives 1e19 or more.
MAX_ABS_WEIGHT = 1e4
TEMP_FILE = re.compile(r"^\.(?:last|best)\.pt\.tmp(\d+)$")  # save_checkpoint's temporary name

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A file that is not a usable musicbridge checkpoint."""


def tensors_digest(payload: dict) -> str:
    """sha256 over every tensor in `payload` (nested dicts and lists, keys in sorted order): its path, dtype,
    shape and bytes. CHECKSUM_KEY itself is left out."""
    digest = hashlib.sha256()

    def visit(path: str, value) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{path}|{tensor.dtype}|{tuple(value.shape)}|".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                if path or key != CHECKSUM_KEY:
                    visit(f"{path}/{key}", value[key])
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                visit(f"{path}/{index}", item)

    visit("", payload)
    return digest.hexdigest()


def checkpoint_payload(model: torch.nn.Module, preset: Preset, representation: dict, dataset_hash: str, step: int,
                       **training_state) -> dict:
    """The checkpoint of `model` in this format (the trainer adds its optimizer, best_val_loss and
    elapsed_seconds as training_state; a checkpoint without them exports and evaluates, it cannot resume)."""
    payload = {"format": FORMAT, "preset": preset.name, "architecture": preset.model.architecture,
               "config": preset.to_dict(), "representation": representation, "dataset_hash": dataset_hash, "step": step, "model": model.state_dict(), **training_state,
               "musicbridge_version": musicbridge.__version__}
    payload[CHECKSUM_KEY] = tensors_digest(payload)
    return payload


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
    if CHECKSUM_KEY not in checkpoint:
        log.warning("%s has no checksum of its tensors (written before musicbridge stored one): loaded unverified",
                    path)
    elif tensors_digest(checkpoint) != checkpoint[CHECKSUM_KEY]:
        raise CheckpointError(f"{path} is corrupted: its tensors do not match their checksum; use another "
                              "checkpoint (the run's last.pt or best.pt) or train again")
    try:
        codec_from_description(checkpoint["representation"])
    except UnknownRepresentationError as error:
        raise UnknownRepresentationError(f"cannot use checkpoint {path}: {error}") from error
    return checkpoint


def check_weights(state_dict: dict, path) -> None:
    """CheckpointError naming the first floating-point tensor with a NaN/inf or a weight above MAX_ABS_WEIGHT."""
    for name, tensor in state_dict.items():
        if not tensor.is_floating_point():
            continue
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise CheckpointError(f"{path}: weight {name} holds {bad} NaN/inf value(s) (the training diverged or the "
                                  "file is damaged); use an earlier checkpoint")
        peak = float(tensor.abs().max()) if tensor.numel() else 0.0
        if peak > MAX_ABS_WEIGHT:
            raise CheckpointError(f"{path}: weight {name} reaches {peak:.3g}, beyond any trained weight "
                                  f"(|w| ≤ {MAX_ABS_WEIGHT:g}); the file is damaged — use an earlier checkpoint")


def count_parameters_of(config) -> int:
    """Parameters a model config would have, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        return sum(parameter.numel() for parameter in build_model(config).parameters())


def _load_error(error: Exception) -> str:
    """One line of load_state_dict's report ("size mismatch for x: …"; it lists every tensor otherwise)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    details = lines[1:] or lines
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"{details[0] if details else type(error).__name__}{more}"


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
        parameters = count_parameters_of(preset_from_dict(checkpoint["config"]).model)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: the checkpoint's config is unusable ({_load_error(error)})") from None
    if parameters > MAX_PARAMETERS:
        raise CheckpointError(f"{path}: its config describes a model of {parameters / 1e6:,.0f} M parameters (the "
                              f"limit is {MAX_PARAMETERS / 1e6:,.0f} M); the config is damaged or not a musicbridge "
                              "model's")
    check_weights(checkpoint["model"], path)
    try:
        model, _ = model_from_checkpoint(checkpoint)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # a config or weights that do not fit
        raise CheckpointError(f"{path}: the checkpoint's weights do not fit its config ({_load_error(error)})") from None
    return model.to(device), checkpoint


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (.last.pt.tmp<pid>, .best.pt.tmp<pid>) that save_checkpoint left in
    `directory` when its process was killed mid-write; a file whose process still runs is left alone."""
    removed = []
    for path in Path(directory).glob(".*.pt.tmp*"):
        match = TEMP_FILE.match(path.name)
        if match is None or _process_runs(int(match.group(1))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def checkpoint_task(checkpoint: dict) -> str:
    """What the checkpoint's model was trained for (TrainConfig.task; checkpoints before it: reconstruct)."""
    return checkpoint["config"].get("train", {}).get("task", "reconstruct")
