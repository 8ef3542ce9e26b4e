"""A piano-roll picture of a NoteSequence: the input in one colour, each generated phrase in another, bar lines."""

from __future__ import annotations

import os
from pathlib import Path

from musicbridge.notes import NoteSequence

INPUT_COLOUR = "#4a6fa5"
GENERATED_COLOURS = ("#e07a1f", "#2a9d8f", "#c44569", "#8e7dbe", "#6a994e")


def save_pianoroll(sequence: NoteSequence, path: str | os.PathLike, title: str = "", beats_per_bar: float = 4.0) -> Path:
    """Write a PNG; instrument 0 is the input, instruments 1.. are generated phrases."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError as error:
        raise RuntimeError("--png needs matplotlib: pip install 'musicbridge[plot]'") from error
    notes = sequence.notes
    end = max(sequence.duration, beats_per_bar)
    figure, axes = plt.subplots(figsize=(max(8.0, min(24.0, end / 2)), 4.5), dpi=110)
    for note in notes:
        colour = INPUT_COLOUR if note.instrument == 0 else GENERATED_COLOURS[(note.instrument - 1) % len(GENERATED_COLOURS)]
        axes.broken_barh([(note.start, note.end - note.start)], (note.pitch - 0.4, 0.8), facecolors=colour, edgecolor="black", linewidth=0.3)
    bar = 0.0
    while bar <= end + 1e-9:
        axes.axvline(bar, color="#888888", linewidth=0.8 if bar % (4 * beats_per_bar) else 1.6, zorder=0)
        bar += beats_per_bar
    pitches = [n.pitch for n in notes] or [60]
    axes.set_ylim(min(pitches) - 2, max(pitches) + 2)
    axes.set_xlim(0, end)
    axes.set_xlabel("beats (bar lines every 4)")
    axes.set_ylabel("MIDI pitch")
    axes.set_title(title)
    generated = sorted({n.instrument for n in notes if n.instrument > 0})
    handles = [Patch(color=INPUT_COLOUR, label="input")] if any(n.instrument == 0 for n in notes) else []
    handles += [Patch(color=GENERATED_COLOURS[(i - 1) % len(GENERATED_COLOURS)], label=f"generated {i}") for i in generated[:5]]
    if handles:
        axes.legend(handles=handles, loc="upper right", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
