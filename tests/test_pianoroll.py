"""The piano roll: every generated phrase in a colour of its own with a legend entry of that colour, the input in
its own blue, and whole-number pitches on the pitch axis."""

from __future__ import annotations

import matplotlib
import pytest

from musicbridge.notes import Note, NoteSequence
from musicbridge.pianoroll import INPUT_COLOUR, phrase_colours, pianoroll_figure

matplotlib.use("Agg")


def phrases(count: int, with_input: bool) -> NoteSequence:
    """One 2-bar phrase per instrument, all on one pitch: the narrowest pitch range a roll can have."""
    first = 0 if with_input else 1
    notes = [Note(60, 90, 8.0 * k, 8.0 * k + 1.0, instrument=k) for k in range(first, first + count)]
    return NoteSequence(notes)


@pytest.mark.parametrize(("count", "with_input"), [(3, True), (8, False), (17, True)])
def test_each_phrase_has_its_own_colour_and_legend_entry(count, with_input):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    sequence = phrases(count, with_input)
    figure = pianoroll_figure(sequence, "test")
    try:
        axes = figure.axes[0]
        generated = count - with_input
        bar_colours = [to_hex(collection.get_facecolor()[0]) for collection in axes.collections]
        assert len(bar_colours) == count  # one bar per phrase here
        assert len(set(bar_colours)) == count  # no two phrases (nor a phrase and the input) share a colour
        legend = axes.get_legend()
        labels = [text.get_text() for text in legend.get_texts()]
        assert labels == ["input"] * with_input + [f"generated {k}" for k in range(1, generated + 1)]
        assert [to_hex(handle.get_facecolor()) for handle in legend.legend_handles] == bar_colours
        assert (INPUT_COLOUR in bar_colours) == with_input
        ticks = axes.get_yticks()
        assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks)  # no 62.5 on a pitch axis
    finally:
        plt.close(figure)


def test_phrase_colours_are_distinct_and_never_the_input_colour():
    for count in (1, 5, 6, 8, 64):
        colours = phrase_colours(count)
        assert len(colours) == len(set(colours)) == count and INPUT_COLOUR not in colours
