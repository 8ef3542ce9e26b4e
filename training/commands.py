"""`musicbridge train`, `evaluate` and `plot`. torch is imported inside the command bodies only.

Also runnable as a module for torchrun: `torchrun --nproc-per-node 2 -m musicbridge train ...`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from musicbridge.cli_errors import fail
from musicbridge.training.evaluate import PRIOR_SAMPLES

console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines: paths and errors are not broken
# The --music summaries, in the table's column order; prior_standard only where the model has a fitted prior.
MUSIC_COLUMNS = ("data", "prior", "prior_standard", "continuation")


def _fail(message: str) -> NoReturn:
    fail(console, message)


def relaunch_arguments(ctx: typer.Context, leave_out: tuple[str, ...]) -> list[str]:
    """The command line that runs ctx's command again with the values it was given: built from the command's
    declared parameters, so an option added later travels too. Parameters named in `leave_out` are left to their
    defaults; options left at None (unset) are not written."""
    arguments = [ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in leave_out or value is None:
            continue
        if param.param_type_name == "argument":
            arguments += [str(v) for v in value] if param.multiple or param.nargs != 1 else [str(value)]
            continue
        name = max(param.opts, key=len)  # the long name
        if param.is_flag:
            if value:
                arguments.append(name)
            elif param.secondary_opts:
                arguments.append(max(param.secondary_opts, key=len))
        else:
            arguments += [part for v in (value if param.multiple else [value]) for part in (name, str(v))]
    return arguments


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"--set expects KEY=VALUE, got {pair!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def resolve_preset(preset_name, out: Path, resume: bool, config_file, sets, steps, batch_size):
    """The run's preset: the checkpoint's on --resume, else the named one; then the TOML file, --set, flags."""
    from musicbridge.models import apply_overrides, get_preset, load_toml_overrides, preset_from_dict

    file_overrides = load_toml_overrides(config_file) if config_file else {}
    if resume:
        from musicbridge.training.checkpoint import load_checkpoint

        preset = preset_from_dict(load_checkpoint(out / "last.pt")["config"])
        if preset_name and preset_name != preset.name:
            _fail(f"{out / 'last.pt'} is a {preset.name!r} run, not {preset_name!r}")
    else:
        name = preset_name or file_overrides.get("preset")
        if not name:
            _fail("choose a preset: --preset NAME (or preset = \"NAME\" in the --config file)")
        preset = get_preset(name)
    apply_overrides(preset, file_overrides)
    apply_overrides(preset, sets)
    flags = {"steps": steps, "batch_size": batch_size}
    apply_overrides(preset, {key: value for key, value in flags.items() if value is not None})
    return preset


def train(
    ctx: typer.Context,
    preset: str = typer.Option(None, "--preset", "-p", help="Named preset: mel_2bar, mel_16bar_hier, mel_16bar_flat, drums_2bar, "
                                "mel_2bar_transformer, mel_16bar_transformer, mel_2bar_next, mel_2bar_vsae."),
    data: Path = typer.Option(..., "--data", "-d", help="Dataset directory from `musicbridge data build`."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (default runs/PRESET)."),
    steps: int = typer.Option(None, "--steps", help="Total optimiser steps (overrides the preset)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Global batch size (split over processes)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from OUT/last.pt."),
    config: Path = typer.Option(None, "--config", help="TOML file of overrides (bare keys or model and train tables)."),
    set_: list[str] = typer.Option([], "--set", help="Override any preset field: --set z_size=64 --set train.lr=3e-4."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", help="Processes (DDP) on this machine, via torchrun."),
    threads: int = typer.Option(0, "--threads", help="torch intra-op threads per process (0 = torch's default)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Train a preset (MusicVAE, Transformer VAE or vsae) on a dataset; checkpoints, metrics.jsonl and curves go to the run directory."""
    if out is None:
        if not preset:
            _fail("say where the run lives: --out DIR (or --preset NAME for runs/NAME)")
        out = Path("runs") / preset
    if nproc_per_node > 1 and "WORLD_SIZE" not in os.environ:
        from musicbridge.training.distributed import relaunch

        # Every option as given, --nproc-per-node aside: each of torchrun's processes is one of them.
        arguments = relaunch_arguments(ctx, leave_out=("nproc_per_node",))
        raise typer.Exit(relaunch(nproc_per_node, arguments))

    import torch

    from musicbridge.data import DatasetError, load_dataset
    from musicbridge.training import distributed
    from musicbridge.training.checkpoint import CheckpointError
    from musicbridge.training.plot import plot_run
    from musicbridge.training.trainer import Trainer

    if threads > 0:
        torch.set_num_threads(threads)
    try:
        chosen = resolve_preset(preset, out, resume, config, _parse_sets(set_), steps, batch_size)
        trainer = Trainer(chosen, load_dataset(data), out, device=device, resume=resume, console=console,
                          show_progress=progress)
        summary = trainer.run()
    except (ValueError, KeyError, CheckpointError, DatasetError, FileNotFoundError) as error:
        distributed.stop()
        _fail(str(error).strip("'\""))
    if trainer.processes.is_main:
        if (out / "metrics.jsonl").exists():
            written = plot_run(out)
            console.print(f"curves: {', '.join(p.name for p in written)} in {out}")
        state = "interrupted" if summary["interrupted"] else "done"
        console.print(f"{state}: step {summary['step']} in {summary['elapsed_seconds']:.0f} s; checkpoints in {out}")
    distributed.stop()


def load_for_evaluation(model_path: Path, device: str, variant: str | None = None):
    """(sampling model, description) for MODEL: a checkpoint file or a run directory — or an exported model
    directory / shipped model name, measured through the torch-free runtime (export stage)."""
    from musicbridge.runtime import is_exported_model

    if is_exported_model(model_path):
        return load_exported_for_evaluation(model_path, device, variant)
    from musicbridge.models.musicvae import decoding_rule_for
    from musicbridge.training.checkpoint import checkpoint_task, load_trained_model
    from musicbridge.training.distributed import choose_device
    from musicbridge.training.evaluate import TorchModel

    torch_device = choose_device(device)
    model, checkpoint = load_trained_model(model_path, torch_device)
    rule = decoding_rule_for(model.config, checkpoint_task(checkpoint))  # what its export would decode with
    info = {"preset": checkpoint["preset"], "representation": checkpoint["representation"],
            "dataset_hash": checkpoint["dataset_hash"], "step": checkpoint["step"],
            "steps_per_bar": model.config.steps_per_bar, "steps": model.config.steps, "engine": "torch"}
    return TorchModel(model, torch_device, rule=rule), info


def load_exported_for_evaluation(model_path: Path, device: str, variant: str | None):
    """(runtime Model, description) of an exported model; it has the sampling API evaluate needs."""
    from musicbridge.runtime import load_model

    model = load_model(model_path, variant=variant, device=device, threads=0)  # offline: every core
    meta = model.metadata
    info = {"preset": meta["preset"], "representation": meta["representation"], "dataset_hash": meta["dataset_hash"],
            "step": meta.get("checkpoint_step"), "steps_per_bar": meta["steps_per_bar"], "steps": meta["steps"],
            "engine": f"onnxruntime-{model.variant}"}
    return model, info


def evaluate(
    model: Path = typer.Argument(..., help="A checkpoint (.pt), a run directory (uses best.pt, else last.pt), or an "
                                 "exported model directory / shipped model name."),
    data: Path = typer.Option(..., "--data", "-d", help="Dataset directory."),
    split: str = typer.Option("test", "--split", help="train, valid, test or all."),
    limit: int = typer.Option(0, "--limit", help="Evaluate a seeded random subset of this many windows (0 = all)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    interpolation: bool = typer.Option(False, "--interpolation", help="Latent slerp vs data-space interpolation."),
    prior_stats: bool = typer.Option(False, "--prior-stats", help="Statistics of prior samples vs the data."),
    prior_samples: int = typer.Option(PRIOR_SAMPLES, "--prior-samples", "--samples",
                                      help="Samples drawn for --prior-stats and --music."),
    prior_temperature: float = typer.Option(1.0, "--prior-temperature",
                                            help="Sampling temperature for --prior-stats and --music."),
    music: bool = typer.Option(False, "--music", help="Musical statistics (key fit, density, range, leaps, "
                               "repetition) of the data, prior samples and continuations; see docs/evaluate.md."),
    retrieval: bool = typer.Option(False, "--retrieval", help="How well μ finds music: windows of the same piece "
                                   "nearer than others (MRR, recall@k), a window's transposed copy nearer than every "
                                   "other window, cosine and Euclidean; see docs/latent.md."),
    closure: bool = typer.Option(False, "--closure", help="Is the latent valid under addition and scaling (the "
                                 "vsae's measure, any model): for pairs of phrases decode μa+μb, 0.5·μa, 1.5·μa; the "
                                 "share of valid melodies and how close each re-encodes; see docs/latent.md."),
    attributes: bool = typer.Option(False, "--attributes", help="Do the attribute knobs move what they name: for each "
                                    "attribute vector of an exported model, the attributes of the phrases decoded "
                                    "(greedy) from μ + α·v for α in -2..+2 (monotonic? how much do the others move?); "
                                    "see docs/latent.md."),
    continuation: bool = typer.Option(False, "--continuation", help="How the model continues: bars 1–2 of each "
                                      "window of a dataset built with twice the model's --bars in, its next bars "
                                      "against the true ones (onset F1), beside repeating the input and a random "
                                      "other phrase."),
    device: str = typer.Option("cpu", "--device", help="auto, cpu or cuda."),
    batch_size: int = typer.Option(512, "--batch-size", help="Sequences per model call."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subset, the shuffled-z pairing and prior samples."),
    variant: str = typer.Option(None, "--variant", help="Exported models: fp32, int8 or fp16 (default: the model's)."),
) -> None:
    """Reconstruction accuracy (teacher-forced, sampled, onsets), the collapse check, KL and active units;
    --music adds musical statistics of the data, prior samples and continuations (docs/evaluate.md), --closure
    what decoding sums and scalings of latents gives (docs/latent.md)."""
    import numpy as np

    from musicbridge.data import load_dataset
    from musicbridge.training.evaluate import (
        interpolation_metrics,
        music_metrics,
        prior_metrics,
        reconstruction_metrics,
    )

    started = time.perf_counter()
    try:
        sampler, info = load_for_evaluation(model, device, variant)
        dataset = load_dataset(data)
        tokens = dataset.split(split)
    except ValueError as error:  # CheckpointError, UnknownRepresentationError, DatasetError are ValueErrors
        _fail(str(error))
    if dataset.codec.name != info["representation"]["name"]:
        _fail(f"the model speaks {info['representation']['name']!r}, the dataset {dataset.codec.name!r}")
    if music and dataset.codec.name != "melody":
        _fail(f"--music measures melodies and this model speaks {dataset.codec.name!r}; leave --music out")
    if closure and dataset.codec.name != "melody":
        _fail(f"--closure judges melodies and this model speaks {dataset.codec.name!r}; leave --closure out")
    if attributes and getattr(sampler, "attributes", None) is None:
        _fail(f"--attributes measures the attribute vectors of an exported model, and {model} has none; export it "
              f"with --data DATASET (melody models), then evaluate the export")
    origins = None
    if retrieval and continuation:
        _fail("--continuation measures a dataset of twice the model's bars and --retrieval one of its own length; "
              "run them as two commands")
    if retrieval:
        try:
            origins = dataset.origins(split)  # the piece, voice and bar of each window
        except ValueError as error:
            _fail(str(error))
    subset = slice(None)
    if limit and limit < len(tokens):
        subset = np.sort(np.random.default_rng(seed).choice(len(tokens), limit, replace=False))
        tokens = tokens[subset]
    tokens = np.asarray(tokens, dtype=np.int64)
    if len(tokens) < 2:
        _fail(f"split {split!r} of {data} has {len(tokens)} windows; evaluation needs at least 2")

    result = {"model": str(model), "preset": info["preset"], "engine": info["engine"], "data": str(data),
              "split": split, "dataset_hash_matches": info["dataset_hash"] == dataset.hash}
    if continuation:
        from musicbridge.training.continuation import continuation_metrics

        try:
            result["continuation"] = continuation_metrics(sampler, tokens, info["steps"], seed=seed,
                                                          batch_size=batch_size)
        except ValueError as error:
            _fail(str(error))
        result["seconds"] = round(time.perf_counter() - started, 2)
        if as_json:
            print(json.dumps(result))
        else:
            Console().print(_table(result | result["continuation"] | {"n_sequences": len(tokens)}))
        return
    result.update(reconstruction_metrics(sampler, tokens, dataset.codec.onsets(tokens), seed, batch_size))
    if interpolation:
        result["interpolation"] = interpolation_metrics(sampler, tokens, seed=seed, batch_size=batch_size)
    if prior_stats:
        result["prior_stats"] = prior_metrics(sampler, tokens, dataset.codec.name, info["steps_per_bar"],
                                              prior_samples, prior_temperature, seed, batch_size)
    if music:
        result["music"] = music_metrics(sampler, tokens, info["steps_per_bar"], prior_samples, prior_temperature,
                                        seed, batch_size)
    if retrieval:
        from musicbridge.training.evaluate import retrieval_metrics

        result["retrieval"] = retrieval_metrics(sampler, tokens, origins[subset], dataset.codec,
                                                info["steps"] // info["steps_per_bar"], seed, batch_size)
    if closure:
        from musicbridge.training.evaluate import closure_metrics

        try:
            result["closure"] = closure_metrics(sampler, tokens, info["steps_per_bar"], seed=seed,
                                                batch_size=batch_size)
        except ValueError as error:
            _fail(str(error))
    if attributes:
        from musicbridge.training.evaluate import attribute_metrics

        result["attributes"] = {"method": sampler.metadata.get("attributes", {}).get("method")} | attribute_metrics(
            sampler, sampler.attributes, tokens, info["steps_per_bar"], batch_size=batch_size)
    result["seconds"] = round(time.perf_counter() - started, 2)
    if as_json:
        print(json.dumps(result))
    else:
        Console().print(_table(result))
        if "attributes" in result:
            Console().print(_attributes_table(result["attributes"]))
        if "closure" in result:
            Console().print(_closure_table(result["closure"]))
        if "music" in result:
            Console().print(_music_table(result["music"]))
        if "retrieval" in result:
            Console().print(_retrieval_table(result["retrieval"]))


def _table(result: dict) -> Table:
    table = Table(title=f"{result['preset']} on {result['data']} ({result['split']}, {result['n_sequences']} windows)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if key in ("interpolation", "prior_stats", "music", "continuation", "retrieval", "closure", "attributes") or key in ("model", "data", "split", "preset"):
            continue
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    if "interpolation" in result:
        path = result["interpolation"]
        for alpha, latent, naive in zip(path["alphas"], path["latent_hamming_to_a"], path["data_hamming_to_a"], strict=True):
            table.add_row(f"hamming to A at α={alpha:.1f} (latent / data)", f"{latent:.3f} / {naive:.3f}")
    if "prior_stats" in result:
        for name, stats in result["prior_stats"].items():
            if isinstance(stats, dict):
                table.add_row(f"prior {name} (prior / data / overlap)",
                              " / ".join("–" if v is None else f"{v:.3f}" for v in stats.values()))
    return table


def _music_table(music: dict) -> Table:
    """The --music statistics, one row each, data / prior / continuation side by side."""
    table = Table(title=f"music: data, prior samples ({music['prior_kind']} prior, temperature "
                        f"{music['prior_temperature']:g}), "
                        f"continuations ({music['continuation_path']})")
    table.add_column("statistic")
    columns = [column for column in MUSIC_COLUMNS if music.get(column) is not None]
    for column in columns:
        table.add_column(column, justify="right")
    for name in music["data"]:
        cells = [music[column][name] for column in columns]
        table.add_row(name, *("–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in cells))
    return table


def _closure_table(closure: dict) -> Table:
    """The --closure measure: one row per latent operation (docs/latent.md)."""
    rule = closure["rule"]
    table = Table(title=f"closure: {closure['n_pairs']} pairs; valid = in key, {rule['onsets_per_bar'][0]:.2f}–"
                        f"{rule['onsets_per_bar'][1]:.2f} onsets/bar, leaps ≤ {rule['max_leap_share']:.0%} (the data: "
                        f"{closure['data_valid_share']:.0%} valid)")
    columns = ("valid_share", "close_share", "valid_and_close_share", "reencode_relative_error", "reencode_cosine",
               "distinct_share", "onsets_per_bar")
    for column in ("z", *columns):
        table.add_column(column.replace("_share", "").replace("_", " "), justify="left" if column == "z" else "right")
    names = {"identity": "μa", "sum": "μa + μb", "half": "0.5·μa", "one_and_half": "1.5·μa"}
    for name, row in closure["operations"].items():
        table.add_row(names.get(name, name), *(f"{row[column]:.3f}" for column in columns))
    return table


def _attributes_table(attributes: dict) -> Table:
    """The --attributes measure: one column per knob (its own attribute's mean at each α), then how monotonic it is
    and how much the other attributes move with it."""
    knobs = attributes["knobs"]
    table = Table(title=f"attribute knobs ({attributes['method']} vectors): each knob's own attribute, mean of "
                        f"{attributes['n_inputs']} phrases decoded (greedy) from μ + α·v")
    table.add_column("α")
    for knob in knobs:
        table.add_column(knob, justify="right")

    def cells(values, form: str) -> list[str]:
        return ["–" if v is None else format(v, form) for v in values]

    for index, alpha in enumerate(attributes["alphas"]):
        table.add_row(f"{alpha:+g}", *cells([row["means"][knob][index] for knob, row in knobs.items()], ".2f"))
    table.add_row("Spearman ρ", *cells([row["spearman"] for row in knobs.values()], ".2f"))
    table.add_row("min step", *cells([row["min_step"] for row in knobs.values()], "+.3f"))
    table.add_row("others / own", *cells([row["max_relative_range"] for row in knobs.values()], ".2f"))
    table.caption = ("others / own: the largest range of another attribute over α, relative to the knob's own "
                     "(each in standard deviations of the inputs)")
    return table


def _retrieval_table(retrieval: dict) -> Table:
    """The --retrieval rankings, one row each: same piece (cosine, Euclidean, random vectors), transposed copy."""
    table = Table(title=f"retrieval: {retrieval['windows']} windows of {retrieval['pieces']} pieces")
    rows = [(f"same piece, {name}", scores) for name, scores in retrieval["same_piece"].items()]
    if retrieval["transposition"]:
        rows += [(f"transposed copy, {name}", retrieval["transposition"][name]) for name in ("cosine", "euclidean")]
    columns = [key for key in rows[0][1] if key != "queries"]
    for column in ("ranking", "queries", *columns):
        table.add_column(column, justify="left" if column == "ranking" else "right")
    for name, scores in rows:
        table.add_row(name, str(scores["queries"]), *("–" if scores[c] is None else f"{scores[c]:.3f}" for c in columns))
    if retrieval["transposition"]:
        table.caption = (f"mean cosine to the transposed copy {retrieval['transposition']['cosine_to_copy']:.3f}, "
                         f"to another window {retrieval['transposition']['cosine_to_other_window']:.3f}")
    return table


def plot(run: Path = typer.Argument(..., help="Run directory holding metrics.jsonl.")) -> None:
    """Write training-curve PNGs (loss, KL, β, accuracies) into the run directory."""
    from musicbridge.training.plot import plot_run

    try:
        written = plot_run(run)
    except FileNotFoundError as error:
        _fail(str(error))
    for path in written:
        print(path)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(evaluate)
    app.command()(plot)
