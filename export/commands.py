"""`musicbridge export`: checkpoint → ONNX model directory, then a parity check against the torch model.

torch and onnx are imported inside the command: `musicbridge --help` and a serve-only install stay light.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from musicbridge.attributes import DEFAULT_METHOD, METHODS

console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines: paths and errors are not broken


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by `musicbridge train` (runs/NAME/best.pt) or its run directory."),
    out: Path = typer.Option(..., "-o", "--out", help="Model directory to write (model.json + *.onnx)."),
    quantize: str = typer.Option(None, "--quantize", help="Also write an int8 variant (onnxruntime dynamic quantisation): int8."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write a float16 variant (for GPUs; slower than fp32 on a CPU)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset of the graphs (17–21)."),
    data: Path = typer.Option(None, "--data", help="Dataset whose test split the parity check uses (default: prior "
                              "samples) and whose train split the model's own prior is fitted to (prior.npz)."),
    split: str = typer.Option("test", help="Dataset split for the parity check."),
    sequences: int = typer.Option(512, "--parity-sequences", min=1, help="Sequences the parity check compares."),
    prior_windows: int = typer.Option(1000, "--prior-windows", min=0, help="With --data: training windows whose "
                                      "posteriors make the model's prior (prior.npz; sample_prior draws from it "
                                      "instead of N(0, I)); 0 = none. See docs/export.md."),
    attribute_windows: int = typer.Option(20000, "--attribute-windows", min=0, help="With --data (melody models): "
                                          "training windows whose μ give the attribute vectors (attributes.npz: "
                                          "the density/register/range/stepwise knobs); 0 = none. See docs/latent.md."),
    attribute_method: str = typer.Option(DEFAULT_METHOD, "--attribute-method", help="How the attribute vectors are "
                                         "fitted: calibrated (the regression's, scaled and mixed by decoded sweeps), "
                                         "regression (joint least squares), quartiles (MusicVAE's top minus bottom "
                                         "quartile) or orthogonal; see docs/latent.md."),
    as_json: bool = typer.Option(False, "--json", help="Print the parity reports as JSON."),
    decoding: str = typer.Option("cached", "--decoding", help="Transformer VAE sampler: cached (keys/values kept "
                                 "per step) or recompute (the whole decoder every step); see docs/transformer.md."),
    continuation: Path = typer.Option(None, "--continuation", help="A continuation checkpoint (task=continue, e.g. "
                                      "runs/mel_2bar_next/best.pt) exported into OUT/continuation: `continue` then "
                                      "plays the next bars instead of a variation."),
) -> None:
    """Export a checkpoint to ONNX and check the graphs against the torch model (non-zero exit if fp32 parity fails)."""
    from musicbridge.codecs import UnknownRepresentationError
    from musicbridge.data import DatasetError, load_dataset
    from musicbridge.export.checkpoint import checkpoint_task
    from musicbridge.export.exporter import export_model, write_metadata
    from musicbridge.export.parity import TARGETS, check_parity, prior_sequences
    from musicbridge.models.musicvae import decoding_rule_for
    from musicbridge.runtime import ModelLoadError
    from musicbridge.training.checkpoint import CheckpointError, load_trained_model

    if quantize not in (None, "int8"):
        _fail(f"--quantize takes int8, not {quantize!r}")
    if attribute_method not in METHODS:
        _fail(f"--attribute-method takes {', '.join(METHODS)}, not {attribute_method!r}")
    variants = ["fp32"] + (["int8"] if quantize else []) + (["fp16"] if fp16 else [])
    try:
        model, ckpt = load_trained_model(checkpoint)
        if data is not None:
            dataset = load_dataset(data)
            if dataset.hash != ckpt.get("dataset_hash"):
                console.print(f"[yellow]warning:[/yellow] {data} is not the dataset this checkpoint was trained on "
                              f"(hash {dataset.hash[:12]}… vs {str(ckpt.get('dataset_hash'))[:12]}…)")
            if dataset.steps != model.steps or dataset.codec.name != model.config.representation:
                _fail(f"{data} holds {dataset.codec.name} windows of {dataset.steps} steps; the model wants "
                      f"{model.config.representation} windows of {model.steps}")
            windows = dataset.split(split)[:sequences]
            source = f"{data} ({split}, {len(windows)} windows)"
        else:
            windows = prior_sequences(model, sequences)
            source = f"{len(windows)} samples from the model's prior"
        if continuation is not None:
            follower, follower_ckpt = load_trained_model(continuation)
            _check_continuation(continuation, follower, follower_ckpt, model, ckpt, checkpoint_task)
        with console.status(f"exporting {checkpoint} → {out}"):
            metadata = export_model(model, out, preset=ckpt["preset"], representation=ckpt["representation"],
                                    dataset_hash=ckpt.get("dataset_hash"), checkpoint_step=ckpt.get("step"),
                                    opset=opset, variants=variants, decoding=decoding, task=checkpoint_task(ckpt),
                                    rule=decoding_rule_for(model.config, checkpoint_task(ckpt)))
        with console.status(f"checking parity on {source}"):
            reports = [check_parity(model, out, np.asarray(windows), variant) for variant in variants]
        if continuation is not None:
            with console.status(f"exporting the continuation {continuation} → {out / 'continuation'}"):
                export_model(follower, out / "continuation", preset=follower_ckpt["preset"],
                             representation=follower_ckpt["representation"],
                             dataset_hash=follower_ckpt.get("dataset_hash"), checkpoint_step=follower_ckpt.get("step"),
                             opset=opset, variants=variants, decoding=decoding, task="continue",
                             rule=decoding_rule_for(follower.config, "continue"))  # melody: event_first
                follower_windows = np.asarray(windows)[:, : follower.steps]
                follower_reports = [check_parity(follower, out / "continuation", follower_windows, variant)
                                    for variant in variants]
            metadata["continuation"] = {"preset": follower_ckpt["preset"], "step": follower_ckpt.get("step")}
        if data is not None and prior_windows > 0 and checkpoint_task(ckpt) == "reconstruct":
            _fit_prior(model, dataset, prior_windows, out, metadata)
        if data is not None and attribute_windows > 0 and checkpoint_task(ckpt) == "reconstruct":
            _fit_attributes(model, dataset, attribute_windows, attribute_method, out, metadata)
    except (CheckpointError, DatasetError, UnknownRepresentationError, ModelLoadError, ValueError) as error:
        _fail(str(error))
    metadata["parity"] = {report["variant"]: report for report in reports} | {"checked_on": source}
    passed = reports[0]["passed"]
    if continuation is not None:
        metadata["continuation"]["parity"] = {report["variant"]: report for report in follower_reports}
        passed = passed and follower_reports[0]["passed"]
    write_metadata(out, metadata)
    if as_json:
        print(json.dumps({"out": str(out), "parity": reports, "passed": passed} | (
            {"continuation_parity": follower_reports} if continuation is not None else {}), indent=2))
    else:
        _print_reports(reports, source, TARGETS)
    if continuation is not None and not as_json:
        _print_reports(follower_reports, f"{source}, continuation", TARGETS)
    if not passed:
        console.print("[red]fp32 parity FAILED[/red]: the exported graphs do not compute what the checkpoint does")
        raise typer.Exit(1)
    console.print(f"[green]exported[/green] {out} ({', '.join(variants)}; default {metadata['default_variant']})")


def _print_reports(reports: list[dict], source: str, targets: dict) -> None:
    table = Table(title=f"parity vs torch on {source}")
    for column in ("variant", "μ/σ max diff", "logits max diff", "greedy identical", "tokens identical",
                   "sampled identical", "verdict"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for r in reports:
        verdict = ("pass" if r["passed"] else "FAIL") if r["variant"] == "fp32" else "measured"
        table.add_row(r["variant"], f"{r['mu_sigma_max_diff']:.2e}", f"{r['logits_max_diff']:.2e}",
                      f"{r['greedy_identical']:.2%}", f"{r['greedy_tokens_identical']:.2%}",
                      f"{r['sampled_identical']:.2%}", verdict)
    Console().print(table)
    console.print(f"targets (fp32): μ/σ ≤ {targets['mu_sigma_max_diff']:g}, logits ≤ {targets['logits_max_diff']:g}, "
                  f"greedy identical ≥ {targets['greedy_identical']:.0%}")


def _fit_prior(model, dataset, windows: int, out: Path, metadata: dict) -> None:
    """The model's own prior from the dataset's train split (export/prior.py), into OUT/prior.npz and metadata.
    A continuation model is not sampled from a prior: it gets none (neither does its continuation/ sub-model)."""
    from musicbridge.export.prior import add_prior, fit_prior

    with console.status(f"fitting the prior to {min(windows, len(dataset.split('train')))} training windows"):
        prior, entry = fit_prior(model, dataset.split("train"), windows)
        add_prior(out, metadata, prior, entry)


def _fit_attributes(model, dataset, windows: int, method: str, out: Path, metadata: dict) -> None:
    """The attribute vectors from the dataset's train split (export/attributes.py), into OUT/attributes.npz and
    metadata; a model of a representation without them (drums) gets none, and says so."""
    from musicbridge.attributes import CALIBRATED
    from musicbridge.export.attributes import (
        REPRESENTATIONS,
        GreedyDecoder,
        add_attributes,
        fit_attributes,
        unclean_knobs,
    )
    from musicbridge.runtime import load_model

    if dataset.codec.name not in REPRESENTATIONS:
        console.print(f"[yellow]note:[/yellow] no attribute vectors: they are defined for {', '.join(REPRESENTATIONS)} "
                      f"models, and this one plays {dataset.codec.name}")
        return
    train = dataset.split("train")
    # calibrated decodes with the graphs just written, the default variant: the decoder that plays the knobs.
    decoder = GreedyDecoder.runtime(load_model(out, threads=0, warmup=False)) if method == CALIBRATED else None
    with console.status(f"fitting attribute vectors ({method}) to {min(windows, len(train))} training windows"):
        try:
            vectors, entry = fit_attributes(model, train, dataset.codec.steps_per_bar, windows, method,
                                            decoder=decoder)
        except ValueError as error:  # too few windows with notes: the model works without the knobs
            console.print(f"[yellow]note:[/yellow] no attribute vectors: {error}")
            return
        add_attributes(out, metadata, vectors, entry)
    if "calibration" in entry and unclean_knobs(entry["calibration"]):
        console.print(f"[yellow]note:[/yellow] calibrated knobs that are not clean on the training windows: "
                      f"{', '.join(unclean_knobs(entry['calibration']))}; see model.json attributes.calibration")


def _check_continuation(path: Path, follower, follower_ckpt: dict, model, ckpt: dict, task_of) -> None:
    """A continuation must be trained for it and speak the model's language at the model's length."""
    if task_of(follower_ckpt) != "continue":
        _fail(f"{path} was trained to {task_of(follower_ckpt)}, not to continue; train a continuation with "
              f"--preset mel_2bar_next (or --set task=continue) on windows twice the model's length")
    if follower_ckpt["representation"] != ckpt["representation"] or follower.steps != model.steps:
        _fail(f"{path} continues {follower_ckpt['representation']['name']} phrases of {follower.steps} steps; the "
              f"model plays {ckpt['representation']['name']} phrases of {model.steps}")


def _fail(message: str):
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)

