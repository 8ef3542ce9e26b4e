"""`musicbridge evaluate` on an exported model reproduces the checkpoint's numbers (the torch-free runtime)."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.codecs import get_codec
from musicbridge.data.build import dataset_hash
from musicbridge.export.checkpoint import export_checkpoint
from musicbridge.export.testing import save_model_checkpoint, tiny_model

torch.set_num_threads(1)
METRICS = ("recon_acc_teacher_forced", "recon_acc_sampled", "recon_acc_sampled_onsets",
           "recon_acc_sampled_shuffled_z", "delta_acc", "kl_bits")


def evaluate(*args):
    result = CliRunner().invoke(app, ["evaluate", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("hierarchical", [False, True])
def test_exported_model_reproduces_the_checkpoint(tmp_path, hierarchical):
    model = tiny_model("melody", hierarchical)
    codec = get_codec("melody")
    rng = np.random.default_rng(0)
    # Mostly holds with a few notes: the shape of real melody windows.
    windows = np.where(rng.random((3, 64, model.steps)) < 0.8, 0, rng.integers(1, 90, (3, 64, model.steps)))
    arrays = dict(zip(("train", "valid", "test"), windows.astype(np.uint16), strict=True))
    data = tmp_path / "data"
    data.mkdir()
    for split, array in arrays.items():
        np.save(data / f"{split}.npy", array)
    digest = dataset_hash(codec, arrays)
    (data / "manifest.json").write_text(json.dumps({"format": 1, "representation": codec.describe(), "bars": 2,
                                                    "hop": 1, "steps": model.steps, "hash": digest}))
    checkpoint = save_model_checkpoint(model, tmp_path / "run" / "best.pt", dataset_hash=digest)
    export_checkpoint(checkpoint, tmp_path / "exported", variants=("fp32", "int8"))

    reference = evaluate(checkpoint, "--data", data)
    exported = evaluate(tmp_path / "exported", "--data", data, "--variant", "fp32")
    assert reference["engine"] == "torch" and exported["engine"] == "onnxruntime-fp32"
    assert exported["dataset_hash_matches"] and exported["n_sequences"] == reference["n_sequences"] == 64
    for key in METRICS:
        assert abs(exported[key] - reference[key]) <= 0.005, key  # the 0.5 points
    int8 = evaluate(tmp_path / "exported", "--data", data)  # the default variant of an int8 export
    assert int8["engine"] == "onnxruntime-int8"
    assert set(METRICS) <= set(int8)
    path = evaluate(tmp_path / "exported", "--data", data, "--variant", "fp32", "--interpolation")["interpolation"]
    # The bridge's path starts on A and ends on B themselves; the decoded latent path does not have to.
    assert path["path_hamming_to_a"][0] == 0.0 and path["path_hamming_to_b"][-1] == 0.0
    assert path["path_hamming_to_a"][-1] == path["path_hamming_to_b"][0] > 0
