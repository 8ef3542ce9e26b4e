"""A piano-roll picture of a NoteSequence: the input in one colour, each generated phrase in its own, bar lines.

matplotlib is the `plot` extra; the CLI checks for it (musicbridge.cli_errors.require_extra) before it writes
anything, so this module imports it only when it draws.
"""

from __future__ import annotations

import colorsys
import os
from pathlib import Path

from musicbridge.notes import NoteSequence

INPUT_COLOUR = "#4a6fa5"
GENERATED_COLOURS = ("#e07a1f", "#2a9d8f", "#c44569", "#8e7dbe", "#6a994e")  # hand-picked for up to five phrases
# More phrases than that (generate sample -n 8, a long interpolation): hues spread evenly around the wheel,
# starting past the input's blue so none is mistaken for it, at a saturation and value that read on white.
SATURATION, VALUE = 0.75, 0.8
LEGEND_ROWS = 16  # entries per legend column: 64 phrases make four columns beside the roll, not one off the page
PITCH_MARGIN = 2  # semitones of air above the highest and below the lowest note


def phrase_colours(count: int) -> list[str]:
    """`count` distinct colours, one per generated phrase: the hand-picked five, or evenly spaced hues."""
    if count <= len(GENERATED_COLOURS):
        return list(GENERATED_COLOURS[:count])
    input_hue = colorsys.rgb_to_hsv(*(int(INPUT_COLOUR[i:i + 2], 16) / 255 for i in (1, 3, 5)))[0]
    hues = ((input_hue + (k + 1) / (count + 1)) % 1.0 for k in range(count))  # the input's hue is the gap
    rgb = (colorsys.hsv_to_rgb(hue, SATURATION, VALUE) for hue in hues)
    return ["#" + "".join(f"{round(channel * 255):02x}" for channel in colour) for colour in rgb]


def pianoroll_figure(sequence: NoteSequence, title: str = "", beats_per_bar: float = 4.0):
    """The piano roll as a matplotlib Figure; instrument 0 is the input, instruments 1.. are generated phrases,
    each in its own colour with its own legend entry."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    notes = sequence.notes
    end = max(sequence.duration, beats_per_bar)
    generated = sorted({n.instrument for n in notes if n.instrument > 0})
    colours = {0: INPUT_COLOUR} | dict(zip(generated, phrase_colours(len(generated)), strict=True))
    figure, axes = plt.subplots(figsize=(max(8.0, min(24.0, end / 2)), 4.5), dpi=110)
    for note in notes:
        axes.broken_barh([(note.start, note.end - note.start)], (note.pitch - 0.4, 0.8),
                         facecolors=colours[note.instrument], edgecolor="black", linewidth=0.3)
    bar = 0.0
    while bar <= end + 1e-9:
        axes.axvline(bar, color="#888888", linewidth=0.8 if bar % (4 * beats_per_bar) else 1.6, zorder=0)
        bar += beats_per_bar
    pitches = [n.pitch for n in notes] or [60]
    axes.set_ylim(min(pitches) - PITCH_MARGIN, max(pitches) + PITCH_MARGIN)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # MIDI pitches are whole numbers: no 62.5
    axes.set_xlim(0, end)
    axes.set_xlabel(f"beats (bar lines every {beats_per_bar:g})")
    axes.set_ylabel("MIDI pitch")
    axes.set_title(title)
    handles = [Patch(color=INPUT_COLOUR, label="input")] if any(n.instrument == 0 for n in notes) else []
    handles += [Patch(color=colours[i], label=f"generated {i}") for i in generated]
    if handles:
        columns = -(-len(handles) // LEGEND_ROWS)
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, ncols=columns,
                    borderaxespad=0.0)
    figure.tight_layout()
    return figure


def save_pianoroll(sequence: NoteSequence, path: str | os.PathLike, title: str = "", beats_per_bar: float = 4.0) -> Path:
    """Write the piano roll as a PNG; returns its path."""
    import matplotlib.pyplot as plt

    figure = pianoroll_figure(sequence, title, beats_per_bar)
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
