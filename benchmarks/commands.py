"""`musicbridge bench`: runtime latency (p50/p99) vs torch eager and vs the machine's matrix-vector bound;
`musicbridge bench-clock` and `bench-bridge`: the live daemon's timing on a private JACK server
(benchmarks/bench_clock.py, benchmarks/bench_bridge.py: their options are theirs, see `--help`).

torch is imported only when a checkpoint or preset needs the torch baseline (benchmarks/bench_runtime.py).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


# The JACK benchmarks parse their own options (argparse, also run as `python -m`): everything is passed on.
PASS_ON = {"allow_extra_args": True, "ignore_unknown_options": True}


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
    app.command("bench-clock", context_settings=PASS_ON, add_help_option=False)(bench_clock)
    app.command("bench-bridge", context_settings=PASS_ON, add_help_option=False)(bench_bridge)


def bench_clock(ctx: typer.Context) -> None:
    """Answers against an outside MIDI clock (jack_midi_clock): offset from its 16th grid, jitter, drift."""
    from musicbridge.benchmarks.bench_clock import main

    main(ctx.args)


def bench_bridge(ctx: typer.Context) -> None:
    """The daemon's output timing through JACK, quiet and under a MIDI flood, vs a naive scheduler."""
    from musicbridge.benchmarks.bench_bridge import main

    main(ctx.args)


def bench(
    model: list[str] = typer.Option(None, "--model", help="Exported model dir, shipped model name, checkpoint or run dir "
                                    "(checkpoints are exported on the fly and also timed in torch eager). Repeatable."),
    preset: list[str] = typer.Option(None, "--preset", help="Also bench an untrained model of this preset's size "
                                     "(timings do not depend on the weights). Repeatable."),
    runs: int = typer.Option(200, min=1, help="Timed calls per op, batch and engine."),
    threads: int = typer.Option(1, min=1, help="Intra-op threads (onnxruntime and torch)."),
    ops: str = typer.Option(",".join(("encode", "continue", "interpolate", "sample_prior")), help="Ops, comma-separated."),
    batches: str = typer.Option("1,16", help="Batch sizes, comma-separated."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as a JSON list."),
) -> None:
    """Time encode / continue / interpolate / sample_prior on onnxruntime fp32 + int8 and torch eager."""
    from musicbridge.benchmarks.bench_runtime import OPS, resolve_targets
    from musicbridge.benchmarks.bench_runtime import bench as run_bench
    from musicbridge.runtime import ModelLoadError

    chosen_ops = [op.strip() for op in ops.split(",") if op.strip()]
    unknown = [op for op in chosen_ops if op not in OPS]
    if unknown:
        console.print(f"[red]error:[/red] unknown op(s) {', '.join(unknown)}; known: {', '.join(OPS)}")
        raise typer.Exit(1)
    try:
        sizes = tuple(int(b) for b in batches.split(","))
    except ValueError:
        console.print(f"[red]error:[/red] --batches takes integers like 1,16, not {batches!r}")
        raise typer.Exit(1) from None
    with tempfile.TemporaryDirectory(prefix="musicbridge-bench-") as workdir:
        try:
            targets = resolve_targets(list(model or []), list(preset or []), Path(workdir))
        except (ModelLoadError, ValueError, KeyError) as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(1) from None
        with console.status("benchmarking") as status:
            records = run_bench(targets, runs=runs, threads=threads, batches=sizes, ops=tuple(chosen_ops),
                                progress=lambda message: status.update(message))
    if as_json:
        print(json.dumps(records, indent=1))
    else:
        _print(records)


def _print(records: list[dict]) -> None:
    for bound in (r for r in records if r["op"] == "matvec"):
        console.print(f"{bound['model']}: single-thread matvec {bound['shape'][0]}×{bound['shape'][1]} fp32 = "
                      f"{bound['gflops']:.1f} GFLOP/s (median {bound['gflops_median']:.1f})")
    table = Table(title="musicbridge bench (ms)")
    for column in ("model", "op", "batch", "engine", "p50", "p99", "GFLOP/s", "of bound", "× torch", "vs batch 1"):
        table.add_column(column, justify="left" if column in ("model", "op", "engine") else "right")
    for r in records:
        if r["op"] == "matvec":
            continue
        table.add_row(r["model"], r["op"], str(r["batch"]), r["engine"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                      f"{r['gflops']:.1f}" if "gflops" in r else "–",  # no FLOP formula for its architecture
                      f"{r['of_matvec_bound']:.0%}" if "of_matvec_bound" in r else "–",
                      f"{r['speedup_vs_torch_p99']:.1f}" if "speedup_vs_torch_p99" in r else "",
                      f"{r['vs_batch1_p99']:.1f}" if "vs_batch1_p99" in r else "")
    Console().print(table)
