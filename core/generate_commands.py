"""`musicbridge generate continue|interpolate|sample`: the models on MIDI files, offline, no torch."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from musicbridge import DEFAULT_MODEL
from musicbridge.cli_errors import fail, require_extra

console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines: paths and errors are not broken

generate_app = typer.Typer(help="Generate MIDI files offline with an exported or shipped model.", no_args_is_help=True)

MODEL = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Shipped model name or exported model directory.")
TEMPERATURE = typer.Option(1.0, min=0.0, max=5.0, help="Sampling temperature (0 = greedy).")
SEED = typer.Option(None, help="Random seed, for repeatable output.")
PNG = typer.Option(False, "--png", help="Also write a piano-roll PNG beside the MIDI file (needs matplotlib: "
                   "pip install 'musicbridge[plot]').")
OUT_HELP = "(its folder is created when missing)"
SCALE = typer.Option(None, help="Lock what the model writes to a scale: ROOT:MODE (D:dorian, A:minor, "
                     "C:major_pentatonic, E:blues, …) or pitch classes (0,2,4,7,9 or C,D,E,G,A).")
ATTRIBUTE = typer.Option(None, "--attribute", "-a", help="Move every z along an attribute vector: NAME=α, repeatable "
                         "(density, register, range, stepwise; e.g. density=+1.0 register=-0.5; about -3..+3). Needs "
                         "a model exported with --data (docs/latent.md).")


def _load(model: str):
    from musicbridge.runtime import ModelLoadError, load_model

    try:
        return load_model(model)
    except ModelLoadError as error:
        fail(console, str(error))


def _scale(spec: str | None, model):
    """The Scale of --scale for this model (None without one); a clear error for a bad spec or a drum model."""
    from musicbridge.scales import ScaleError, applies_to, parse_scale

    try:
        scale = parse_scale(spec)
    except ScaleError as error:
        raise typer.BadParameter(str(error), param_hint="--scale") from None
    if scale is not None and not applies_to(model.codec):
        fail(console, f"--scale locks pitches, and a {model.codec.name} model has none; leave --scale out or use a "
                      f"melody model")
    return scale


def _attributes(specs: list[str] | None, model) -> dict[str, float]:
    """{name: α} of the --attribute options, checked against the vectors of `model` (the model whose codes they
    move); a sentence with the fix for a bad spec, a name given twice, an unknown name or a model without vectors."""
    from musicbridge.attributes import knobs, parse_attribute

    attributes: dict[str, float] = {}
    for spec in specs or ():
        try:
            name, alpha = parse_attribute(spec)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--attribute") from None
        if name in attributes:
            raise typer.BadParameter(f"{name} is given twice; give each attribute once", param_hint="--attribute")
        attributes[name] = alpha
    try:
        knobs(attributes, model.attributes)
    except ValueError as error:
        fail(console, f"--attribute: {error}")
    return attributes


def distance_lines(to_a, to_b, phrase_steps: int) -> list[str]:
    """The Hamming distances along an interpolation path as three aligned lines: phrase, to A, to B."""
    labels = ["A", *(str(k) for k in range(1, len(to_a) - 1)), "B"]
    width = max(4, len(str(phrase_steps)) + 2)
    rows = [("phrase", labels), ("to A", to_a), ("to B", to_b)]
    return [f"{title:<8}" + "".join(f"{value!s:>{width}}" for value in values) for title, values in rows]


def _read(path: Path):
    from musicbridge.notes import MidiFileError, NoteSequence

    try:
        return NoteSequence.from_midi(path)
    except (MidiFileError, FileNotFoundError) as error:
        fail(console, str(error))


def _check_png(png: bool) -> None:
    """--png without matplotlib fails before the model runs or any file is written."""
    if png:
        require_extra("matplotlib", "--png", console)


def _write(sequence, out: Path, png: bool, title: str) -> None:
    existing = next(folder for folder in out.absolute().parents if folder.exists())
    if not existing.is_dir():
        fail(console, f"cannot write {out}: {existing} is a file, not a folder; choose another -o path")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # `-o answers/new.mid` into a folder that is not there yet
        sequence.save(out)
    except OSError as error:  # -o names a folder, no permission, a full disk
        fail(console, f"cannot write {out} ({error.strerror or error}); choose another -o path")
    console.print(f"wrote {out} ({len(sequence.notes)} notes)")
    if png:
        from musicbridge.pianoroll import save_pianoroll

        picture = save_pianoroll(sequence, out.with_suffix(".png"), title)
        console.print(f"wrote {picture}")


def _run(make, *args, **kwargs):
    from musicbridge.phrases import PhraseError

    try:
        return make(*args, **kwargs)
    except PhraseError as error:
        fail(console, str(error))


@generate_app.command("continue")
def continue_command(
    midi_in: Path = typer.Argument(..., exists=True, dir_okay=False, help="MIDI file whose last bars are continued."),
    out: Path = typer.Option(..., "-o", "--out", help=f"MIDI file to write: input + answer {OUT_HELP}."),
    bars: int = typer.Option(0, min=0, help="Bars to generate (0 = the model's length)."),
    temperature: float = TEMPERATURE,
    variations: int = typer.Option(1, min=1, max=16, help="Answers to write, one after another."),
    novelty: float = typer.Option(1.0, min=0.0, max=4.0, help="Scale of σ when drawing z around the input's μ."),
    seed: int = SEED,
    scale: str = SCALE,
    attribute: list[str] = ATTRIBUTE,
    model: str = MODEL,
    png: bool = PNG,
) -> None:
    """Continue the last bars of a MIDI file."""
    from musicbridge.generate import continue_sequence

    _check_png(png)
    loaded = _load(model)
    writer = loaded.continuation or loaded  # whose codes continue_ decodes
    if writer is not loaded and writer.attributes is None and any(a != 0 for a in _attributes(attribute, loaded).values()):
        fail(console, f"--attribute moves the codes of {model}'s continuation model, which has no attribute vectors; "
                      f"leave --attribute out, or use `generate sample`")
    attributes = _attributes(attribute, writer)
    result = _run(continue_sequence, loaded, _read(midi_in), bars or None, temperature, variations, novelty, seed,
                  _scale(scale, loaded), attributes)
    _write(result, out, png, f"{midi_in.name} → continue ({model}, T={temperature})")


@generate_app.command("interpolate")
def interpolate_command(
    first: Path = typer.Argument(..., exists=True, dir_okay=False, help="MIDI file A (its last bars)."),
    second: Path = typer.Argument(..., exists=True, dir_okay=False, help="MIDI file B (its last bars)."),
    out: Path = typer.Option(..., "-o", "--out", help=f"MIDI file to write: A, the path, B {OUT_HELP}."),
    steps: int = typer.Option(5, min=1, max=64, help="Phrases decoded between A and B, not counting them: the file "
                              "holds steps + 2 phrases, A first and B last."),
    scale: str = SCALE,
    model: str = MODEL,
    png: bool = PNG,
) -> None:
    """Morph from one phrase to another along the slerp between their latent codes: A itself, the phrases
    decoded between, B itself. Prints how many steps of each phrase differ from A and from B."""
    from musicbridge.generate import interpolation_path, path_sequence
    from musicbridge.runtime import path_distances

    _check_png(png)
    loaded = _load(model)
    a_sequence = _read(first)
    path = _run(interpolation_path, loaded, a_sequence, _read(second), steps, _scale(scale, loaded))
    title = f"{first.name} → {second.name} ({steps} steps, {model})"
    _write(path_sequence(loaded, path, a_sequence), out, png, title)
    to_a, to_b = path_distances(path, path[0], path[-1])
    console.print(f"steps (of {loaded.steps}) that differ from A and from B along the path:")
    for line in distance_lines(to_a.tolist(), to_b.tolist(), loaded.steps):
        console.print(line, markup=False, highlight=False)


@generate_app.command("sample")
def sample_command(
    out: Path = typer.Option(..., "-o", "--out", help=f"MIDI file to write {OUT_HELP}."),
    n: int = typer.Option(4, "-n", "--phrases", min=1, max=64, help="Phrases to sample."),
    temperature: float = TEMPERATURE,
    seed: int = SEED,
    scale: str = SCALE,
    attribute: list[str] = ATTRIBUTE,
    model: str = MODEL,
    png: bool = PNG,
) -> None:
    """Sample new phrases from the model's prior."""
    from musicbridge.generate import sample_sequences

    _check_png(png)
    loaded = _load(model)
    result = sample_sequences(loaded, n, temperature, seed, _scale(scale, loaded), _attributes(attribute, loaded))
    _write(result, out, png, f"{n} samples ({model}, T={temperature})")


def register(app: typer.Typer) -> None:
    app.add_typer(generate_app, name="generate")
