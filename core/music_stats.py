"""Musical statistics of melody token arrays (N, T): key fit, density, range, leaps, steps, repetition (torch-free).

Tokens are the `melody` codec's (0 hold, 1 note-off, 2..89 note-on of MIDI pitch 21..108, 16 steps per bar).
`phrase_stats` gives one value per phrase (NaN where undefined), `summarize` aggregates them into the plain
dict `musicbridge evaluate --music` prints; both are vectorised over phrases (10k phrases of 256 steps take
about a second). `key_fit` fits one melody's key.

Key fit (Krumhansl & Kessler 1982): the duration-weighted pitch-class histogram is correlated (Pearson) with
each of the 24 rotated key profiles; the best correlation names the key. A phrase is *out of key* when one of
its note-ons has a pitch class outside its best-fit key's scale: the major scale for a major key; for a minor
key the natural minor scale plus the raised 7th of harmonic minor (A minor allows A B C D E F G and G♯; the
raised 6th of melodic minor, F♯ in A minor, is out of key).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from musicbridge.codecs import STEPS_PER_BAR, MelodyCodec
from musicbridge.scales import MODES as SCALE_MODES
from musicbridge.scales import NOTE_NAMES, PITCH_CLASSES

_MELODY = MelodyCodec()
HOLD, NOTE_OFF, FIRST_NOTE_ON = _MELODY.HOLD, _MELODY.NOTE_OFF, _MELODY.FIRST_NOTE_ON
PITCH_OF_TOKEN = _MELODY.min_pitch - FIRST_NOTE_ON  # MIDI pitch = token + this (19)

# Krumhansl–Kessler probe-tone profiles, tonic first (C major / C minor).
MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
MAJOR, MINOR = "major", "minor"
MODES = (MAJOR, MINOR)  # key index k: mode MODES[k // 12], root k % 12
MAJOR_SCALE = SCALE_MODES["major"]
NATURAL_MINOR_SCALE = SCALE_MODES["minor"]
HARMONIC_MINOR_SEVENTH = 11  # the raised leading tone, allowed in minor keys
MINOR_KEY_PITCH_CLASSES = (*NATURAL_MINOR_SCALE, HARMONIC_MINOR_SEVENTH)

LEAP_SEMITONES = 7  # a leap is an interval larger than a perfect fifth
STEP_SEMITONES = 2  # a step is an interval of at most a whole tone (a repeated note included)
NGRAM = 4  # note-on pitch n-grams for pitch_ngram_repetition
MIN_KEY_NOTES = 2  # phrases with fewer note-ons get no key (one note fits every key that holds it)
_PITCH_BITS = 7  # MIDI pitches fit in 7 bits: an n-gram packs into NGRAM * 7 bits


class Key(NamedTuple):
    root: int  # pitch class of the tonic, 0 = C
    mode: str  # "major" or "minor"
    correlation: float  # Pearson correlation of the histogram with the key's profile, in [-1, 1]


def _standardised(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows minus their mean, scaled to unit norm, and whether each row had any spread."""
    centred = rows - rows.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(centred, axis=-1, keepdims=True)
    spread = norm[..., 0] > 1e-12
    return centred / np.where(norm > 1e-12, norm, 1.0), spread


def _key_profiles() -> np.ndarray:
    """(24, 12): the major profile rotated to each root, then the minor's."""
    return np.stack([np.roll(profile, root) for profile in (MAJOR_PROFILE, MINOR_PROFILE)
                     for root in range(PITCH_CLASSES)]).astype(np.float64)


def _key_scales() -> np.ndarray:
    """(24, 12) bool: the pitch classes each key allows (see the module docstring)."""
    scales = np.zeros((2 * PITCH_CLASSES, PITCH_CLASSES), dtype=bool)
    for mode, degrees in enumerate((MAJOR_SCALE, MINOR_KEY_PITCH_CLASSES)):
        for root in range(PITCH_CLASSES):
            scales[mode * PITCH_CLASSES + root, [(root + d) % PITCH_CLASSES for d in degrees]] = True
    return scales


_PROFILES, _ = _standardised(_key_profiles())
KEY_SCALES = _key_scales()


def fit_keys(histograms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best key index (N,) (0–11 major roots, 12–23 minor roots) and its correlation (N,) for pitch-class
    histograms (N, 12). A flat or empty histogram correlates 0 with every key and gets index 0 (C major)."""
    standardised, spread = _standardised(np.asarray(histograms, dtype=np.float64))
    correlations = standardised @ _PROFILES.T  # (N, 24)
    best = correlations.argmax(axis=1)
    return best, np.where(spread, correlations[np.arange(len(best)), best], 0.0)


def key_fit(pitches, durations=None) -> Key:
    """The best-fitting of the 24 major/minor keys for notes of MIDI `pitches` held for `durations` (any unit;
    default: equal), by Krumhansl–Kessler profile correlation of the duration-weighted pitch-class histogram."""
    pitches = np.asarray(pitches, dtype=np.int64).ravel()
    durations = np.ones(len(pitches)) if durations is None else np.asarray(durations, dtype=np.float64).ravel()
    if len(durations) != len(pitches):
        raise ValueError(f"pitches and durations differ in length: {len(pitches)} vs {len(durations)}")
    histogram = np.bincount(pitches % PITCH_CLASSES, weights=durations, minlength=PITCH_CLASSES)
    best, correlation = fit_keys(histogram[None, :])
    return Key(int(best[0] % PITCH_CLASSES), MODES[best[0] // PITCH_CLASSES], float(correlation[0]))


def key_name(key: Key) -> str:
    return f"{NOTE_NAMES[key.root]} {key.mode}"


# -- per phrase ---------------------------------------------------------------------------------------------


def _tokens(tokens) -> np.ndarray:
    array = np.asarray(tokens)
    array = array[None, :] if array.ndim == 1 else array
    if array.ndim != 2:
        raise ValueError(f"expected melody tokens of shape (phrases, steps), got {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= _MELODY.vocab_size):
        raise ValueError(f"melody tokens lie in [0, {_MELODY.vocab_size}), got {array.min()}..{array.max()}")
    return array.astype(np.int64, copy=False)


def _note_durations(tokens: np.ndarray) -> np.ndarray:
    """(N, T): at each note-on, the steps until the next note-on, note-off or the phrase's end; 0 elsewhere."""
    n, steps = tokens.shape
    position = np.arange(steps)
    events = np.where(tokens != HOLD, position, steps)  # (N, T) step of each event, T where none
    next_event = np.minimum.accumulate(events[:, ::-1], axis=1)[:, ::-1]  # first event at or after each step
    after = np.concatenate([next_event[:, 1:], np.full((n, 1), steps)], axis=1)  # first event after each step
    return np.where(tokens >= FIRST_NOTE_ON, after - position, 0)


def _sounding(tokens: np.ndarray) -> np.ndarray:
    """(N, T) bool: a note sounds at the step (the last event at or before it is a note-on)."""
    position = np.arange(tokens.shape[1])
    last_event = np.maximum.accumulate(np.where(tokens != HOLD, position, -1), axis=1)
    last_token = np.take_along_axis(tokens, np.maximum(last_event, 0), axis=1)
    return (last_event >= 0) & (last_token >= FIRST_NOTE_ON)


def _per_row(rows: np.ndarray, n: int, weights=None) -> np.ndarray:
    return np.bincount(rows, weights=weights, minlength=n).astype(np.float64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def _bar_repetition(tokens: np.ndarray, steps_per_bar: int) -> np.ndarray:
    """Share of bars after the first that repeat an earlier bar of the phrase exactly — same onset steps, same
    pitches (durations ignored); bars without a note-on never count as repeats. NaN for one-bar phrases."""
    n, steps = tokens.shape
    bars = steps // steps_per_bar
    if bars < 2:
        return np.full(n, np.nan)
    onsets = np.where(tokens >= FIRST_NOTE_ON, tokens, HOLD)[:, : bars * steps_per_bar]
    onsets = onsets.reshape(n, bars, steps_per_bar)  # (N, bars, steps per bar)
    has_notes = (onsets != HOLD).any(axis=2)  # (N, bars)
    repeats = np.zeros(n)
    for bar in range(1, bars):
        same = (onsets[:, :bar] == onsets[:, bar : bar + 1]).all(axis=2).any(axis=1)  # equals some earlier bar
        repeats += same & has_notes[:, bar]
    return repeats / (bars - 1)


def phrase_stats(tokens, steps_per_bar: int = STEPS_PER_BAR) -> dict[str, np.ndarray]:
    """One value per phrase (N,) for melody tokens (N, T); NaN where undefined (e.g. no notes).

    onsets_per_bar, hold_share (steps holding token 0), rest_share (steps where no note sounds), notes,
    pitch_range (semitones), mean_pitch (MIDI, per note-on), distinct_pitch_classes, intervals and leaps
    (successive note-on pairs, and those over LEAP_SEMITONES), leap_share, bar_repetition (see
    _bar_repetition), step_intervals and step_share (successive note-on pairs at most STEP_SEMITONES apart, and
    their share of the intervals: stepwise motion), pitch_ngram_repetition (share of the phrase's NGRAM-note
    pitch n-grams that already occurred earlier in it), key_index (0–11 major roots, 12–23 minor; -1 below MIN_KEY_NOTES notes),
    key_correlation, out_of_key (1.0 when a note-on leaves the best-fit key's scale), out_of_key_note_share."""
    tokens = _tokens(tokens)
    n, steps = tokens.shape
    bars = steps / steps_per_bar
    onset = tokens >= FIRST_NOTE_ON
    rows, columns = np.nonzero(onset)  # row-major: each phrase's note-ons in time order
    pitches = tokens[rows, columns] + PITCH_OF_TOKEN
    notes = _per_row(rows, n)
    has_notes = notes > 0

    stats: dict[str, np.ndarray] = {
        "onsets_per_bar": notes / bars,
        "hold_share": (tokens == HOLD).mean(axis=1),
        "rest_share": 1.0 - _sounding(tokens).mean(axis=1),
        "notes": notes,
    }
    pitch_grid = tokens + PITCH_OF_TOKEN  # (N, T) MIDI pitch where onset
    high = np.where(onset, pitch_grid, 0).max(axis=1, initial=0)  # MIDI pitches lie in 0..127
    low = np.where(onset, pitch_grid, 127).min(axis=1, initial=127)
    stats["pitch_range"] = np.where(has_notes, high - low, np.nan)
    stats["mean_pitch"] = _ratio(_per_row(rows, n, pitches), notes)
    classes = pitches % PITCH_CLASSES
    counts = np.bincount(rows * PITCH_CLASSES + classes, minlength=n * PITCH_CLASSES).reshape(n, PITCH_CLASSES)
    stats["distinct_pitch_classes"] = np.where(has_notes, (counts > 0).sum(axis=1), np.nan)

    # Successive note-on pairs of the same phrase (rests between them do not break a pair).
    pair = rows[1:] == rows[:-1]
    pair_rows = rows[1:][pair]
    interval = np.abs(np.diff(pitches))[pair]
    stats["intervals"] = _per_row(pair_rows, n)
    stats["leaps"] = _per_row(pair_rows[interval > LEAP_SEMITONES], n)
    stats["leap_share"] = _ratio(stats["leaps"], stats["intervals"])
    stats["step_intervals"] = _per_row(pair_rows[interval <= STEP_SEMITONES], n)
    stats["step_share"] = _ratio(stats["step_intervals"], stats["intervals"])

    stats["bar_repetition"] = _bar_repetition(tokens, steps_per_bar)
    stats["pitch_ngram_repetition"] = _ngram_repetition(rows, pitches, n)

    # Key fit on the duration-weighted pitch-class histogram.
    durations = _note_durations(tokens)[rows, columns]
    histograms = np.bincount(rows * PITCH_CLASSES + classes, weights=durations,
                             minlength=n * PITCH_CLASSES).reshape(n, PITCH_CLASSES)
    key, correlation = fit_keys(histograms)
    keyed = notes >= MIN_KEY_NOTES
    outside = (counts > 0) & ~KEY_SCALES[key]  # (N, 12) pitch classes played outside the key
    stats["key_index"] = np.where(keyed, key, -1)
    stats["key_correlation"] = np.where(keyed, correlation, np.nan)
    stats["out_of_key"] = np.where(keyed, outside.any(axis=1), np.nan)
    stats["out_of_key_note_share"] = np.where(keyed, _ratio(np.where(outside, counts, 0).sum(axis=1), notes), np.nan)
    return stats


def _ngram_repetition(rows: np.ndarray, pitches: np.ndarray, n: int) -> np.ndarray:
    """Per phrase: 1 − distinct / all of its NGRAM-note pitch n-grams (NaN with fewer than NGRAM notes)."""
    count = len(rows) - NGRAM + 1
    if count <= 0:
        return np.full(n, np.nan)
    starts = np.arange(count)
    valid = rows[starts] == rows[starts + NGRAM - 1]  # all NGRAM notes in one phrase (rows are sorted)
    codes = np.zeros(count, dtype=np.int64)
    for offset in range(NGRAM):
        codes = (codes << _PITCH_BITS) | pitches[starts + offset]
    keys = (rows[:count].astype(np.int64) << (NGRAM * _PITCH_BITS)) | codes  # phrase, then n-gram
    keys = np.sort(keys[valid])
    first = np.ones(len(keys), dtype=bool)  # first occurrence of each distinct key (none: no phrase has NGRAM notes)
    first[1:] = keys[1:] != keys[:-1]
    total = _per_row(rows[:count][valid], n)
    distinct = _per_row(keys[first] >> (NGRAM * _PITCH_BITS), n)
    return 1.0 - _ratio(distinct, total)


# -- summary ------------------------------------------------------------------------------------------------

MEAN_STATISTICS = ("onsets_per_bar", "hold_share", "rest_share", "pitch_range", "mean_pitch",
                   "distinct_pitch_classes", "bar_repetition", "pitch_ngram_repetition", "key_correlation",
                   "out_of_key_note_share")


def summarize(tokens, steps_per_bar: int = STEPS_PER_BAR) -> dict[str, Any]:
    """Aggregate statistics of melody phrases (N, T), JSON-ready (None where no phrase defines a value).

    Means over the phrases that define each statistic (see phrase_stats); `leap_share` pools every successive
    note-on pair of all phrases; `out_of_key_share` is the share of key-fitted phrases (≥ MIN_KEY_NOTES notes)
    with an out-of-key note and `minor_share` the share of them whose best key is minor; `n_without_key`
    counts the phrases left out of the key statistics. Keys are documented in docs/evaluate.md."""
    stats = phrase_stats(tokens, steps_per_bar)
    n = len(stats["notes"])
    keyed = stats["key_index"] >= 0
    summary: dict[str, Any] = {"n_phrases": n, "n_without_key": int(n - keyed.sum())}
    for name in MEAN_STATISTICS:
        summary[name] = _mean(stats[name])
    summary["leap_share"] = _ratio_or_none(stats["leaps"].sum(), stats["intervals"].sum())
    summary["out_of_key_share"] = _mean(stats["out_of_key"])
    summary["minor_share"] = _mean(np.where(keyed, stats["key_index"] >= PITCH_CLASSES, np.nan))
    return summary


def _mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def _ratio_or_none(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None
