"""Scales for the scale lock: a spec → a pitch-class set, its name, and the sampler's logit mask for a codec.

    parse_scale("D:dorian")     → D dorian (root 2, pitch classes {0, 2, 4, 5, 7, 9, 11})
    parse_scale("A harmonic minor"), parse_scale("0,2,4,7,9"), parse_scale("C,D,E,G,A")
    parse_scale("off")          → None: no lock ("", "none" too)
    logit_mask(codec, scale)    → (V,) float32, added to the sampler's logits before its argmax

A pitch-class set's first member is its root (only for naming it back: "2,4,5,7,9,11,0" is D dorian, the set
the Max for Live device sends for Live's song scale). The mask leaves hold and note-off alone, so every step
always has an allowed token and argmax never lands on a masked one. Torch-free: the runtime and the bridge use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

PITCH_CLASSES = 12
# Added to the logits of note-ons outside the scale: far below any logit + temperature · Gumbel noise, and
# finite (not -inf) so that sums stay numbers and argmax never sees NaN; fp16 graphs round it to -inf, which
# is still safe because hold and note-off are never masked.
LOCKED = np.float32(-1e9)
UNLOCK_WORDS = ("", "off", "none")
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
LETTERS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
ACCIDENTALS = {"#": 1, "♯": 1, "b": -1, "♭": -1}
# Semitones above the root. The order decides the name a set is given back (major before ionian).
MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),  # natural minor
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic_minor": (0, 2, 3, 5, 7, 9, 11),  # ascending ("jazz") melodic minor
    "major_pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),  # minor pentatonic + the flat fifth
    "chromatic": tuple(range(PITCH_CLASSES)),
    "ionian": (0, 2, 4, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
}
ROOTLESS = "chromatic"  # the one mode that is the same from every root: accepted without one
ALIASES = {"natural_minor": "minor", "pentatonic": "major_pentatonic", "maj": "major", "min": "minor"}


class ScaleError(ValueError):
    """A scale spec that cannot be read, or a scale lock on a representation without pitches."""


@dataclass(frozen=True)
class Scale:
    root: int  # pitch class 0–11 (C = 0), the first degree
    pitch_classes: frozenset[int]

    @property
    def mode(self) -> str | None:
        """The first known mode with exactly these pitch classes above the root (None for other sets)."""
        intervals = {(pc - self.root) % PITCH_CLASSES for pc in self.pitch_classes}
        return next((name for name, steps in MODES.items() if set(steps) == intervals), None)

    @property
    def degrees(self) -> list[int]:
        """The pitch classes in scale order: the root, then upwards."""
        return sorted(self.pitch_classes, key=lambda pc: (pc - self.root) % PITCH_CLASSES)

    @property
    def spec(self) -> str:
        """A spec parse_scale reads back into this scale: "D:dorian", else the pitch classes root first."""
        mode = self.mode
        if mode is not None:
            return f"{NOTE_NAMES[self.root]}:{mode}"
        return ",".join(str(pc) for pc in self.degrees)

    @property
    def name(self) -> str:
        """For people: "D dorian", "A harmonic minor", else the note names root first ("C D E F#")."""
        mode = self.mode
        if mode is not None:
            return f"{NOTE_NAMES[self.root]} {mode.replace('_', ' ')}"
        return " ".join(NOTE_NAMES[pc] for pc in self.degrees)

    def __str__(self) -> str:
        return self.name

    def contains(self, pitches) -> np.ndarray:
        """Whether each MIDI pitch (array-like) is in the scale."""
        table = np.zeros(PITCH_CLASSES, bool)
        table[list(self.pitch_classes)] = True
        return table[np.asarray(pitches, dtype=np.int64) % PITCH_CLASSES]


def _known() -> str:
    return ", ".join(MODES)


def _pitch_class(word: str) -> int | None:
    """0–11 from "7" or a note name ("F#", "bb", "E♭"); None when it is neither."""
    if word.isdigit():
        value = int(word)
        return value if value < PITCH_CLASSES else None
    letter = LETTERS.get(word[:1].lower())
    if letter is None or any(c not in ACCIDENTALS for c in word[1:]):
        return None
    return (letter + sum(ACCIDENTALS[c] for c in word[1:])) % PITCH_CLASSES


def _mode_key(words: str) -> str:
    key = re.sub(r"[\s_-]+", "_", words.strip().lower())
    return ALIASES.get(key, key)


def parse_scale(spec: str | None) -> Scale | None:
    """A Scale from "ROOT:MODE" / "ROOT MODE" or a pitch-class set ("0,2,4,7,9", "C,D,E,G,A"); None for
    "", "off", "none" (no lock). Raises ScaleError with what is accepted."""
    if spec is None or spec.strip().lower() in UNLOCK_WORDS:
        return None
    text = spec.strip()
    if ":" in text:
        root_word, _, mode_words = text.partition(":")
        return _root_and_mode(spec, root_word.strip(), mode_words)
    if _mode_key(text) in MODES:
        if _mode_key(text) == ROOTLESS:
            return _root_and_mode(spec, NOTE_NAMES[0], ROOTLESS)
        raise ScaleError(f"scale {spec!r} names a mode but no root: write it as D:{_mode_key(text)}")
    words = [w for w in re.split(r"[,\s]+", text) if w]
    if len(words) >= 2 and _mode_key(" ".join(words[1:])) in MODES:
        return _root_and_mode(spec, words[0], " ".join(words[1:]))
    if len(words) == 1 and "," not in text and not words[0].isdigit():
        if _pitch_class(words[0]) is not None:
            raise ScaleError(f"scale {spec!r} names a root but no mode: write {words[0]}:major (modes: "
                             f"{_known()}), or '{words[0]},' for that pitch class alone")
        raise ScaleError(f"unknown scale {spec!r}: write ROOT:MODE like D:dorian (modes: {_known()}), or pitch "
                         f"classes like 0,2,4,7,9 or C,D,E,G,A; 'off' unlocks")
    pitch_classes = [_pitch_class(w) for w in words]
    bad = [w for w, pc in zip(words, pitch_classes, strict=True) if pc is None]
    if bad:
        verb = "is" if len(bad) == 1 else "are"
        raise ScaleError(f"scale {spec!r}: {', '.join(repr(w) for w in bad)} {verb} not a pitch class (0–11 or a "
                         f"note name like F# or Bb) nor a mode; write ROOT:MODE like D:dorian (modes: {_known()}), "
                         f"or pitch classes like 0,2,4,7,9")
    return Scale(pitch_classes[0], frozenset(pitch_classes))


def _root_and_mode(spec: str, root_word: str, mode_words: str) -> Scale:
    root = _pitch_class(root_word)
    if root is None:
        raise ScaleError(f"scale {spec!r}: root {root_word!r} is not a note name (C, C#, Db, … B) or 0–11")
    mode = _mode_key(mode_words)
    if mode not in MODES:
        raise ScaleError(f"scale {spec!r}: unknown mode {mode_words.strip()!r}; known modes: {_known()}")
    return Scale(root, frozenset((root + step) % PITCH_CLASSES for step in MODES[mode]))


def as_scale(value: Scale | str | Iterable[int] | None) -> Scale | None:
    """A Scale from a Scale, a spec string or pitch classes (the first is the root); None stays None."""
    if value is None or isinstance(value, Scale):
        return value
    if isinstance(value, str):
        return parse_scale(value)
    pitch_classes = [int(pc) for pc in value]
    if not pitch_classes or any(not 0 <= pc < PITCH_CLASSES for pc in pitch_classes):
        raise ScaleError(f"a scale needs one or more pitch classes in 0–11, got {pitch_classes}")
    return Scale(pitch_classes[0], frozenset(pitch_classes))


def applies_to(codec) -> bool:
    """Whether the representation has pitched note-on tokens a scale can lock (melody yes, drums no)."""
    return all(hasattr(codec, name) for name in ("FIRST_NOTE_ON", "min_pitch", "max_pitch"))


def logit_mask(codec, scale: Scale | str | Iterable[int] | None) -> np.ndarray:
    """(V,) float32 added to the sampler's logits: LOCKED on note-ons outside the scale, 0 elsewhere (all 0 for
    no scale). Hold and note-off are never masked."""
    mask = np.zeros(codec.vocab_size, np.float32)
    scale = as_scale(scale)
    if scale is None:
        return mask
    if not applies_to(codec):
        raise ScaleError(f"the {codec.name} representation has no pitches to lock to a scale; use a scale with "
                         f"melody models only")
    pitches = np.arange(codec.min_pitch, codec.max_pitch + 1)
    mask[codec.FIRST_NOTE_ON + np.flatnonzero(~scale.contains(pitches))] = LOCKED
    return mask


def out_of_scale_onsets(codec, tokens, scale: Scale | str | Iterable[int]) -> np.ndarray:
    """Per row of tokens (…, T): how many note-ons fall outside the scale (what the lock guarantees is 0)."""
    tokens = np.asarray(tokens)
    pitches = tokens - codec.FIRST_NOTE_ON + codec.min_pitch
    return ((tokens >= codec.FIRST_NOTE_ON) & ~as_scale(scale).contains(pitches)).sum(axis=-1)
