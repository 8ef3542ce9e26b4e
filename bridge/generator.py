"""The generation worker: model calls on their own thread, so MIDI I/O and the clock never wait for them.

A Request says what to generate (continue a window, sample the prior, walk A→B, mutate around a z, replay, the
nearest library phrases to a window: bridge/library.py),
for which song position, with the parameters of the moment, and which model it was built for: the worker runs
it on that model, never on whatever is active by then (the engine drops an answer whose model or epoch is no
longer current: bridge/engine.py). Only the newest request waits: a request that is still queued when the next
one comes is superseded (an answer for a bar that has passed is worthless).

Variation pick rule: of K candidates (one batch), play the one whose onset density (onsets per bar) is
closest to the reference — the input window's, else the last phrase played; ties go to the lowest index.

Reproducible: an answer depends only on its request (with the seed the engine gives every one) and its model's
files, and make_phrase records every z it decodes (Phrase.latents). The session log (bridge/session_log.py) writes
both down; `musicbridge replay` runs make_phrase again on them, with the same batch shapes, and compares.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from musicbridge.bridge.library import IndexRef, LibraryError, nearest_phrases
from musicbridge.bridge.mailbox import NewestWins
from musicbridge.notes import Note
from musicbridge.scales import Scale, applies_to

log = logging.getLogger(__name__)
_WITHOUT_VECTORS: weakref.WeakSet = weakref.WeakSet()  # models already reported to have no attribute vectors


@dataclass(frozen=True, eq=False)
class ModelRef:
    """The model a request is built for and must be answered by. Compared by identity: after a switch (even
    back to the same folder) an answer from the model active before is never taken for the current one's."""

    name: str  # what status replies show
    codec: object  # its representation (musicbridge.codecs)
    bars: int  # the length of its window
    model: object | None = None  # the runtime Model; None where only decisions are made (unit tests)

    @classmethod
    def of(cls, name: str, model) -> ModelRef:
        return cls(name, model.codec, model.bars, model)


@dataclass
class Request:
    kind: str  # continue | sample | interpolate | mutate | similar | replay (play given tokens again, no model call)
    start_beat: float  # where the answer starts playing
    bars: int
    temperature: float = 1.0
    novelty: float = 1.0
    variations: int = 1
    tokens: np.ndarray | None = None  # continue, similar: the input window (T,); mutate: its source; replay: the phrase
    other: np.ndarray | None = None  # interpolate: slot B (tokens is slot A)
    steps: int = 2  # interpolate: points on the path
    reference_density: float | None = None
    velocity: int = 100
    replace: bool = True  # cut what earlier phrases have pending from start_beat on
    reply: bool = True  # send /musicbridge/gen/* for it
    seed: int | None = None
    scale: Scale | None = None  # the scale lock of the moment (drum models ignore it)
    model: ModelRef | None = None  # the model it was built for: only that model answers it
    epoch: int = 0  # the engine's flush counter when requested: a flush since makes the answer stale
    seq: int = 0  # the engine's request number: an answer older than one already played is dropped
    created: float = field(default_factory=time.perf_counter)  # when the trigger asked (latency is measured from it)
    params: object = None  # the engine's Params when it was sent (config.Params): the session log records them
    attributes: dict[str, float] = field(default_factory=dict)  # attribute knobs not at 0: continue/sample/mutate
    index: IndexRef | None = None  # similar: the library index it is answered from (serve --index)


@dataclass
class Phrase:
    """One answer: tokens and notes (beats relative to start_beat), plus the candidates it was picked from."""

    request: Request
    tokens: np.ndarray  # (bars * steps_per_bar,)
    notes: list[Note]
    candidates: list[np.ndarray]  # index 0 is the one played
    n_bars: int
    model_ms: float  # the model calls alone
    latency_ms: float  # request creation (the trigger) → phrase ready
    path: list[np.ndarray] = field(default_factory=list)  # interpolate: every point of A→B
    latents: list[np.ndarray] = field(default_factory=list)  # every z decoded for it, in order: (B, Z) per call
    matches: list = field(default_factory=list)  # similar: the library window of each candidate (embeddings.Match)


def density(codec, tokens: np.ndarray, bars: int) -> float:
    return float(np.count_nonzero(codec.onsets(tokens))) / max(bars, 1)


def pick(codec, candidates: np.ndarray, bars: int, reference: float | None) -> list[np.ndarray]:
    """Candidates reordered so that the chosen one comes first (see the module docstring)."""
    rows = [np.asarray(c, dtype=np.int64) for c in candidates]
    if reference is None or len(rows) == 1:
        return rows
    scores = [abs(density(codec, row, bars) - reference) for row in rows]
    best = int(np.argmin(scores))  # argmin returns the first of equal scores: ties go to the lowest index
    return [rows[best]] + rows[:best] + rows[best + 1 :]


def fit_bars(rows: np.ndarray, bars: int, steps_per_bar: int) -> np.ndarray:
    """(K, T) → (K, bars·steps_per_bar): cut when longer, repeated when shorter."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.int64))
    want = bars * steps_per_bar
    if rows.shape[1] < want:
        rows = np.tile(rows, (1, -(-want // rows.shape[1])))
    return rows[:, :want]


def model_window(tokens: np.ndarray, model) -> np.ndarray:
    """A phrase cut or repeated to the model's own length, for its encoder."""
    return fit_bars(tokens, model.bars, model.steps // model.bars)[0]


def attribute_knobs(model, attributes: dict[str, float]) -> dict:
    """The `attributes=` keyword for a sampling call on `model` (the one whose codes are decoded): the knobs its
    attribute vectors know; none for a model without vectors (said once per model: the knobs do nothing there)."""
    if not attributes:
        return {}
    vectors = getattr(model, "attributes", None)
    if vectors is None:
        if model not in _WITHOUT_VECTORS:
            _WITHOUT_VECTORS.add(model)
            log.warning("%s has no attribute vectors: the attribute knobs do nothing with it (export it with --data "
                        "DATASET to compute them)", getattr(model, "path", model))
        return {}
    return {"attributes": {name: alpha for name, alpha in attributes.items() if name in vectors.names}}


def run_model(model, request: Request, latents: list | None = None,
              matches: list | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The model calls of one request (not replay: it calls no model): (K candidates (K, T), interpolation
    path or []). Every z decoded is appended to `latents` (the session log records them); similar appends the
    query's μ, and each candidate's library window to `matches`."""
    k = request.variations
    scale = request.scale if applies_to(model.codec) else None  # a drum kit has no pitches to lock
    if request.kind == "continue":  # the runtime chains phrases for answers longer than the model
        attributes = attribute_knobs(getattr(model, "continuation", None) or model, request.attributes)
        out = model.continue_(request.tokens[None, :], bars=request.bars, temperature=request.temperature,
                              variations=k, novelty=request.novelty, seed=request.seed, scale=scale,
                              latents=latents, **attributes)
        return np.asarray(out), []
    if request.kind == "sample":
        chunks = -(-request.bars // model.bars)  # longer answers: consecutive samples, one batch
        out = np.asarray(model.sample_prior(k * chunks, temperature=request.temperature, seed=request.seed,
                                            scale=scale, latents=latents, **attribute_knobs(model, request.attributes)))
        return out.reshape(k, chunks * out.shape[-1]), []
    if request.kind == "mutate":
        mu, sigma = model.encode(model_window(request.tokens, model)[None, :])
        rng = np.random.default_rng(request.seed)
        z = mu + request.novelty * sigma * rng.standard_normal((k, mu.shape[-1])).astype(mu.dtype)
        return np.asarray(model.sample(z.astype(np.float32), temperature=request.temperature, seed=request.seed,
                                       scale=scale, latents=latents, **attribute_knobs(model, request.attributes))), []
    if request.kind == "similar":  # library phrases, nearest first: no sampling, no attribute knobs
        rows, found = nearest_phrases(model, request.index, request.tokens, k, scale, latents)
        if matches is not None:
            matches.extend(found)
        return rows, []
    if request.kind == "interpolate":  # greedy (the runtime's default): each point the most likely phrase
        # The path starts on slot A and ends on slot B themselves; the points between are decoded.
        a, b = model_window(request.tokens, model), model_window(request.other, model)
        path = np.asarray(model.interpolate(a, b, request.steps, scale=scale, latents=latents)).reshape(-1, model.steps)
        return path[:1], list(path)
    raise ValueError(f"unknown request kind {request.kind!r}")


def make_phrase(request: Request, now: Callable[[], float] = time.perf_counter) -> Phrase:
    """The answer to one request, from the model it carries (replay: its own tokens, no model call)."""
    codec = request.model.codec
    began = now()
    latents: list[np.ndarray] = []
    matches: list = []
    if request.kind == "replay":
        candidates, path = request.tokens[None, :], []
    else:
        candidates, path = run_model(request.model.model, request, latents, matches)
    model_ms = (now() - began) * 1000
    steps_per_bar = codec.steps_per_bar
    candidates = fit_bars(candidates, request.bars, steps_per_bar)
    path = [fit_bars(p, request.bars, steps_per_bar)[0] for p in path]
    ordered = pick(codec, candidates, request.bars, request.reference_density)
    notes = codec.decode(ordered[0], velocity=request.velocity)
    latency_ms = (now() - request.created) * 1000
    return Phrase(request, ordered[0], notes, ordered, request.bars, model_ms, latency_ms, path, latents, matches)


class GenerationWorker:
    """Runs requests on one thread, each on the model it carries; `on_phrase(phrase)` receives the results."""

    def __init__(self, on_phrase: Callable[[Phrase], None], on_error: Callable[[Request, Exception], None]):
        self.on_phrase = on_phrase
        self.on_error = on_error
        self.mailbox: NewestWins[Request] = NewestWins()
        self.thread: threading.Thread | None = None
        self.latencies_ms: deque[float] = deque(maxlen=100_000)
        self.model_ms: deque[float] = deque(maxlen=100_000)
        self.superseded = 0
        self.failed = 0

    def submit(self, request: Request) -> None:
        if self.mailbox.put(request) is not None:
            self.superseded += 1

    def start(self) -> None:
        self.mailbox.reopen()
        self.thread = threading.Thread(target=self._run, name="generation", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.mailbox.close()
        if self.thread:
            self.thread.join(timeout=5)

    def _run(self) -> None:
        while (request := self.mailbox.take()) is not None:
            try:
                phrase = self.generate(request)
            except Exception as error:  # a failing model call must not end the worker
                self.failed += 1
                if isinstance(error, LibraryError):  # said in a sentence (bridge/library.py): no traceback
                    log.warning("similar: %s", error)
                else:
                    log.exception("generation failed")
                self.on_error(request, error)
                continue
            self.on_phrase(phrase)

    def generate(self, request: Request) -> Phrase:
        if request.model is None or request.model.model is None:
            raise RuntimeError("no model loaded")
        phrase = make_phrase(request)
        self.latencies_ms.append(phrase.latency_ms)
        self.model_ms.append(phrase.model_ms)
        return phrase
