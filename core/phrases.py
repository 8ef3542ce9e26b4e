"""Notes → the tokens a model reads: one window of a model's length, from a file or from live input alike.

The offline `generate` commands and the daemon (live capture, /musicbridge/capture/file) all come through here,
so a phrase reads the same wherever it comes from. Where the callers differ, it is a parameter:
- which bars of a file: `FROM_END` (generate continues and interpolates from where a piece stops) or
  `FROM_START` (a capture slot is a file's opening phrase);
- a melody wider than the representation even after moving it by octaves: `TOO_WIDE_ERROR` (a file: say so)
  or `TOO_WIDE_DROP` (live input: the notes outside the range are left out, so the answer still comes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from musicbridge.codecs import BEATS_PER_BAR, STEPS_PER_QUARTER, Codec, OutOfRangeError
from musicbridge.notes import Note, NoteSequence

FROM_START, FROM_END = "start", "end"
TOO_WIDE_ERROR, TOO_WIDE_DROP = "error", "drop"


class PhraseError(ValueError):
    """Notes that cannot become a model's window: none of the kind the model reads, or a melody too wide."""


def window_tokens(codec: Codec, notes: Sequence[Note], bars: int, too_wide: str = TOO_WIDE_DROP) -> np.ndarray:
    """Notes of one window (beats from its start) → (bars · steps_per_bar,) int64 tokens.

    Onsets outside the window are not read. A drum model reads every note as a hit (live input carries no drum
    flag, whatever its channel); a melody that sticks out of the codec's range is moved by whole octaves into it.
    """
    n_steps = bars * codec.steps_per_bar
    notes = [n for n in notes if 0 <= round(n.start * STEPS_PER_QUARTER) < n_steps]
    if codec.name == "drums":
        return codec.encode([replace(n, is_drum=True) for n in notes], n_steps)
    try:
        return codec.encode(notes, n_steps)  # in range as played: never moved
    except OutOfRangeError:
        pass
    fitted = codec.fit_octaves(notes)
    if fitted is None:
        if too_wide == TOO_WIDE_ERROR:
            raise PhraseError(f"the phrase spans more than the {codec.name} representation's range "
                              f"({codec.min_pitch}–{codec.max_pitch}), even moved by octaves; leave out its lowest "
                              f"or highest notes")
        fitted = [n for n in notes if codec.min_pitch <= n.pitch <= codec.max_pitch]
    return codec.encode(fitted, n_steps)


def file_window(sequence: NoteSequence, codec: Codec, bars: int, bars_from: str) -> list[Note]:
    """The notes a `codec` model reads in `bars` bars at the start or the end of `sequence` (the end: up to the
    bar line after its last note), quantized and shifted so that the window starts at beat 0.

    A drum model reads the drums, a melody model every pitched instrument (the highest note at each onset wins).
    Notes begun before the window are not its onsets. PhraseError when there is nothing to read.
    """
    want_drums = codec.name == "drums"
    kind, other = ("drum", "melody") if want_drums else ("pitched", "drums")
    notes = [n for n in sequence.quantize(STEPS_PER_QUARTER).notes if n.is_drum == want_drums]
    if not notes:
        raise PhraseError(f"no {kind} notes for a {codec.name} model; give a file with some, or use a {other} model")
    if bars_from == FROM_END:
        end_bar = math.ceil(max(n.end for n in notes) / BEATS_PER_BAR - 1e-9)
        start = max(0, end_bar - bars) * BEATS_PER_BAR
    elif bars_from == FROM_START:
        start = 0
    else:
        raise ValueError(f"bars_from is {FROM_START!r} or {FROM_END!r}, not {bars_from!r}")
    end = start + bars * BEATS_PER_BAR
    window = [replace(n, start=n.start - start, end=n.end - start) for n in notes if start <= n.start < end]
    if not window:
        where = "first" if bars_from == FROM_START else "last"
        raise PhraseError(f"no {kind} notes in the {where} {bars} bars for a {codec.name} model; give a file whose "
                          f"{where} bars hold some")
    return window


def file_tokens(sequence: NoteSequence, codec: Codec, bars: int, bars_from: str) -> np.ndarray:
    """The tokens of a file's window (file_window → window_tokens; a melody too wide is an error)."""
    return window_tokens(codec, file_window(sequence, codec, bars, bars_from), bars, TOO_WIDE_ERROR)
