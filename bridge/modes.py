"""What each mode plays at a bar line: the musical decisions as pure functions, apart from threads, clocks and I/O.

`step(state, event, moment)` → (new state, action). The engine (bridge/engine.py) owns the ModeState and applies
every event to it in order; the action of a BarLine is a Request to send to the model, a reason (str) why there
is none when the performer asked for one (/musicbridge/generate), or None. The state is never changed in place,
so a test drives the same function with a fake clock and reads every state it went through.

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
- similar: every bar in which the performer played, the library phrase nearest to the last model-length bars
  (serve --index; not a copy of them) plays from the next bar, as the model's tokens (bridge/library.py).
- off: nothing is generated; MIDI thru still works.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from musicbridge.bridge.capture import CaptureBuffer
from musicbridge.bridge.config import Params
from musicbridge.bridge.generator import ModelRef, Request, density
from musicbridge.bridge.library import NO_INDEX, IndexRef
from musicbridge.codecs import BEATS_PER_BAR, STEP_BEATS
from musicbridge.phrases import TOO_WIDE_DROP, window_tokens

TRIGGER_TOLERANCE_STEPS = 0.25  # ≈ 31 ms at 120 bpm: generation keeps ≈ 94 ms of the last 16th
CADENCE_MODES = ("interpolate", "sample", "loop", "mutate")  # one phrase every `bars` bars, played or not


def trigger_beat(bar_end: float) -> float:
    return bar_end - STEP_BEATS + TRIGGER_TOLERANCE_STEPS * STEP_BEATS


def next_bar_line(beat: float) -> float:
    """The first bar line after `beat` (a beat on a bar line belongs to the bar it starts)."""
    return (math.floor(beat / BEATS_PER_BAR + 1e-9) + 1) * BEATS_PER_BAR


@dataclass(frozen=True, eq=False)
class ModeState:
    """Per-mode memory: cadence, slots, interpolation path, the last answer. Replaced, never changed."""

    next_phrase_beat: float | None = None  # cadence modes: where the next phrase starts (None = next bar)
    slots: Mapping[str, np.ndarray] = field(default_factory=dict)  # capture slots "a", "b" → tokens (T,)
    path: tuple[np.ndarray, ...] = ()  # interpolate: every point from A to B, once decoded
    path_index: int = -1  # interpolate: the point played last
    path_direction: int = 1  # interpolate, pingpong: +1 towards B, -1 back towards A
    last_tokens: np.ndarray | None = None  # the last answer played
    last_bars: int = 0
    mutate_source: np.ndarray | None = None  # mutate: the answer it varies, fixed when mutate began
    answered_before: float = -math.inf  # call-response: onsets before this beat have had their answer


# ---- events -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BarLine:
    """The trigger point of the bar line `bar_end` (forced: /musicbridge/generate asked for an answer there)."""

    bar_end: float
    beat: float  # the song position now
    forced: bool = False


@dataclass(frozen=True, eq=False)
class Answered:
    """An answer was accepted and plays from now on."""

    kind: str
    tokens: np.ndarray  # (bars * steps_per_bar,)
    bars: int
    path: tuple[np.ndarray, ...] = ()  # interpolate: the whole path


@dataclass(frozen=True)
class ModeChanged:
    name: str  # the new mode (already in the params)
    beat: float  # the song position now: what was played before is not for the new mode to answer


@dataclass(frozen=True, eq=False)
class SlotStored:
    slot: str
    tokens: np.ndarray


@dataclass(frozen=True)
class PathStale:
    """Something the interpolation path was decoded with changed (steps, scale lock): decode it again."""


@dataclass(frozen=True)
class ModelSwitched:
    same_codec: bool  # False: tokens of another representation mean nothing to the new model


@dataclass(frozen=True)
class Flushed:
    """Everything pending was dropped (stop, relocation, panic, a mode change or model switch)."""

    capture_cleared: bool = False  # the transport moved: what was played is forgotten


@dataclass(frozen=True)
class Moment:
    """What a decision reads besides its own state (never writes): the params, the active model, the capture."""

    params: Params
    model: ModelRef | None
    capture: CaptureBuffer
    library: IndexRef | str = NO_INDEX  # the index that answers the active model, or why there is none (similar)


Event = BarLine | Answered | ModeChanged | SlotStored | PathStale | ModelSwitched | Flushed
Action = Request | str | None


def step(state: ModeState, event: Event, moment: Moment) -> tuple[ModeState, Action]:
    """The new state after `event`, and what to do (only a BarLine asks for something)."""
    if isinstance(event, BarLine):
        return at_bar(state, event, moment)
    if isinstance(event, Answered):
        state = replace(state, last_tokens=event.tokens, last_bars=event.bars)
        if event.kind == "interpolate":
            state = replace(state, path=event.path, path_index=0, path_direction=1)
        return state, None
    if isinstance(event, ModeChanged):
        return replace(state, mutate_source=state.last_tokens if event.name == "mutate" else None,
                       path=() if event.name == "interpolate" else state.path, answered_before=event.beat,
                       next_phrase_beat=None), None
    if isinstance(event, SlotStored):
        return replace(state, slots={**state.slots, event.slot: event.tokens}, path=()), None
    if isinstance(event, PathStale):
        return replace(state, path=()), None
    if isinstance(event, ModelSwitched):
        state = replace(state, path=(), next_phrase_beat=None)
        if not event.same_codec:
            state = replace(state, slots={}, last_tokens=None, last_bars=0, mutate_source=None)
        return state, None
    if isinstance(event, Flushed):
        state = replace(state, next_phrase_beat=None)
        if event.capture_cleared:  # new notes may lie before the old mark (a relocation back)
            state = replace(state, answered_before=-math.inf)
        return state, None
    raise TypeError(f"not a mode event: {event!r}")


# ---- the decisions at a bar line -----------------------------------------------------------------
def window(capture: CaptureBuffer, codec, model_bars: int, end: float) -> tuple[np.ndarray, float | None, int]:
    """(tokens, onset density, mean velocity) of the model-length bars ending at `end`."""
    start = end - model_bars * BEATS_PER_BAR
    notes = capture.window(start, end)
    tokens = window_tokens(codec, notes, model_bars, TOO_WIDE_DROP)  # live: the answer must come
    velocity = round(sum(n.velocity for n in notes) / len(notes)) if notes else 100
    return tokens, density(codec, tokens, model_bars), velocity


def _answer(moment: Moment, end: float, start: float) -> Request:
    """A continuation of the model-length bars ending at `end`, played from `start`."""
    p, model = moment.params, moment.model
    tokens, dens, velocity = window(moment.capture, model.codec, model.bars, end)
    return Request("continue", start, p.bars, p.temperature, p.novelty, p.variations, tokens,
                   reference_density=dens, velocity=velocity, scale=p.scale, model=model)


def _similar(moment: Moment, end: float, forced: bool) -> Request | str | None:
    """The library phrases nearest to the model-length bars ending at `end`, played from `end`; a reason (forced
    only) when there is no index for this model or nothing was played."""
    p, model, library = moment.params, moment.model, moment.library
    if isinstance(library, str):
        return library if forced else None
    if not moment.capture.window(end - model.bars * BEATS_PER_BAR, end):
        return f"nothing played in the {model.bars} bars before beat {end:g}" if forced else None
    tokens, _, velocity = window(moment.capture, model.codec, model.bars, end)
    # No reference density: the nearest phrase plays, the next nearest are the variations.
    return Request("similar", end, p.bars, variations=p.variations, tokens=tokens, velocity=velocity, scale=p.scale,
                   model=model, index=library)


def at_bar(state: ModeState, event: BarLine, moment: Moment) -> tuple[ModeState, Action]:
    p, model, capture = moment.params, moment.model, moment.capture
    bar_end, forced = event.bar_end, event.forced
    if p.mode == "off":
        return state, ("mode is off" if forced else None)
    if model is None:
        return state, ("no model loaded" if forced else None)
    if p.mode in ("continue", "similar"):
        played = capture.onsets_between(bar_end - BEATS_PER_BAR, bar_end) > 0 or capture.silent_since() is None
        if not (played or forced):
            return state, None
        return state, (_answer(moment, bar_end, bar_end) if p.mode == "continue" else _similar(moment, bar_end, forced))
    if p.mode == "call-response":
        if forced:
            return state, _answer(moment, bar_end, bar_end)
        silent = capture.silent_since()
        unanswered = capture.onsets_between(state.answered_before, math.inf)
        if unanswered == 0 or silent is None or bar_end - silent < p.silence:
            return state, None
        end = math.ceil(silent / BEATS_PER_BAR - 1e-6) * BEATS_PER_BAR  # the bar line after the last note
        return replace(state, answered_before=event.beat), _answer(moment, min(end, bar_end), bar_end)
    if p.mode not in CADENCE_MODES:
        return state, f"unknown mode {p.mode}"
    if not forced and state.next_phrase_beat is not None and bar_end < state.next_phrase_beat - 1e-6:
        return state, None
    state, request = _cadence_request(state, moment, bar_end)
    if isinstance(request, Request):
        return replace(state, next_phrase_beat=bar_end + request.bars * BEATS_PER_BAR), request
    return state, (request if forced else None)


def _cadence_request(state: ModeState, moment: Moment, start: float) -> tuple[ModeState, Request | str]:
    p, model = moment.params, moment.model
    common = {"scale": p.scale, "model": model}
    if p.mode == "sample":
        last = density(model.codec, state.last_tokens, state.last_bars) if state.last_tokens is not None else None
        return state, Request("sample", start, p.bars, p.temperature, p.novelty, p.variations,
                              reference_density=last, **common)
    if p.mode == "loop":
        if state.last_tokens is None:
            return state, "nothing to loop yet"
        return state, Request("replay", start, state.last_bars, tokens=state.last_tokens, **common)
    if p.mode == "mutate":
        source = state.mutate_source if state.mutate_source is not None else state.last_tokens
        if source is None:
            return state, "nothing to mutate yet"
        source_bars = max(len(source) // model.codec.steps_per_bar, 1)
        return replace(state, mutate_source=source), Request(
            "mutate", start, p.bars, p.temperature, p.novelty, p.variations, source,
            reference_density=density(model.codec, source, source_bars), **common)
    # interpolate
    if "a" not in state.slots or "b" not in state.slots:
        return state, "capture slots a and b first"
    if not state.path:
        return state, Request("interpolate", start, p.bars, p.temperature, tokens=state.slots["a"],
                              other=state.slots["b"], steps=p.steps, **common)
    index, direction = next_path_index(len(state.path), state.path_index, state.path_direction, p.ending)
    return (replace(state, path_index=index, path_direction=direction),
            Request("replay", start, p.bars, tokens=state.path[index], **common))


def next_path_index(n: int, index: int, direction: int, ending: str) -> tuple[int, int]:
    """(index, direction) of the next point on a path of n points after `index`, going `direction`."""
    i = index + direction
    if i >= n:
        if ending == "hold":
            return n - 1, direction
        if ending == "loop":
            return 0, direction
        return max(n - 2, 0), -1  # pingpong
    if i < 0:  # pingpong coming back past A
        return min(1, n - 1), 1
    return i, direction
