"""What each mode asks the model for at a bar line: the musical decisions, apart from threads and I/O.

The trigger fires at the start of a bar's last 16th plus a small tolerance (a note played a little late still
lands in its step), so generation has most of a 16th of headroom and the answer can start on the bar line.

- continue: every bar in which the performer played, the last model-length bars are continued from the next
  bar on (a newer answer replaces what is left of the older one).
- call-response: once the performer has been silent for `silence` beats, the phrase (the model-length bars up
  to the bar line after its last note) is answered from the next bar.
- interpolate: the slerp path from slot A to slot B, one phrase every `bars` bars; after B: hold (repeat B),
  loop (back to A) or pingpong.
- sample: a new phrase from the prior every `bars` bars.
- loop: the last answer again, back to back.
- mutate: every `bars` bars, a new phrase sampled around the z of the answer that was playing when mutate
  began (the source stays fixed, so it does not drift away).
- off: nothing is generated; MIDI thru still works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from musicbridge.bridge.config import Params
from musicbridge.bridge.generator import Request, density
from musicbridge.codecs import BEATS_PER_BAR, STEP_BEATS
from musicbridge.phrases import TOO_WIDE_DROP, window_tokens

TRIGGER_TOLERANCE_STEPS = 0.25  # ≈ 31 ms at 120 bpm: generation keeps ≈ 94 ms of the last 16th


def trigger_beat(bar_end: float) -> float:
    return bar_end - STEP_BEATS + TRIGGER_TOLERANCE_STEPS * STEP_BEATS


@dataclass
class ModeState:
    """Per-mode memory: cadence, slots, interpolation path, the last answer."""

    next_phrase_beat: float | None = None  # cadence modes: where the next phrase starts (None = next bar)
    slots: dict[str, np.ndarray] = field(default_factory=dict)
    path: list[np.ndarray] = field(default_factory=list)
    path_index: int = -1
    path_direction: int = 1
    last_tokens: np.ndarray | None = None
    last_bars: int = 0
    mutate_source: np.ndarray | None = None

    def reset_cadence(self) -> None:
        self.next_phrase_beat = None

    def next_path_index(self, ending: str) -> int:
        n = len(self.path)
        i = self.path_index + self.path_direction
        if i >= n:
            if ending == "hold":
                i = n - 1
            elif ending == "loop":
                i = 0
            else:  # pingpong
                self.path_direction = -1
                i = max(n - 2, 0)
        elif i < 0:  # pingpong coming back past A
            self.path_direction = 1
            i = min(1, n - 1)
        self.path_index = i
        return i


class Modes:
    """Builds the Request for a bar line (or None), from the capture buffer, the params and the state."""

    def __init__(self, capture, params: Params):
        self.capture = capture
        self.params = params
        self.state = ModeState()

    def window(self, codec, model_bars: int, end: float) -> tuple[np.ndarray, float | None, int]:
        """(tokens, onset density, mean velocity) of the model-length bars ending at `end`."""
        start = end - model_bars * BEATS_PER_BAR
        notes = self.capture.window(start, end)
        tokens = window_tokens(codec, notes, model_bars, TOO_WIDE_DROP)  # live: the answer must come
        velocity = round(sum(n.velocity for n in notes) / len(notes)) if notes else 100
        return tokens, density(codec, tokens, model_bars), velocity

    def _answer(self, model, end: float, start: float) -> Request:
        tokens, dens, velocity = self.window(model.codec, model.bars, end)
        p = self.params
        return Request("continue", start, p.bars, p.temperature, p.novelty, p.variations, tokens,
                       reference_density=dens, velocity=velocity)

    def _last_density(self, model) -> float | None:
        s = self.state
        return density(model.codec, s.last_tokens, s.last_bars) if s.last_tokens is not None else None

    def at_bar(self, model, bar_end: float, forced: bool = False) -> Request | str | None:
        """The request for the phrase starting at `bar_end`, or a reason (str) why there is none when forced."""
        p, s = self.params, self.state
        mode = p.mode
        if mode == "off":
            return "mode is off" if forced else None
        if model is None:
            return "no model loaded" if forced else None
        if mode == "continue":
            bar_start = bar_end - BEATS_PER_BAR
            playing = self.capture.onsets_between(bar_start, bar_end) > 0 or self.capture.silent_since() is None
            return self._answer(model, bar_end, bar_end) if playing or forced else None
        if mode == "call-response":
            silent = self.capture.silent_since()
            if forced:
                return self._answer(model, bar_end, bar_end)
            if self.capture.onsets_since_answer == 0 or silent is None or bar_end - silent < p.silence:
                return None
            end = math.ceil(silent / BEATS_PER_BAR - 1e-6) * BEATS_PER_BAR
            self.capture.mark_answered()
            return self._answer(model, min(end, bar_end), bar_end)
        # The cadence modes: one phrase every `bars` bars (loop: every length of the last answer).
        if not forced and s.next_phrase_beat is not None and bar_end < s.next_phrase_beat - 1e-6:
            return None
        request = self._cadence_request(model, bar_end)
        if isinstance(request, Request):
            s.next_phrase_beat = bar_end + request.bars * BEATS_PER_BAR
        return request if (forced or isinstance(request, Request)) else None

    def _cadence_request(self, model, start: float) -> Request | str:
        p, s = self.params, self.state
        if p.mode == "sample":
            return Request("sample", start, p.bars, p.temperature, p.novelty, p.variations,
                           reference_density=self._last_density(model))
        if p.mode == "loop":
            if s.last_tokens is None:
                return "nothing to loop yet"
            return Request("replay", start, s.last_bars, tokens=s.last_tokens)
        if p.mode == "mutate":
            source = s.mutate_source if s.mutate_source is not None else s.last_tokens
            if source is None:
                return "nothing to mutate yet"
            s.mutate_source = source
            return Request("mutate", start, p.bars, p.temperature, p.novelty, p.variations, source,
                           reference_density=density(model.codec, source, max(len(source) // model.codec.steps_per_bar, 1)))
        if p.mode == "interpolate":
            if "a" not in s.slots or "b" not in s.slots:
                return "capture slots a and b first"
            if not s.path:
                return Request("interpolate", start, p.bars, p.temperature, tokens=s.slots["a"],
                               other=s.slots["b"], steps=p.steps)
            i = s.next_path_index(p.ending)
            return Request("replay", start, p.bars, tokens=s.path[i])
        return f"unknown mode {p.mode}"
