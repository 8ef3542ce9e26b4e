"""Notes → a model's window (musicbridge.phrases): one rule for files (generate, capture/file) and live input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from musicbridge.bridge.capture import CaptureBuffer
from musicbridge.bridge.modes import window
from musicbridge.codecs import get_codec
from musicbridge.generate import phrase_tokens
from musicbridge.notes import Note, NoteSequence
from musicbridge.phrases import (
    FROM_END,
    FROM_START,
    TOO_WIDE_DROP,
    TOO_WIDE_ERROR,
    PhraseError,
    file_tokens,
    file_window,
    window_tokens,
)

MELODY, DRUMS = get_codec("melody"), get_codec("drums")
NOTE_ON = MELODY.FIRST_NOTE_ON - MELODY.min_pitch  # token of pitch p = p + NOTE_ON


def test_a_melody_in_range_is_read_as_played():
    tokens = window_tokens(MELODY, [Note(60, 90, 0, 1), Note(64, 90, 1, 2)], bars=1)
    assert tokens.shape == (16,) and tokens[0] == 60 + NOTE_ON and tokens[4] == 64 + NOTE_ON


def test_a_melody_out_of_range_is_moved_by_octaves():
    tokens = window_tokens(MELODY, [Note(110, 90, 0, 1), Note(100, 90, 1, 2)], bars=1)
    assert tokens[0] == 98 + NOTE_ON and tokens[4] == 88 + NOTE_ON  # an octave down, intervals kept


def test_a_melody_too_wide_is_dropped_live_and_refused_from_a_file():
    notes = [Note(10, 90, 0, 1), Note(60, 90, 1, 2), Note(120, 90, 2, 3)]
    live = window_tokens(MELODY, notes, bars=1, too_wide=TOO_WIDE_DROP)
    assert live[4] == 60 + NOTE_ON and live[0] == MELODY.HOLD and live[8] == MELODY.NOTE_OFF  # what fits stays
    with pytest.raises(PhraseError, match="range .*21–108"):
        window_tokens(MELODY, notes, bars=1, too_wide=TOO_WIDE_ERROR)


def test_onsets_after_the_window_neither_sound_nor_move_it():
    notes = [Note(60, 90, 0, 1), Note(120, 90, 4, 5)]  # the second starts in the next bar
    assert window_tokens(MELODY, notes, bars=1)[0] == 60 + NOTE_ON


def test_a_drum_model_reads_unflagged_live_notes_as_hits():
    tokens = window_tokens(DRUMS, [Note(36, 100, 0, 0.25), Note(38, 100, 1, 1.25)], bars=1)  # is_drum False
    assert tokens[0] == 1 and tokens[4] == 2  # kick, snare


def test_a_file_is_read_from_its_end_or_its_start():
    sequence = NoteSequence([Note(60, 90, 0, 1), Note(62, 90, 9, 10), Note(64, 90, 14, 15)])
    last = file_tokens(sequence, MELODY, 2, FROM_END)  # bars 3–4 (beats 8–16)
    assert last[4] == 62 + NOTE_ON and last[24] == 64 + NOTE_ON and (last[:4] == 0).all()
    first = file_tokens(sequence, MELODY, 2, FROM_START)  # bars 1–2: only the first note
    assert first[0] == 60 + NOTE_ON and (first[first >= MELODY.FIRST_NOTE_ON] == 60 + NOTE_ON).all()


def test_a_file_without_the_models_notes_is_a_phrase_error():
    drums_only = NoteSequence([Note(36, 100, 0, 0.25, 9, 0, True)])
    with pytest.raises(PhraseError, match="no pitched notes for a melody model"):
        file_window(drums_only, MELODY, 2, FROM_END)
    late = NoteSequence([Note(60, 90, 12, 13)])
    with pytest.raises(PhraseError, match="no pitched notes in the first 2 bars"):
        file_window(late, MELODY, 2, FROM_START)
    assert file_window(drums_only, DRUMS, 2, FROM_START)[0].pitch == 36


def test_generate_a_capture_file_and_live_capture_read_a_phrase_alike():
    """The three callers: generate's window, capture/file's window and the live capture of the same notes."""
    notes = [Note(60 + 12 * (k % 2) + k, 90, k * 0.5, k * 0.5 + 0.25) for k in range(16)]  # two bars of 8ths
    sequence = NoteSequence(notes)
    model = SimpleNamespace(codec=MELODY, bars=2, steps=32)
    capture = CaptureBuffer()
    for note in notes:
        capture.note_on(note.channel, note.pitch, note.velocity, note.start)
        capture.note_off(note.channel, note.pitch, note.end)
    live, _, _ = window(capture, MELODY, 2, 8.0)
    from_end = phrase_tokens(model, sequence)
    from_start = file_tokens(sequence, MELODY, 2, FROM_START)
    assert np.array_equal(from_end, from_start) and np.array_equal(from_end, live)
