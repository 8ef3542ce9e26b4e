"""Offline files that lie: corrupted or non-finite checkpoints, configs of absurd size, datasets whose tokens,
dtype, windows or hash are wrong, temp files of a killed run, and a kill between last.pt and best.pt.

All real: checkpoints written by the training stage's own writer, datasets as `data build` lays them out, the
CLI in-process (CliRunner) or in a subprocess where memory is measured.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.codecs import get_codec
from musicbridge.data import load_dataset
from musicbridge.data.build import dataset_hash
from musicbridge.export.exporter import export_model
from musicbridge.export.parity import check_parity, prior_sequences
from musicbridge.export.testing import save_model_checkpoint, tiny_model
from musicbridge.models import PRESETS, Preset, TrainConfig
from musicbridge.training.checkpoint import (
    CHECKSUM_KEY,
    MAX_PARAMETERS,
    CheckpointError,
    checkpoint_payload,
    load_checkpoint,
    load_trained_model,
)
from musicbridge.training.trainer import Trainer, check_dataset

torch.set_num_threads(1)
STEPS = 32  # 2 bars of melody: the tiny model's and mel_2bar's windows


def write_dataset(folder: Path, arrays: dict[str, np.ndarray] | None = None, steps: int = STEPS,
                  digest: str | None = None, seed: int = 0) -> Path:
    """A dataset directory as `data build` writes it (uint16 windows, manifest with the hash)."""
    codec = get_codec("melody")
    if arrays is None:
        rng = np.random.default_rng(seed)
        windows = np.where(rng.random((3, 16, steps)) < 0.8, 0, rng.integers(1, 90, (3, 16, steps)))
        arrays = dict(zip(("train", "valid", "test"), windows.astype(np.uint16), strict=True))
    folder.mkdir(parents=True, exist_ok=True)
    for split, array in arrays.items():
        np.save(folder / f"{split}.npy", array)
    if digest is None:
        digest = dataset_hash(codec, arrays)
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "representation": codec.describe(), "bars": 2,
                                                      "hop": 1, "steps": steps, "hash": digest}))
    return folder


def run_cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def assert_one_line_error(code: int, output: str, *fragments: str) -> None:
    assert code == 1, output
    assert "Traceback" not in output, output
    text = " ".join(output.split())  # the console may wrap a long path
    for fragment in fragments:
        assert fragment in text, output


# ---- checksums -----------------------------------------------------------------------------------------

def test_a_corrupted_weight_fails_the_checksum(tmp_path):
    model = tiny_model("melody")
    path = save_model_checkpoint(model, tmp_path / "best.pt")
    assert len(load_checkpoint(path)[CHECKSUM_KEY]) == 64  # sha256 hex
    weight = model.decoder.head.weight.detach()
    data = path.read_bytes()
    at = data.find(weight.numpy().tobytes()[:64])
    assert at > 0
    corrupted = bytearray(data)
    corrupted[at:at + 4] = np.float32(7e37).tobytes()  # the corrupted weight
    path.write_bytes(bytes(corrupted))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)
    code, output = run_cli("export", path, "--out", tmp_path / "exported")
    assert_one_line_error(code, output, "checksum", "best.pt")


def test_a_checkpoint_without_a_checksum_still_loads_and_says_so(tmp_path, caplog):
    model = tiny_model("melody")
    payload = checkpoint_payload(model, Preset("tiny", model.config), get_codec("melody").describe(), "0" * 64, 0)
    del payload[CHECKSUM_KEY]  # as written before checksums
    path = tmp_path / "old.pt"
    torch.save(payload, path)
    with caplog.at_level(logging.WARNING):
        loaded, _ = load_trained_model(path)
    assert "no checksum" in caplog.text and "old.pt" in caplog.text
    assert torch.equal(loaded.decoder.head.weight, model.decoder.head.weight)


# ---- weights that are not numbers -------------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf"), 7e37], ids=["nan", "inf", "huge"])
def test_export_and_evaluate_refuse_weights_that_are_not_finite_or_absurd(tmp_path, value):
    model = tiny_model("melody")
    with torch.no_grad():
        model.decoder.head.weight[3, 2] = value
    path = save_model_checkpoint(model, tmp_path / "run" / "best.pt")  # a valid checksum: the weights are "right"
    data = write_dataset(tmp_path / "data")
    code, output = run_cli("export", path, "--out", tmp_path / "exported")
    assert_one_line_error(code, output, "decoder.head.weight", "best.pt")
    assert not (tmp_path / "exported" / "model.json").exists()
    code, output = run_cli("evaluate", path, "--data", data)
    assert_one_line_error(code, output, "decoder.head.weight")


def test_parity_cannot_pass_on_nan(tmp_path):
    model = tiny_model("melody")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    export_model(model, tmp_path / "nan", preset="tiny", dataset_hash="0" * 64, variants=("fp32",))
    report = check_parity(model, tmp_path / "nan", prior_sequences(tiny_model("melody"), 8))
    assert not report["passed"]
    assert report["mu_sigma_max_diff"] == float("inf") and report["logits_max_diff"] == float("inf")


# ---- evaluate: shapes and sizes ------------------------------------------------------------------------------

def test_evaluate_turns_a_wrong_tensor_shape_into_one_line(tmp_path):
    model = tiny_model("melody")
    path = save_model_checkpoint(model, tmp_path / "best.pt")
    checkpoint = load_checkpoint(path)
    checkpoint["model"]["decoder.head.weight"] = torch.zeros(7, 3)
    del checkpoint[CHECKSUM_KEY]
    torch.save(checkpoint, path)
    code, output = run_cli("evaluate", path, "--data", write_dataset(tmp_path / "data"))
    assert_one_line_error(code, output, "decoder.head.weight", "shape")
    assert len(output.strip().splitlines()) <= 3, output  # the message, not the whole state_dict report


ABSURD_ENC_SIZE = 4300  # a tiny model but for this: ≈ 590 M parameters, 2.4 GB of fp32 weights


def test_evaluate_refuses_an_absurd_size_before_allocating(tmp_path):
    model = tiny_model("melody")
    config = dataclasses.replace(model.config, enc_size=ABSURD_ENC_SIZE)
    payload = checkpoint_payload(model, Preset("tiny", config), get_codec("melody").describe(), "0" * 64, 0)
    path = tmp_path / "absurd.pt"
    torch.save(payload, path)
    script = textwrap.dedent("""
        import resource, sys
        from musicbridge.cli import main
        sys.argv = ["musicbridge", "evaluate", sys.argv[1], "--data", sys.argv[2]]
        try:
            main()
        finally:
            print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
    """)
    result = subprocess.run([sys.executable, "-c", script, str(path), str(write_dataset(tmp_path / "data"))],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 1, result.stderr
    assert "parameters" in result.stderr and "Traceback" not in result.stderr, result.stderr
    maxrss_mb = int(result.stderr.split("maxrss_kb")[-1]) / 1024
    assert maxrss_mb < 1500, maxrss_mb  # torch and the CLI alone: ≈ 500 MB; the model would add 2.4 GB
    assert MAX_PARAMETERS < 590e6


# ---- train: the dataset ----------------------------------------------------------------------------------

def _arrays(dtype=np.uint16, steps: int = STEPS, poke: int | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {split: rng.integers(0, 90, (16, steps)).astype(dtype) for split in ("train", "valid", "test")}
    if poke is not None:
        arrays["valid"][5, 7] = poke
    return arrays


def _truncate(folder: Path) -> None:
    npy = folder / "train.npy"
    npy.write_bytes(npy.read_bytes()[:-100])


BAD_DATASETS = {  # name: (arrays, manifest steps, what the message names)
    "token_above_vocabulary": (lambda: _arrays(poke=95), STEPS, ("valid.npy", "95", "90")),
    "negative_token": (lambda: _arrays(np.int32, poke=-1), STEPS, ("valid.npy", "-1")),
    "float_tokens": (lambda: _arrays(np.float32), STEPS, ("train.npy", "float32")),
    "short_windows": (lambda: _arrays(steps=16), STEPS, ("train.npy", "16", "32")),
}


@pytest.mark.parametrize("case", list(BAD_DATASETS))
def test_train_refuses_a_dataset_with_wrong_tokens_or_windows(tmp_path, case):
    make, steps, fragments = BAD_DATASETS[case]
    data = load_dataset(write_dataset(tmp_path / "data", make(), steps=steps))
    with pytest.raises(ValueError) as error:
        check_dataset(PRESETS["mel_2bar"], data)  # what Trainer does first, before any model is built
    for fragment in fragments:
        assert fragment in str(error.value)


def test_train_refuses_a_dataset_whose_hash_does_not_match(tmp_path):
    data = load_dataset(write_dataset(tmp_path / "data", digest="f" * 64))
    with pytest.raises(ValueError, match="manifest.json.*hash|hash.*manifest.json"):
        check_dataset(PRESETS["mel_2bar"], data)


def test_train_says_it_in_one_line(tmp_path):
    data = write_dataset(tmp_path / "data", _arrays(poke=95))
    # (--steps 1: were the dataset let through, the run would stay one step short)
    code, output = run_cli("train", "--preset", "mel_2bar", "--data", data, "--out", tmp_path / "run", "--steps", 1,
                           "--batch-size", 8, "--no-progress")
    assert_one_line_error(code, output, "valid.npy", "95")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_truncated_split_names_its_file(tmp_path):
    data = write_dataset(tmp_path / "data")
    _truncate(data)
    with pytest.raises(ValueError, match="train.npy"):
        load_dataset(data).split("train")


# ---- the run directory -------------------------------------------------------------------------------------

def tiny_preset(**train) -> Preset:
    return Preset("tiny", tiny_model("melody").config, TrainConfig(batch_size=8, eval_sequences=16, **train))


def test_a_run_removes_temp_files_a_killed_run_left(tmp_path):
    data = load_dataset(write_dataset(tmp_path / "data"))
    check_dataset(tiny_preset(), data)  # the dataset itself is fine
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a pid that has just exited
    stale = [run / f".last.pt.tmp{dead}", run / f".best.pt.tmp{dead}"]
    live = run / f".last.pt.tmp{os.getppid()}"  # a process that still runs may still be writing it
    for path in [*stale, live]:
        path.write_bytes(b"\0" * 1000)
    Trainer(tiny_preset(), data, run)
    assert not any(path.exists() for path in stale)
    assert live.exists()


def test_last_is_written_before_best_and_resume_mends_a_kill_between(tmp_path):
    data = load_dataset(write_dataset(tmp_path / "data"))
    run = tmp_path / "run"
    trainer = Trainer(tiny_preset(), data, run)
    trainer._evaluate_and_save()  # the first evaluation is always a new best
    last, best = run / "last.pt", run / "best.pt"
    assert last.stat().st_mtime_ns <= best.stat().st_mtime_ns  # last.pt first, then best.pt
    assert load_checkpoint(best)["best_val_loss"] == load_checkpoint(last)["best_val_loss"]

    # A kill between the two writes of a later evaluation: last.pt (step 40) holds a new best that best.pt
    # (step 20) never got. --resume reads last.pt; best.pt must become that model, not stay the old one.
    trainer.step, trainer.best_val_loss = 20, 5.0
    trainer._save("best.pt")
    with torch.no_grad():
        trainer.model.decoder.head.bias.add_(1.0)
    trainer.step, trainer.best_val_loss = 40, 4.0
    trainer._save("last.pt")
    Trainer(tiny_preset(), data, run, resume=True)
    mended = load_checkpoint(best)
    assert mended["step"] == 40 and mended["best_val_loss"] == 4.0
    assert torch.equal(mended["model"]["decoder.head.bias"], load_checkpoint(last)["model"]["decoder.head.bias"])
