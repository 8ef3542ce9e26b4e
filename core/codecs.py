"""Representations: named, versioned codecs between notes (in beats) and one integer token per 16th step.

The name and version travel into every dataset manifest, checkpoint and exported model, so the daemon decodes
with exactly the rules a model was trained with. Change the rules → bump the version.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from musicbridge.notes import DRUM_CHANNEL, Note

STEPS_PER_QUARTER = 4
STEPS_PER_BAR = 16  # a 4/4 bar; pieces in other meters are windowed in 4-beat units
BEATS_PER_BAR = STEPS_PER_BAR // STEPS_PER_QUARTER  # the bar every model counts in (answers start on its lines)
STEP_BEATS = 1 / STEPS_PER_QUARTER  # one step, a 16th, in beats


class UnknownRepresentationError(ValueError):
    """A representation name or version this musicbridge does not know."""


class OutOfRangeError(ValueError):
    """A pitch the representation cannot hold."""


def _step(beat: float) -> int:
    return int(round(beat * STEPS_PER_QUARTER))


def _step_count(notes: Sequence[Note], n_steps: int | None) -> int:
    if n_steps is not None:
        return n_steps
    last = max((_step(n.end) for n in notes), default=0)
    return -(-last // STEPS_PER_BAR) * STEPS_PER_BAR  # whole bars


@dataclass(frozen=True)
class MelodyCodec:
    """Monophonic melody, pitches 21–108: 0 = hold (no event), 1 = note-off, 2–89 = note-on of pitch 21–108.

    Monophonic reduction of polyphonic input: at each step the highest note starting there wins the onset and
    sounds until its own end or the next onset; notes that started earlier under it do not resurface.
    Callers pass one instrument's notes (drums never); `fit_octaves` moves a window into range by octaves.
    """

    name: str = "melody"
    version: str = "1"
    min_pitch: int = 21
    max_pitch: int = 108
    steps_per_bar: int = STEPS_PER_BAR
    HOLD = 0
    NOTE_OFF = 1
    FIRST_NOTE_ON = 2

    @property
    def vocab_size(self) -> int:
        return self.FIRST_NOTE_ON + self.max_pitch - self.min_pitch + 1

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "vocab_size": self.vocab_size, "steps_per_bar": self.steps_per_bar}

    def encode(self, notes: Iterable[Note], n_steps: int | None = None) -> np.ndarray:
        notes = [n for n in notes if not n.is_drum]
        n_steps = _step_count(notes, n_steps)
        onsets: dict[int, Note] = {}
        for note in notes:
            step = _step(note.start)
            if 0 <= step < n_steps and (step not in onsets or note.pitch > onsets[step].pitch):
                onsets[step] = note
        tokens = np.full(n_steps, self.HOLD, dtype=np.int64)
        sounding_until = -1  # step at which the current note ends
        for step in range(n_steps):
            note = onsets.get(step)
            if note is not None:
                if not self.min_pitch <= note.pitch <= self.max_pitch:
                    raise OutOfRangeError(f"pitch {note.pitch} outside {self.min_pitch}–{self.max_pitch}")
                tokens[step] = self.FIRST_NOTE_ON + note.pitch - self.min_pitch
                sounding_until = max(_step(note.end), step + 1)
            elif step == sounding_until:
                tokens[step] = self.NOTE_OFF
        return tokens

    def decode(self, tokens: Iterable[int], velocity: int = 100, channel: int = 0) -> list[Note]:
        notes: list[Note] = []
        pitch, start = None, 0
        tokens = [int(t) for t in tokens]
        for step, token in enumerate(tokens + [self.NOTE_OFF]):  # a final note-off closes a held note
            if token == self.HOLD:
                continue
            if pitch is not None:
                notes.append(Note(pitch, velocity, start / STEPS_PER_QUARTER, step / STEPS_PER_QUARTER, channel))
            pitch, start = (None, step) if token == self.NOTE_OFF else (token - self.FIRST_NOTE_ON + self.min_pitch, step)
        return notes

    def fit_octaves(self, notes: Sequence[Note]) -> list[Note] | None:
        """The notes moved by whole octaves into range, or None when their span is too wide."""
        pitches = [n.pitch for n in notes]
        if not pitches:
            return list(notes)
        low, high = min(pitches), max(pitches)
        if high - low > self.max_pitch - self.min_pitch:
            return None
        shift = 0
        while low + shift < self.min_pitch:
            shift += 12
        while high + shift > self.max_pitch:
            shift -= 12
        if low + shift < self.min_pitch:
            return None
        return [_transposed(n, shift) for n in notes] if shift else list(notes)

    def onsets(self, tokens: np.ndarray) -> np.ndarray:
        """Mask of steps holding a note-on."""
        return np.asarray(tokens) >= self.FIRST_NOTE_ON


# General MIDI drum notes → 9 classes (the mapping Magenta's drums_2bar models use).
DRUM_CLASSES: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    # (name, pitch written when decoding, every GM note that maps to the class)
    ("kick", 36, (36, 35)),
    ("snare", 38, (38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85)),
    ("closed_hihat", 42, (42, 44, 54, 68, 69, 70, 71, 73, 78, 80, 22)),
    ("open_hihat", 46, (46, 67, 72, 74, 79, 81, 26)),
    ("low_tom", 45, (45, 29, 41, 43, 61, 64, 84)),
    ("mid_tom", 48, (48, 47, 60, 63, 77, 86, 87)),
    ("high_tom", 50, (50, 30, 62, 76, 83)),
    ("crash", 49, (49, 52, 55, 57, 58)),
    ("ride", 51, (51, 53, 59, 82)),
)
_DRUM_CLASS_OF_PITCH = {pitch: index for index, (_, _, pitches) in enumerate(DRUM_CLASSES) for pitch in pitches}


@dataclass(frozen=True)
class DrumsCodec:
    """Drum hits: each step is the set of the 9 drum classes hit there, as a 9-bit number (512 categories).

    Unmapped drum notes are ignored; decoded hits last one step and use each class's canonical GM pitch.
    """

    name: str = "drums"
    version: str = "1"
    steps_per_bar: int = STEPS_PER_BAR

    @property
    def vocab_size(self) -> int:
        return 2 ** len(DRUM_CLASSES)

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "vocab_size": self.vocab_size, "steps_per_bar": self.steps_per_bar}

    def encode(self, notes: Iterable[Note], n_steps: int | None = None) -> np.ndarray:
        notes = [n for n in notes if n.is_drum and n.pitch in _DRUM_CLASS_OF_PITCH]
        n_steps = _step_count(notes, n_steps)
        tokens = np.zeros(n_steps, dtype=np.int64)
        for note in notes:
            step = _step(note.start)
            if 0 <= step < n_steps:
                tokens[step] |= 1 << _DRUM_CLASS_OF_PITCH[note.pitch]
        return tokens

    def decode(self, tokens: Iterable[int], velocity: int = 100, channel: int = DRUM_CHANNEL) -> list[Note]:
        notes = []
        for step, token in enumerate(int(t) for t in tokens):
            for index, (_, pitch, _) in enumerate(DRUM_CLASSES):
                if token >> index & 1:
                    start = step / STEPS_PER_QUARTER
                    notes.append(Note(pitch, velocity, start, start + 1 / STEPS_PER_QUARTER, channel, 0, True))
        return notes

    def onsets(self, tokens: np.ndarray) -> np.ndarray:
        """Mask of steps with at least one hit."""
        return np.asarray(tokens) > 0


Codec = MelodyCodec | DrumsCodec
CODECS: dict[str, Codec] = {codec.name: codec for codec in (MelodyCodec(), DrumsCodec())}


def get_codec(name: str, version: str | None = None) -> Codec:
    """The codec called `name`; with `version`, refuse rules this musicbridge does not have."""
    codec = CODECS.get(name)
    if codec is None:
        raise UnknownRepresentationError(f"unknown representation {name!r}; known: {', '.join(sorted(CODECS))}")
    if version is not None and str(version) != codec.version:
        raise UnknownRepresentationError(
            f"representation {name!r} version {version!r} is not known to this musicbridge (it has version "
            f"{codec.version!r}); use the musicbridge release the model or dataset was made with, or rebuild it"
        )
    return codec


def codec_from_description(description: dict) -> Codec:
    """The codec a manifest, checkpoint or exported model names ({"name", "version", ...})."""
    try:
        return get_codec(description["name"], description["version"])
    except (KeyError, TypeError) as error:
        raise UnknownRepresentationError(f"no representation name/version in {description!r}") from error


def _transposed(note: Note, semitones: int) -> Note:
    return Note(note.pitch + semitones, note.velocity, note.start, note.end, note.channel, note.program, note.is_drum, note.instrument)
