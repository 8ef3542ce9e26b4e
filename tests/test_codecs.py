import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from musicbridge.codecs import DRUM_CLASSES, OutOfRangeError, UnknownRepresentationError, get_codec
from musicbridge.notes import Note, NoteSequence

MELODY = get_codec("melody")
DRUMS = get_codec("drums")


@st.composite
def monophonic_melodies(draw, steps=32):
    """Non-overlapping notes on the 16th grid, inside the window."""
    notes, step = [], draw(st.integers(0, 4))
    while step < steps:
        length = draw(st.integers(1, 8))
        end = min(step + length, steps)
        notes.append(Note(draw(st.integers(21, 108)), 100, step / 4, end / 4))
        step = end + draw(st.integers(0, 4))
    return notes


@given(monophonic_melodies())
def test_melody_round_trip(notes):
    tokens = MELODY.encode(notes, 32)
    assert tokens.shape == (32,) and tokens.max() < MELODY.vocab_size
    decoded = MELODY.decode(tokens)
    assert [(n.pitch, n.start, n.end) for n in decoded] == [(n.pitch, n.start, n.end) for n in notes]


@given(monophonic_melodies())
def test_melody_round_trip_of_unquantised_input_equals_the_quantised_input(notes):
    jittered = [Note(n.pitch, 100, n.start + 0.03, n.end - 0.02) for n in notes]
    quantized = NoteSequence(jittered).quantize().notes
    assert MELODY.decode(MELODY.encode(jittered, 32)) == MELODY.decode(MELODY.encode(quantized, 32))
    assert [(n.pitch, n.start, n.end) for n in MELODY.decode(MELODY.encode(jittered, 32))] == [
        (n.pitch, n.start, n.end) for n in notes
    ]


@given(st.lists(st.tuples(st.integers(0, 31), st.sampled_from([c[1] for c in DRUM_CLASSES])), max_size=60))
def test_drums_round_trip(hits):
    notes = sorted({Note(pitch, 100, step / 4, step / 4 + 0.25, 9, 0, True) for step, pitch in hits}, key=lambda n: (n.start, n.pitch))
    decoded = DRUMS.decode(DRUMS.encode(notes, 32))
    assert sorted((n.pitch, n.start) for n in decoded) == sorted((n.pitch, n.start) for n in notes)
    assert all(n.is_drum and n.end - n.start == 0.25 for n in decoded)


def test_melody_token_layout():
    tokens = MELODY.encode([Note(21, 100, 0, 0.5), Note(108, 100, 1, 1.25)], 16)
    assert list(tokens[:6]) == [2, 0, 1, 0, 89, 1]
    assert MELODY.vocab_size == 90 and DRUMS.vocab_size == 512


def test_melody_reduction_takes_the_highest_onset():
    chord = [Note(60, 100, 0, 1), Note(67, 100, 0, 1), Note(64, 100, 0, 2)]
    assert [(n.pitch, n.end) for n in MELODY.decode(MELODY.encode(chord, 16))] == [(67, 1.0)]


def test_drums_map_general_midi_aliases():
    tokens = DRUMS.encode([Note(35, 100, 0, 0.25, 9, 0, True), Note(40, 100, 0, 0.25, 9, 0, True)], 16)
    assert tokens[0] == 0b11  # acoustic bass drum → kick, electric snare → snare


def test_out_of_range_and_octave_fitting():
    with pytest.raises(OutOfRangeError):
        MELODY.encode([Note(110, 100, 0, 1)], 16)
    fitted = MELODY.fit_octaves([Note(110, 100, 0, 1), Note(100, 100, 1, 2)])
    assert [n.pitch for n in fitted] == [98, 88]
    assert MELODY.fit_octaves([Note(10, 100, 0, 1), Note(120, 100, 1, 2)]) is None


def test_unknown_representation_is_refused_clearly():
    with pytest.raises(UnknownRepresentationError, match="version '7' is not known"):
        get_codec("melody", "7")
    with pytest.raises(UnknownRepresentationError, match="known: drums, melody"):
        get_codec("chords")


def test_decode_of_empty_and_onset_masks():
    assert MELODY.decode(np.zeros(32, dtype=np.int64)) == []
    assert MELODY.onsets(np.array([0, 1, 2, 89])).tolist() == [False, False, True, True]
