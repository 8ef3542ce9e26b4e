"""`musicbridge bench --json` on a tiny checkpoint (a smoke test: records and fields, no timing assertions)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from musicbridge import runtime
from musicbridge.benchmarks.bench_runtime import op_flops
from musicbridge.cli import app
from musicbridge.export.testing import save_model_checkpoint, tiny_model
from musicbridge.models import build_model, get_preset

torch.set_num_threads(1)


@pytest.mark.timeout(600)
def test_bench_json_records_for_every_op_batch_and_engine(tmp_path):
    checkpoint = save_model_checkpoint(tiny_model("melody", hierarchical=True), tmp_path / "tiny" / "best.pt")
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


def test_bench_without_a_model_times_the_shipped_ones(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--runs", "1", "--batches", "1", "--ops", "encode", "--json"])
    assert result.exit_code == 0, result.output
    timed = [r for r in json.loads(result.stdout) if r["op"] != "matvec"]
    assert {r["model"] for r in timed} == set(runtime.shipped_models()) and runtime.shipped_models()
    result = CliRunner().invoke(app, ["bench", "--model", str(tmp_path / "nothing"), "--runs", "1"])
    assert result.exit_code == 1 and "no model directory" in result.output


def counted_flops(model, op: str, batch: int) -> int:
    """What torch counts (2 FLOPs per multiply-add of every matrix product) for one encode or one decode of
    `batch` sequences. On the meta device nothing is computed, and nn.LSTM is broken into the matrix products it
    does (on a CPU it would be one fused kernel the counter does not see)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        if op == "encode":
            model.encode(torch.zeros((batch, model.steps), dtype=torch.long, device="meta"))
        else:  # sample_prior: z drawn from the prior, then decoded (a lookback model's beside the phrase it continues)
            looks = {"lookback": torch.zeros((batch, model.steps), dtype=torch.long, device="meta")} \
                if model.lookback else {}
            model.decode(torch.zeros((batch, model.config.z_size), device="meta"), temperature=0.0, **looks)
    return counter.get_total_flops()


@pytest.mark.parametrize("preset", ["mel_2bar", "mel_16bar_hier", "mel_16bar_segments", "mel_2bar_next_parallel"])
def test_flop_counts_are_what_torch_counts(preset):
    """op_flops against torch's own count of the same model, at the preset's full size."""
    config = get_preset(preset).model
    with torch.device("meta"):
        model = build_model(config)
    sizes = vars(config)
    # The decoder's token table ((vocab + 2) × embed @ embed × 4H) is work of the weights alone: the exported
    # sampler holds it as a constant (export/musicvae.py), so op_flops rightly leaves it out; torch redoes it.
    # A parallel decoder has no token feedback, so no table.
    table = 2 * model.decoder.embed.weight.numel() * 4 * sizes["dec_size"] if hasattr(model.decoder, "embed") else 0
    for batch in (1, 3):
        assert op_flops(sizes, "encode", batch) == counted_flops(model, "encode", batch)
        assert op_flops(sizes, "sample_prior", batch) == counted_flops(model, "sample_prior", batch) - table
    # The composite ops are what the runtime runs for them: continue encodes and decodes every input;
    # interpolate encodes A and B, then decodes every point of the path.
    assert op_flops(sizes, "continue", 3) == op_flops(sizes, "encode", 3) + op_flops(sizes, "sample_prior", 3)
    assert op_flops(sizes, "interpolate", 5) == op_flops(sizes, "encode", 2) + op_flops(sizes, "sample_prior", 5)


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
