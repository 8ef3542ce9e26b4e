"""Latency of the runtime's operations, against torch eager on the same checkpoint and against the machine.

For every model: p50/p99 over `runs` calls of encode, continue (encode the model's bars + sample as many),
interpolate (encode A and B, decode `batch` points of the slerp path) and sample_prior — at batch 1 and 16, on
onnxruntime fp32 and int8 and, when the model comes from a checkpoint, torch eager (the baseline) in the same run.

Each op's work is counted in FLOPs from the model's sizes (benchmarks/flops.py, per architecture; one without a
formula gets no GFLOP/s columns), so its achieved GFLOP/s can be set against this machine's single-thread
matrix-vector rate, measured here too: a batch-1 recurrent decoder is a chain of matrix-vector products and
cannot beat that rate; the ratio shows what is left to win.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from musicbridge.benchmarks.flops import largest_matvec, op_flops
from musicbridge.runtime import CONTINUATION_DIR, Model, load_model, resolve_model_path, shipped_models, slerp

OPS = ("encode", "continue", "interpolate", "sample_prior")
BATCHES = (1, 16)
ENGINES = {"fp32": "onnxruntime", "int8": "onnxruntime-int8", "fp16": "onnxruntime-fp16"}


@dataclass
class Target:
    name: str
    model_dir: Path
    checkpoint: Path | None = None  # torch eager baseline when known


# -- what to bench ----------------------------------------------------------------------------------------------


def resolve_targets(specs: list[str], presets: list[str], workdir: Path) -> list[Target]:
    """Exported directories / shipped names as they are; checkpoints (and untrained presets, saved as
    checkpoints) exported to `workdir` with fp32 + int8 first."""
    if not specs and not presets:
        specs = shipped_models()
        if not specs:
            raise ValueError("no shipped models in this installation yet: pass --model (an exported directory "
                             "or a checkpoint) or --preset (an untrained model of a preset's size)")
    targets = []
    for spec in specs:
        path = Path(spec)
        run_checkpoint = next((path / n for n in ("best.pt", "last.pt") if (path / n).is_file()), None)
        if path.is_file():
            targets.append(_export_for_bench(path, f"{path.parent.name}/{path.stem}", workdir))
        elif path.is_dir() and not (path / "model.json").exists() and run_checkpoint is not None:  # a run dir
            targets.append(_export_for_bench(run_checkpoint, f"{path.name}/{run_checkpoint.stem}", workdir))
        else:
            targets.append(Target(path.name if path.exists() else spec, resolve_model_path(spec)))
    for preset in presets:
        checkpoint = _untrained_checkpoint(preset, workdir)
        target = _export_for_bench(checkpoint, f"{preset} (untrained)", workdir)
        targets.append(target)
    return targets


def _export_for_bench(checkpoint: Path, name: str, workdir: Path) -> Target:
    from musicbridge.export.checkpoint import export_checkpoint

    out = Path(tempfile.mkdtemp(prefix="export-", dir=workdir))
    export_checkpoint(checkpoint, out, variants=("fp32", "int8"))
    return Target(name, out, checkpoint)


def _untrained_checkpoint(preset: str, workdir: Path) -> Path:
    import torch

    from musicbridge.export.testing import save_model_checkpoint
    from musicbridge.models import build_model, get_preset

    torch.manual_seed(0)
    model = build_model(get_preset(preset).model)
    return save_model_checkpoint(model, workdir / f"{preset}.pt", preset=preset)


# -- the calls --------------------------------------------------------------------------------------------------


def runtime_call(model: Model, op: str, batch: int, phrases: np.ndarray) -> Callable[[], object]:
    tokens = phrases[:batch]
    if op == "encode":
        return lambda: model.encode(tokens)
    if op == "continue":
        return lambda: model.continue_(tokens, temperature=1.0)
    if op == "interpolate":
        # Every point decoded (the ends too): the same work as the torch call and op_flops count.
        return lambda: model.interpolate(phrases[0], phrases[1], steps=batch, ends="decoded")
    if op == "sample_prior":
        return lambda: model.sample_prior(batch, temperature=1.0)
    raise ValueError(op)


def torch_call(model, op: str, batch: int, phrases: np.ndarray) -> Callable[[], object]:
    """The same op on the torch model (its own sampling API, eager, no_grad)."""
    import torch

    tokens = torch.from_numpy(np.ascontiguousarray(phrases[:batch], dtype=np.int64))
    pair = torch.from_numpy(np.ascontiguousarray(phrases[:2], dtype=np.int64))

    @torch.no_grad()
    def call():
        if op == "encode":
            return model.encode(tokens)
        if op == "continue":
            mu, sigma = model.encode(tokens)
            return model.decode(mu + sigma * torch.randn_like(mu), temperature=1.0)
        if op == "interpolate":
            mu, _ = model.encode(pair)
            z = slerp(mu[0].numpy(), mu[1].numpy(), np.linspace(0.0, 1.0, batch)).astype(np.float32)
            return model.decode(torch.from_numpy(z), temperature=0.0)
        return model.decode(torch.randn(batch, model.z_size), temperature=1.0)

    return call


def time_calls(calls: dict[str, Callable[[], object]], runs: int, warmup: int = 3) -> dict[str, np.ndarray]:
    """Seconds of `runs` calls of each engine's call, interleaved (engine A, B, C, A, B, C, …) so that load from
    other processes falls on every engine alike and their ratio stays fair on a busy machine."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times = {engine: np.empty(runs) for engine in calls}
    for i in range(runs):
        for engine, call in calls.items():
            start = time.perf_counter()
            call()
            times[engine][i] = time.perf_counter() - start
    return times


# -- work and the bound -----------------------------------------------------------------------------------------


MATVEC_SCRIPT = """
import sys, time, numpy as np
rows, cols, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
w = np.random.default_rng(0).standard_normal((rows, cols)).astype(np.float32)
x = np.random.default_rng(1).standard_normal((1, rows)).astype(np.float32)
for _ in range(20):
    x @ w
rates = []
for _ in range(15):
    start = time.perf_counter()
    for _ in range(reps):
        x @ w
    rates.append(2 * rows * cols * reps / (time.perf_counter() - start) / 1e9)
print(max(rates), float(np.median(rates)))
"""


def matvec_gflops(rows: int, cols: int) -> tuple[float, float]:
    """(best, median) single-thread GFLOP/s of x (1, rows) @ W (rows, cols) float32, numpy/BLAS on one thread
    (a fresh process: the BLAS thread count is fixed when numpy loads)."""
    reps = max(20, int(2e8 / (2 * rows * cols)))  # ~0.1 s per trial at ~20 GFLOP/s
    env = os.environ | {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", MATVEC_SCRIPT, str(rows), str(cols), str(reps)], env=env,
                            capture_output=True, text=True, check=True, timeout=300)
    best, median = map(float, result.stdout.split())
    return best, median


# -- the run ----------------------------------------------------------------------------------------------------


def bench(targets: list[Target], runs: int = 200, threads: int = 1, batches=BATCHES, ops=OPS,
          engines=("fp32", "int8", "torch"), progress: Callable[[str], None] | None = None) -> list[dict]:
    """Records {"model", "op", "batch", "engine", "threads", "p50_ms", "p99_ms", "n", ...} (see module docs)."""
    records: list[dict] = []
    say = progress or (lambda message: None)
    for target in targets:
        config = _config_of(target.model_dir)
        continuation = _continuation_config_of(target.model_dir)
        shape = largest_matvec(config)  # None: no FLOP formula for this architecture, so no GFLOP/s columns
        if shape is not None:
            say(f"{target.name}: matvec bound {shape[0]}×{shape[1]}")
            bound_before = matvec_gflops(*shape)
        # Input phrases: the model's own samples (the timing does not depend on the tokens, only their count).
        phrases = load_model(target.model_dir, device="cpu").sample_prior(
            max(batches + (2,)), temperature=1.0, seed=0)
        factories = {}
        for engine in engines:
            if engine == "torch":
                if target.checkpoint is not None:
                    factories[ENGINES.get(engine, engine)] = _torch_calls(target.checkpoint, threads, phrases)
                continue
            model = _runtime_model(target.model_dir, engine, threads)
            if model is not None:
                factories[ENGINES[engine]] = partial(_runtime_factory, model, phrases)
        timed = []
        for op in ops:
            for batch in batches:
                say(f"{target.name}: {op} batch {batch} on {', '.join(factories)}")
                times = time_calls({engine: make(op, batch) for engine, make in factories.items()}, runs)
                # A model that ships a continuation continues with it (its encoder and decoder, not the model's).
                flops = op_flops(continuation if op == "continue" and continuation else config, op, batch)
                for engine, seconds in times.items():
                    p50, p99 = (float(np.percentile(seconds, q) * 1e3) for q in (50, 99))
                    timed.append({
                        "model": target.name, "op": op, "batch": batch, "engine": engine, "threads": threads,
                        "p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "n": len(seconds),
                        "min_ms": round(float(seconds.min() * 1e3), 3),
                    } | ({} if flops is None else {"gflop": round(flops / 1e9, 4),
                                                   "gflops": round(flops / p50 / 1e6, 2)}))
        if shape is not None:
            # The bound is measured before and after the timings and the better kept: other processes on a
            # shared machine can only slow it down.
            bound_after = matvec_gflops(*shape)
            bound = max(bound_before[0], bound_after[0])
            records.append({"model": target.name, "op": "matvec", "batch": 1, "engine": "numpy", "threads": 1,
                            "shape": list(shape), "gflops": round(bound, 2),
                            "gflops_median": round((bound_before[1] + bound_after[1]) / 2, 2)})
            for record in timed:
                record["of_matvec_bound"] = round(record["gflops"] / bound, 3)
        records.extend(timed)
    _add_speedups(records)
    return records


def _add_speedups(records: list[dict]) -> None:
    torch_p99 = {(r["model"], r["op"], r["batch"]): r["p99_ms"] for r in records if r["engine"] == "torch"}
    batch1 = {(r["model"], r["op"], r["engine"]): r["p99_ms"] for r in records if r.get("batch") == 1 and "p99_ms" in r}
    for r in records:
        if "p99_ms" not in r:
            continue
        baseline = torch_p99.get((r["model"], r["op"], r["batch"]))
        if baseline and r["engine"] != "torch":
            r["speedup_vs_torch_p99"] = round(baseline / r["p99_ms"], 2)
        single = batch1.get((r["model"], r["op"], r["engine"]))
        if single and r["batch"] != 1:
            r["vs_batch1_p99"] = round(r["p99_ms"] / single, 2)


def _runtime_factory(model: Model, phrases: np.ndarray, op: str, batch: int) -> Callable[[], object]:
    return runtime_call(model, op, batch, phrases)


def _config_of(model_dir: Path) -> dict:
    return json.loads((model_dir / "model.json").read_text())["config"]


def _continuation_config_of(model_dir: Path) -> dict | None:
    """The config of the continuation sub-model a model directory ships (runtime.CONTINUATION_DIR), or None."""
    path = model_dir / CONTINUATION_DIR / "model.json"
    return json.loads(path.read_text())["config"] if path.is_file() else None


def _runtime_model(model_dir: Path, variant: str, threads: int) -> Model | None:
    variants = json.loads((model_dir / "model.json").read_text())["variants"]
    return load_model(model_dir, variant=variant, device="cpu", threads=threads) if variant in variants else None


def _torch_calls(checkpoint: Path, threads: int, phrases: np.ndarray):
    import torch

    from musicbridge.training.checkpoint import load_trained_model

    torch.set_num_threads(threads)
    model, _ = load_trained_model(checkpoint)
    return lambda op, batch: torch_call(model, op, batch, phrases)
