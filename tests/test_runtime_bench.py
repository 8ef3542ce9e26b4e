"""`musicbridge bench --json` on a tiny checkpoint (a smoke test: records and fields, no timing assertions)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from musicbridge import runtime
from musicbridge.benchmarks.bench_runtime import op_flops
from musicbridge.cli import app
from musicbridge.export.testing import save_checkpoint, tiny_model
from musicbridge.models import get_preset

torch.set_num_threads(1)


@pytest.mark.timeout(600)
def test_bench_json_records_for_every_op_batch_and_engine(tmp_path):
    checkpoint = save_checkpoint(tiny_model("melody", hierarchical=True), tmp_path / "tiny" / "best.pt")
    result = CliRunner().invoke(app, ["bench", "--model", str(checkpoint), "--runs", "3", "--batches", "1,2", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    (bound,) = [r for r in records if r["op"] == "matvec"]
    assert bound["gflops"] > 0 and bound["threads"] == 1
    timed = [r for r in records if r["op"] != "matvec"]
    keys = {(r["op"], r["batch"], r["engine"]) for r in timed}
    assert keys == {(op, batch, engine) for op in ("encode", "continue", "interpolate", "sample_prior")
                    for batch in (1, 2) for engine in ("onnxruntime", "onnxruntime-int8", "torch")}
    for r in timed:
        assert r["model"] == "tiny/best" and r["threads"] == 1 and r["n"] == 3
        assert 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["gflop"] > 0 and r["gflops"] > 0
        if r["engine"] != "torch":
            assert r["speedup_vs_torch_p99"] > 0
        if r["batch"] == 2:
            assert r["vs_batch1_p99"] > 0


def test_bench_needs_a_model_until_models_ship(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "SHIPPED_DIR", tmp_path / "shipped")
    result = CliRunner().invoke(app, ["bench", "--runs", "1"])
    assert result.exit_code == 1 and "pass --model" in result.output
    result = CliRunner().invoke(app, ["bench", "--model", str(tmp_path / "nothing"), "--runs", "1"])
    assert result.exit_code == 1 and "no model directory" in result.output


def test_flop_counts_follow_the_model_sizes():
    config = vars(get_preset("mel_2bar", {"dec_size": 512, "enc_size": 256, "embed_size": 64, "z_size": 128,
                                          "enc_layers": 1, "dec_layers": 2}).model)
    h, v, z, e, he = 512, 90, 128, 64, 256
    decode = 2 * (z * (2 * 2 * h + 4 * h) + 32 * (4 * h * h + 4 * h * 2 * h + h * v))
    encode = 2 * (2 * 4 * he * (e + he) * 32 + 2 * 2 * he * z)
    assert op_flops(config, "sample_prior", 1) == decode
    assert op_flops(config, "encode", 1) == encode
    assert op_flops(config, "continue", 16) == 16 * (encode + decode)
    assert op_flops(config, "interpolate", 5) == 2 * encode + 5 * decode
    hier = vars(get_preset("mel_16bar_hier").model)
    assert op_flops(hier, "sample_prior", 2) == 2 * op_flops(hier, "sample_prior", 1)


def test_bench_an_exported_directory_with_one_variant(tmp_path):
    """A shipped-style model (int8 graphs only, no checkpoint): runtime engines only, no torch baseline."""
    from musicbridge.export.ship import ship
    from musicbridge.export.testing import export_tiny

    exported = export_tiny(tmp_path / "exported", variants=("int8",))
    shipped = ship(exported, tmp_path / "shipped_like", "int8")
    result = CliRunner().invoke(app, ["bench", "--model", str(shipped), "--runs", "2", "--batches", "1",
                                      "--ops", "encode,sample_prior", "--json"])
    assert result.exit_code == 0, result.output
    records = [r for r in json.loads(result.stdout) if r["op"] != "matvec"]
    assert {(r["op"], r["engine"]) for r in records} == {("encode", "onnxruntime-int8"),
                                                         ("sample_prior", "onnxruntime-int8")}
    assert all(r["model"] == "shipped_like" for r in records)
