"""The `musicbridge` command. Core commands live here; each stage adds its own from `<stage>/commands.py`.

Stage modules import torch only inside their command bodies, so `musicbridge --help`, `serve` and `generate`
stay fast and work in a serve-only install.
"""

from __future__ import annotations

import importlib
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

import musicbridge
from musicbridge.cli_errors import EXIT_STATUS_HELP, USER_ERROR, fail, missing_extra, print_error
from musicbridge.cli_help import use_plain_help
from musicbridge.midi_ports import API_HELP

app = typer.Typer(
    name="musicbridge",
    help="Generative music models played live from your DAW: train, export, serve.",
    epilog=EXIT_STATUS_HELP,
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Build training datasets from MIDI files and music21 corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines: paths and errors are not broken

# Stages that add commands, in the order they appear in --help.
STAGE_COMMANDS = (
    "musicbridge.training.commands",
    "musicbridge.export.commands",
    "musicbridge.benchmarks.commands",
    "musicbridge.bridge.commands",
    "musicbridge.generate_commands",
    "musicbridge.embed_commands",
)


@app.command()
def version() -> None:
    """Print the musicbridge version."""
    print(musicbridge.__version__)


@app.command()
def ports(
    midi_api: str = typer.Option("auto", help=API_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the MIDI input and output ports of a MIDI system."""
    from musicbridge.midi_ports import MidiUnavailableError, list_ports

    try:
        found = list_ports(midi_api)
    except MidiUnavailableError as error:
        fail(console, str(error))
    if as_json:
        print(json.dumps({"api": found["api"][0], "inputs": found["inputs"], "outputs": found["outputs"]}))
        return
    table = Table(title=f"MIDI ports ({found['api'][0]})")
    table.add_column("direction")
    table.add_column("#", justify="right")
    table.add_column("port")
    for direction in ("inputs", "outputs"):
        for index, name in enumerate(found[direction]):
            table.add_row(direction[:-1], str(index), name)
    Console().print(table)


@data_app.command("build")
def data_build(
    sources: list[str] = typer.Argument(..., help="MIDI directories/globs/files, or music21:NAME (NAME: essenFolksong, "
                                        "ryansMammoth, bach, nottingham-dataset, palestrina, monteverdi, trecento)."),
    out: Path = typer.Option(..., "-o", "--out", help="Dataset directory to write."),
    representation: str = typer.Option("melody", help="melody or drums."),
    bars: int = typer.Option(2, min=1, help="Bars (4 beats each) per window."),
    hop: int = typer.Option(1, min=1, help="Bars between window starts."),
    workers: int = typer.Option(0, min=0, help="Worker processes (0 = all cores)."),
    cache_dir: Path = typer.Option(None, help="Cache of parsed music21 scores (default ~/.cache/musicbridge/parsed)."),
    time_rule: str = typer.Option("auto", "--time", help="auto: read scores (music21 sources) whose median note is "
                                  "a quarter or longer at double speed, keep MIDI files' time; normalize: do it for "
                                  "every melody source; keep: never (docs/data.md)."),
    min_onsets_per_bar: float = typer.Option(0.0, min=0.0, help="Drop windows with fewer note-ons per bar (0 = keep)."),
    max_empty_bars: int = typer.Option(-1, min=-1, help="Drop windows with more bars without a note-on (-1 = keep)."),
    max_windows_per_piece: int = typer.Option(0, min=0, help="Keep at most this many windows of a piece, evenly "
                                              "spaced, so long pieces do not outweigh short ones (0 = all)."),
) -> None:
    """Cut sources into N-bar token windows, split 90/5/5 by piece, and write arrays + manifest.json."""
    from musicbridge.codecs import UnknownRepresentationError
    from musicbridge.data.build import BuildError, build_dataset
    from musicbridge.data.sources import SourceError

    columns = (TextColumn("[bold]parsing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("parse", total=None)
        try:
            manifest = build_dataset(
                sources, out, representation, bars, hop, workers or None, cache_dir,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                time_rule=time_rule, min_onsets_per_bar=min_onsets_per_bar,
                max_empty_bars=None if max_empty_bars < 0 else max_empty_bars,
                max_windows_per_piece=max_windows_per_piece,
            )
        except (BuildError, SourceError, UnknownRepresentationError) as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(1) from None
    _print_manifest(out, manifest)


def _print_manifest(out: Path, manifest: dict) -> None:
    table = Table(title=f"{out} — {manifest['representation']['name']}, {manifest['bars']} bars")
    for column in ("split", "windows", "pieces"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, counts in manifest["splits"].items():
        table.add_row(split, str(counts["windows"]), str(counts["pieces"]))
    Console().print(table)
    sources = Table(title="what the windows hold, per source")
    for column in ("source", "pieces", "sped up", "windows", "onsets/bar", "hold share"):
        sources.add_column(column, justify="left" if column == "source" else "right")
    rows = list(manifest["statistics"]["sources"].items()) + [("all", manifest["statistics"]["all"])]
    for name, stats in rows:
        sources.add_row(name, str(stats.get("pieces", manifest["pieces"])), str(stats.get("pieces_sped_up", "")),
                        str(stats["windows"]), _number(stats["onsets_per_bar"]), _number(stats["hold_share"]))
    Console().print(sources)
    skipped = manifest["skipped"]
    if skipped["count"]:
        console.print(f"[yellow]skipped {skipped['count']} unreadable files/tunes[/yellow], first reasons:")
        for reason in skipped["reasons"][:5]:
            console.print(f"  - {reason}")
    console.print(f"dropped windows: {manifest['windows_dropped']}; built in {manifest['build_seconds']} s")


def _number(value) -> str:
    return "–" if value is None else f"{value:.3g}"


@app.command()
def replay(
    session: Path = typer.Argument(..., help="The folder `musicbridge serve --log-session DIR` wrote."),
    model: list[str] = typer.Option([], "--model", "-m", help="A model folder (or shipped model name) that may hold "
                                    "a model the session was played with (repeatable; by default each is looked "
                                    "for where the daemon loaded it)."),
    index: list[Path] = typer.Option([], "--index", help="A library index file that may be the one the session's "
                                     "similar answers came from (repeatable; by default looked for where the daemon "
                                     "loaded it; found by its sha256, else those answers are skipped)."),
    out: Path = typer.Option(None, "-o", "--out", help="Folder for replay.mid, replay.json and replay.png "
                             "(default: the session folder)."),
    png: bool = typer.Option(True, "--png/--no-png", help="Write the piano roll replay.png (needs matplotlib: "
                             "pip install 'musicbridge\\[plot]')."),
) -> None:
    """Make every answer of a logged session again, offline, and check each is bit-identical (tokens and z);
    write the session's input and replayed output as MIDI and as a piano roll. Exits 1 when an answer differs."""
    from rich.markup import escape

    from musicbridge.cli_errors import require_extra
    from musicbridge.replay import ReplayError, check_line, replay_session, write_outputs

    if png:
        require_extra("matplotlib", "--png", console)
    try:
        result = replay_session(session, model, [str(file) for file in index])
    except ReplayError as error:
        fail(console, str(error))
    for check in result.checks:
        print(check_line(check))
    for reason in result.skipped:
        console.print(f"[yellow]skipped[/yellow] {escape(reason)}", highlight=False)
    if result.dropped:
        console.print(f"[yellow]the daemon's log dropped {result.dropped} events[/yellow] (its writer fell behind)")
    try:
        written = write_outputs(result, out or session, png)
    except OSError as error:
        fail(console, f"cannot write the replay's files in {out or session} ({error.strerror or error}); choose "
                      f"another folder with --out")
    for path in written:
        console.print(f"wrote {escape(str(path))}")
    different = len(result.different)
    console.print(f"{len(result.checks)} answers replayed: {len(result.checks) - different} equal, {different} "
                  f"different" + (f"; {len(result.skipped)} lines skipped" if result.skipped else ""))
    if different:
        raise typer.Exit(USER_ERROR)


def _register_stage_commands() -> None:
    for module_name in STAGE_COMMANDS:
        importlib.import_module(module_name).register(app)


_register_stage_commands()
use_plain_help(app)  # after every stage has added its commands, so theirs get it too


def main() -> None:
    try:
        app()
    except ModuleNotFoundError as error:  # an optional dependency (torch, matplotlib, …) this install lacks
        message = missing_extra(error)
        if message is None:
            raise
        print_error(console, message)
        raise SystemExit(USER_ERROR) from None


if __name__ == "__main__":
    main()
