"""Offline generation on MIDI files: continue a phrase, interpolate between two, or sample new ones.

Every function takes a runtime `Model` and returns a NoteSequence that holds the input (instrument 0) and what
the model made (instrument 1, 2, …), laid out one phrase after another, each on a bar line. `scale` (a
musicbridge.scales spec or Scale; None = free) locks what the model writes to a scale; `attributes` ({name: α},
musicbridge.attributes) moves every z the model decodes along its attribute vectors.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from musicbridge.codecs import BEATS_PER_BAR
from musicbridge.notes import Note, NoteSequence
from musicbridge.phrases import FROM_END, file_tokens

INPUT_INSTRUMENT = 0


def phrase_tokens(model, sequence: NoteSequence) -> np.ndarray:
    """The last `model.bars` bars of `sequence` as tokens: the window the model is given (musicbridge.phrases;
    a PhraseError when the input has nothing the model reads or a melody too wide for it)."""
    return file_tokens(sequence, model.codec, model.bars, FROM_END)


def _place(model, tokens: np.ndarray, start_beat: float, instrument: int, velocity: int = 96) -> list[Note]:
    return [
        replace(n, start=n.start + start_beat, end=n.end + start_beat, instrument=instrument)
        for n in model.codec.decode(tokens, velocity=velocity)
    ]


def _bar_after(sequence: NoteSequence) -> float:
    return math.ceil(sequence.duration / BEATS_PER_BAR - 1e-9) * BEATS_PER_BAR


def _input_part(sequence: NoteSequence) -> list[Note]:
    return [replace(n, instrument=INPUT_INSTRUMENT) for n in sequence.notes]


def continue_sequence(
    model, sequence: NoteSequence, bars: int | None = None, temperature: float = 1.0, variations: int = 1,
    novelty: float = 1.0, seed: int | None = None, scale=None, attributes=None,
) -> NoteSequence:
    """The input, then `bars` bars of answer per variation (one variation after another).

    Answers longer than the model chain phrases: each is the model's answer to the phrase before it.
    """
    bars = bars or model.bars
    tokens = model.continue_(phrase_tokens(model, sequence), bars, temperature, variations, novelty, seed,
                             scale=scale, attributes=attributes)
    start = _bar_after(sequence)
    notes = _input_part(sequence)
    for variation, row in enumerate(tokens):
        notes += _place(model, row, start + variation * bars * BEATS_PER_BAR, 1 + variation)
    return NoteSequence(notes, list(sequence.tempos), sequence.time_signature, sequence.ppq)


def interpolation_path(model, first: NoteSequence, second: NoteSequence, steps: int = 5, scale=None) -> np.ndarray:
    """(steps + 2, T): A's window itself, the `steps` phrases decoded (greedy) from the slerp between μ(A) and
    μ(B), B's window itself."""
    a, b = phrase_tokens(model, first), phrase_tokens(model, second)
    return model.interpolate(a, b, steps + 2, scale=scale)


def path_sequence(model, path: np.ndarray, template: NoteSequence) -> NoteSequence:
    """An interpolation path (n, T) one phrase after another: its ends (A and B) as the input instrument, each
    point between on its own instrument; tempo and meter from `template`."""
    phrase_beats = model.bars * BEATS_PER_BAR
    notes = []
    for index, row in enumerate(path):
        instrument = INPUT_INSTRUMENT if index in (0, len(path) - 1) else index
        notes += _place(model, row, index * phrase_beats, instrument)
    return NoteSequence(sorted(notes, key=lambda n: n.start), list(template.tempos), template.time_signature,
                        template.ppq)


def interpolate_sequences(model, first: NoteSequence, second: NoteSequence, steps: int = 5,
                          scale=None) -> NoteSequence:
    """A's window, the `steps` phrases of the slerp from A to B, then B's window — one after another."""
    return path_sequence(model, interpolation_path(model, first, second, steps, scale), first)


def sample_sequences(model, n: int = 4, temperature: float = 1.0, seed: int | None = None,
                     scale=None, attributes=None) -> NoteSequence:
    """`n` phrases from the prior, one after another."""
    tokens = model.sample_prior(n, temperature=temperature, seed=seed, scale=scale, attributes=attributes)
    phrase_beats = model.bars * BEATS_PER_BAR
    notes = [note for index, row in enumerate(tokens) for note in _place(model, row, index * phrase_beats, 1 + index)]
    return NoteSequence(notes)
