"""`musicbridge generate continue|interpolate|sample`: the models on MIDI files, offline, no torch."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

DEFAULT_MODEL = "mel_2bar"
console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines: paths and errors are not broken

generate_app = typer.Typer(help="Generate MIDI files offline with an exported or shipped model.", no_args_is_help=True)

MODEL = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Shipped model name or exported model directory.")
TEMPERATURE = typer.Option(1.0, min=0.0, max=5.0, help="Sampling temperature (0 = greedy).")
SEED = typer.Option(None, help="Random seed, for repeatable output.")
PNG = typer.Option(False, "--png", help="Also write a piano-roll PNG beside the MIDI file.")


def _load(model: str):
    from musicbridge.runtime import ModelLoadError, load_model

    try:
        return load_model(model)
    except ModelLoadError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None


def _read(path: Path):
    from musicbridge.notes import MidiFileError, NoteSequence

    try:
        return NoteSequence.from_midi(path)
    except (MidiFileError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None


def _write(sequence, out: Path, png: bool, title: str) -> None:
    sequence.save(out)
    console.print(f"wrote {out} ({len(sequence.notes)} notes)")
    if png:
        from musicbridge.pianoroll import save_pianoroll

        picture = save_pianoroll(sequence, out.with_suffix(".png"), title)
        console.print(f"wrote {picture}")


def _run(make, *args, **kwargs):
    from musicbridge.generate import GenerateError

    try:
        return make(*args, **kwargs)
    except GenerateError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None


@generate_app.command("continue")
def continue_command(
    midi_in: Path = typer.Argument(..., exists=True, dir_okay=False, help="MIDI file whose last bars are continued."),
    out: Path = typer.Option(..., "-o", "--out", help="MIDI file to write (input + answer)."),
    bars: int = typer.Option(0, min=0, help="Bars to generate (0 = the model's length)."),
    temperature: float = TEMPERATURE,
    variations: int = typer.Option(1, min=1, max=16, help="Answers to write, one after another."),
    novelty: float = typer.Option(1.0, min=0.0, max=4.0, help="Scale of σ when drawing z around the input's μ."),
    seed: int = SEED,
    model: str = MODEL,
    png: bool = PNG,
) -> None:
    """Continue the last bars of a MIDI file."""
    from musicbridge.generate import continue_sequence

    loaded = _load(model)
    result = _run(continue_sequence, loaded, _read(midi_in), bars or None, temperature, variations, novelty, seed)
    _write(result, out, png, f"{midi_in.name} → continue ({model}, T={temperature})")


@generate_app.command("interpolate")
def interpolate_command(
    first: Path = typer.Argument(..., exists=True, dir_okay=False, help="MIDI file A (its last bars)."),
    second: Path = typer.Argument(..., exists=True, dir_okay=False, help="MIDI file B (its last bars)."),
    out: Path = typer.Option(..., "-o", "--out", help="MIDI file to write: A, the path, B."),
    steps: int = typer.Option(5, min=1, max=64, help="Phrases between A and B."),
    model: str = MODEL,
    png: bool = PNG,
) -> None:
    """Morph from one phrase to another along the slerp between their latent codes."""
    from musicbridge.generate import interpolate_sequences

    loaded = _load(model)
    result = _run(interpolate_sequences, loaded, _read(first), _read(second), steps)
    _write(result, out, png, f"{first.name} → {second.name} ({steps} steps, {model})")


@generate_app.command("sample")
def sample_command(
    out: Path = typer.Option(..., "-o", "--out", help="MIDI file to write."),
    n: int = typer.Option(4, "-n", min=1, max=64, help="Phrases to sample."),
    temperature: float = TEMPERATURE,
    seed: int = SEED,
    model: str = MODEL,
    png: bool = PNG,
) -> None:
    """Sample new phrases from the model's prior."""
    from musicbridge.generate import sample_sequences

    result = sample_sequences(_load(model), n, temperature, seed)
    _write(result, out, png, f"{n} samples ({model}, T={temperature})")


def register(app: typer.Typer) -> None:
    app.add_typer(generate_app, name="generate")
