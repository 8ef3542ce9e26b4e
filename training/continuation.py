"""How well a model continues a phrase: bars 1–2 of held-out 4-bar windows in, its next 2 bars against the
true bars 3–4, beside the two answers that need no model — repeating the input, and a random other phrase.

The score is onset F1: a predicted note-on counts when the truth has a note-on of the same pitch on the same
16th. It rewards a continuation that plays what the tune really plays next, punishes one that restates the
input where the tune moves on, and is blind to holds (which would reward a silent answer). numpy only: it
measures torch checkpoints and exported models alike, through their `encode` / `sample` (or `continue_`).
"""

from __future__ import annotations

import numpy as np

from musicbridge.codecs import MelodyCodec
from musicbridge.music_stats import summarize
from musicbridge.training.evaluate import continuations, derangement

FIRST_NOTE_ON = MelodyCodec.FIRST_NOTE_ON  # melody tokens from here on are note-ons
CHAINED_CHUNKS = 4  # the drift check: the input followed by this many chained answers (2 + 8 bars for mel_2bar)


def onset_f1(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-row F1 of (step, pitch) note-ons, (N,); a row where both are silent scores 1, one side silent 0."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    pred_on, true_on = predicted >= FIRST_NOTE_ON, truth >= FIRST_NOTE_ON
    hits = (pred_on & (predicted == truth)).sum(axis=1)
    n_pred, n_true = pred_on.sum(axis=1), true_on.sum(axis=1)
    denominator = n_pred + n_true
    return np.where(denominator > 0, 2.0 * hits / np.maximum(denominator, 1), 1.0)


def split_windows(windows: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(bars 1..k, bars k+1..2k) of windows twice the model's length: the input and the truth."""
    windows = np.asarray(windows, dtype=np.int64)
    if windows.ndim != 2 or windows.shape[1] != 2 * steps:
        raise ValueError(f"continuation windows must be twice the model's {steps} steps (build the dataset with "
                         f"twice the model's --bars), got shape {windows.shape}")
    return windows[:, :steps], windows[:, steps:]


def continuation_metrics(model, windows: np.ndarray, steps: int, temperature: float = 0.0, seed: int = 0,
                         batch_size: int = 512) -> dict:
    """Onset F1 of the model's continuation and of both baselines, on the same windows, in one run."""
    inputs, truth = split_windows(windows, steps)
    answers = continuations(model, inputs, temperature, seed, batch_size)
    rng = np.random.default_rng(seed)
    others = truth[derangement(len(truth), rng)]  # a random other phrase: a real continuation, of another tune
    model_f1 = onset_f1(answers, truth)
    chained = continuations(model, inputs, temperature, seed, batch_size, CHAINED_CHUNKS)
    return {
        "n_windows": int(len(windows)),
        "temperature": float(temperature),
        "onset_f1": float(model_f1.mean()),
        "onset_f1_repeat": float(onset_f1(inputs, truth).mean()),
        "onset_f1_random": float(onset_f1(others, truth).mean()),
        "token_acc": float((answers == truth).mean()),
        "token_acc_repeat": float((inputs == truth).mean()),
        # How much of the answer restates the input: the copy check (1.0 = the answer is the input).
        "onset_f1_to_input": float(onset_f1(answers, inputs).mean()),
        "copies": float((answers == inputs).all(axis=1).mean()),
        # Drift: notes outside the key fitted to the whole line, for the input + CHAINED_CHUNKS chained answers,
        # beside the same measure on the real windows (input + true continuation).
        "chained_chunks": CHAINED_CHUNKS,
        "chained_out_of_key_note_share": summarize(np.concatenate([inputs, chained], axis=1))["out_of_key_note_share"],
        "data_out_of_key_note_share": summarize(np.asarray(windows))["out_of_key_note_share"],
    }

