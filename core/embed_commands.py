"""`musicbridge embed` and `musicbridge similar`: a library of MIDI files as latent vectors, and its phrases nearest
to a query (musicbridge.embeddings; no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from musicbridge import DEFAULT_MODEL
from musicbridge.cli_errors import fail

console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines: paths and errors are not broken

METRIC_HELP = "cosine (1 − cos; the default, see docs/latent.md for the measurements) or euclidean."
MAX_REASONS_SHOWN = 5


def _load_model(model: str, variant: str | None, hint: str = ""):
    from musicbridge.runtime import ModelLoadError, load_model

    try:
        return load_model(model, variant=variant, threads=0)  # offline: every core
    except ModelLoadError as error:
        fail(console, f"{error}{hint}")


def _metric(metric: str | None) -> str:
    """--metric, checked (None: the default)."""
    from musicbridge.embeddings import DEFAULT_METRIC, METRICS

    if metric is not None and metric not in METRICS:
        raise typer.BadParameter(f"{metric!r} is not one of {', '.join(METRICS)}", param_hint="--metric")
    return metric or DEFAULT_METRIC


def embed(
    sources: list[str] = typer.Argument(..., help="MIDI files, folders (searched recursively for .mid/.midi) or "
                                        "globs."),
    out: Path = typer.Option(..., "-o", "--out", help="Index file to write (.npz; its folder is created when "
                             "missing)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Shipped model name or exported model "
                              "directory (any model with an encoder)."),
    variant: str = typer.Option(None, "--variant", help="fp32, int8 or fp16 (default: the model's)."),
    hop: int = typer.Option(1, min=1, help="Bars between window starts."),
) -> None:
    """Embed MIDI files: μ of every window of the model's length (each pitched instrument is its own melody, as in
    `data build`) and of every file, into an index for `musicbridge similar` (format: docs/latent.md)."""
    from musicbridge.embeddings import EmbeddingError, build_index, midi_files

    if out.exists() and out.is_dir():
        fail(console, f"{out} is a folder; give the index file to write, e.g. {out / 'library.npz'}")
    try:
        files = midi_files(sources)
    except EmbeddingError as error:
        fail(console, str(error))
    if not files:
        fail(console, f"no .mid or .midi files in {', '.join(sources)}; give MIDI files or folders that hold some")
    loaded = _load_model(model, variant)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks = {phase: bar.add_task(phase, total=None) for phase in ("reading", "encoding")}
        index = build_index(loaded, files, hop,
                            progress=lambda phase, done, total: bar.update(tasks[phase], completed=done, total=total))
    skipped = index.meta["skipped"]
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} of {len(files)} files[/yellow]:", highlight=False)
        for item in skipped[:MAX_REASONS_SHOWN]:
            console.print(f"  - {item['reason']}", markup=False, highlight=False)
        if len(skipped) > MAX_REASONS_SHOWN:
            console.print(f"  … and {len(skipped) - MAX_REASONS_SHOWN} more (listed in the index's meta)")
    if not len(index):
        fail(console, f"none of the {len(files)} files holds a window the model reads; nothing written")
    try:
        index.save(out)
    except OSError as error:
        fail(console, f"cannot write {out} ({error.strerror or error}); choose another -o path")
    console.print(f"wrote {out}: {len(index)} windows of {len(index.files)} files, {loaded.bars}-bar windows every "
                  f"{hop} bar{'s' if hop > 1 else ''}, μ of {index.meta['model']} ({loaded.z_size} values)",
                  highlight=False)


def similar(
    query: Path = typer.Argument(..., exists=True, dir_okay=False, help="MIDI file whose window is looked for."),
    index_path: Path = typer.Option(..., "--index", "-i", help="Index file made by `musicbridge embed`."),
    k: int = typer.Option(5, "--k", "-k", min=1, max=1000, help="Matches to list."),
    bar: int = typer.Option(-1, "--bar", min=-1, help="The query window's first bar in the file (-1 = the file's "
                            "first window)."),
    voice: int = typer.Option(0, "--voice", min=0, help="The query file's instrument (0 = the first the model "
                              "reads)."),
    metric: str = typer.Option(None, "--metric", help=METRIC_HELP),
    files: bool = typer.Option(False, "--files", help="Rank whole files (their mean vector) instead of windows."),
    model: str = typer.Option(None, "--model", "-m", help="The model to encode the query with (default: the one "
                              "the index was made with; another one is refused)."),
    variant: str = typer.Option(None, "--variant", help="fp32, int8 or fp16 (default: the index's)."),
    out: Path = typer.Option(None, "--out", help="Folder to write the query window and each matching window into, "
                             "as MIDI files (created when missing)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """The library windows nearest to a window of QUERY: their files and bars, nearest first."""
    import numpy as np

    from musicbridge.embeddings import EmbeddingError, EmbeddingIndex, read_windows

    metric = _metric(metric)
    try:
        index = EmbeddingIndex.load(index_path)
    except EmbeddingError as error:
        fail(console, str(error))
    if model is None:  # the model the index was made with, where it was then
        loaded = _load_model(index.meta["model"], variant or index.meta.get("variant"),
                             f"; {index_path} was made with that model: give --model with where it is now")
    else:
        loaded = _load_model(model, variant)
    try:
        index.check_model(loaded)
    except EmbeddingError as error:
        fail(console, str(error))
    found = read_windows(str(query), loaded.codec, loaded.bars, hop=1)  # every bar can start the query
    if found.reason:
        fail(console, found.reason)
    chosen = [i for i, (v, b) in enumerate(zip(found.voice, found.bar, strict=True))
              if v == voice and (bar < 0 or b == bar)]
    if not chosen:
        where = [f"voice {v} bar {b}" for v, b in zip(found.voice, found.bar, strict=True)]
        fail(console, f"{query} has no window at voice {voice}{'' if bar < 0 else f', bar {bar}'}; its windows: "
                      f"{', '.join(where[:12])}{' …' if len(where) > 12 else ''} — choose one with --voice/--bar")
    tokens = found.tokens[chosen[0]]
    vector = loaded.encode(tokens.astype(np.int64)[None])[0][0]
    query_info = {"file": str(query), "voice": found.voice[chosen[0]], "bar": found.bar[chosen[0]]}
    if files:
        matches = [m._asdict() for m in index.nearest_files(vector, k, metric)]
    else:
        matches = [m._asdict() | {"window": int(index.window[m.row])} for m in index.nearest(vector, k, metric)]
    if out is not None:
        _write_matches(out, index, tokens, matches, files)
    if as_json:
        print(json.dumps({"query": query_info, "index": str(index_path), "metric": metric, "matches": matches}))
        return
    table = Table(title=f"nearest to {query.name} (voice {query_info['voice']}, bar {query_info['bar']}), "
                        f"{metric} distance")
    for column in ("#", "distance", "file") + (() if files else ("voice", "bar")):
        table.add_column(column, justify="left" if column == "file" else "right")
    for rank, match in enumerate(matches, 1):
        cells = [str(rank), f"{match['distance']:.4f}", match["file"]]
        table.add_row(*cells, *(() if files else (str(match["voice"]), str(match["bar"]))))
    Console().print(table)


def _write_matches(out: Path, index, query_tokens, matches: list[dict], files: bool) -> None:
    """The query window (00_query.mid) and each matching window (01_<file>_v<voice>_bar<bar>.mid, …) into `out`;
    --files writes each matching file's first window."""
    import numpy as np

    from musicbridge.notes import NoteSequence

    if out.exists() and not out.is_dir():
        fail(console, f"--out {out} is a file; give a folder to write the matches into")
    rows = [m["row"] for m in matches] if not files else [
        int(np.flatnonzero(index.file_index == index.files.index(m["file"]))[0]) for m in matches]
    phrases = [("00_query", query_tokens)]
    for rank, row in enumerate(rows, 1):
        stem = Path(index.files[index.file_index[row]]).stem
        phrases.append((f"{rank:02d}_{stem}_v{index.voice[row]}_bar{index.bar[row]}", index.tokens[row]))
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, tokens in phrases:
            NoteSequence(index.codec.decode(tokens)).save(out / f"{name}.mid")
    except OSError as error:
        fail(console, f"cannot write into {out} ({error.strerror or error}); choose another --out folder")
    console.print(f"wrote {len(phrases)} MIDI files into {out} (00_query.mid and the matches, nearest first)")


def register(app: typer.Typer) -> None:
    app.command()(embed)
    app.command()(similar)
