"""The engine: the one owner of the musical state, on a thread of its own.

It owns the params, the mode state (bridge/modes.py), the capture buffer, the epoch, the requests waiting for
their answers and the active model. No other thread touches them: the MIDI input, the OSC server, the clock,
the generation worker and the model loader post timestamped events into its queue, and it applies them one at a
time, in the order they came. An OSC command that needs an answer (an error, a value) waits for it (call()).
Other threads read `view`, an immutable snapshot replaced after every change. Between events the engine wakes
by itself for the next trigger point (modes.trigger_beat) and the next deadline.

Answers. Every request carries the model it was built for and the epoch it was made in (the epoch is bumped by
every flush: stop, relocation, mode change, model switch, panic). An answer whose model or epoch is no longer
current is dropped and counted (stale_model, stale): an answer from the old model is never played after a
switch, nor one from before a stop. An answer older than one already played is dropped too (overtaken).
The `repeat` fallback below never replays the old model's answer either: a switch forgets the last answer.

Model switch. A load runs on the model-load worker; when it finishes, the engine takes it as one ordered event
and applies it at the next bar line (at once while stopped): the old model's phrase ends on that bar line and
the new model answers from it. Of several loads, the one requested last wins, whatever order they finish in.

Deadlines. A request's deadline is its start minus the scheduler's output lead (Scheduler.deadline). When it
passes without the answer, the deadline is counted as missed and the `fallback` param decides what plays from
the missed start: `repeat` (the last answer again) or `hold` (nothing new: what was scheduled plays on). A late
answer still takes over when it comes, from its first note that is not yet due: the scheduler drops the notes
that are past, so no note is ever sent late.

MIDI learn (bridge/learn.py). The engine owns the table: the MIDI input thread posts ControlIn for every CC and
note that learning wants (the view tells it which), the engine binds or runs them, and hands a bound control's
message to `dispatch` (the daemon runs it through the OSC route's checks and handler, here on this thread).

Library (serve --index, bridge/library.py). The index is fixed for the daemon's life and read only; the engine
says whether it answers the active model (Moment.library: the index, or why not) — `similar` is refused as a mode
and as /musicbridge/similar while it does not; the search itself runs on a worker, never here.

Session log (bridge/session_log.py). The engine tells `observe` what it heard, every answer it took (played or
dropped), what it played and what it cut; `observe` only queues (never blocks). Every request carries a seed
(the engine draws one when --seed is not given) and the params of the moment, so its answer can be made again.
"""

from __future__ import annotations

import itertools
import logging
import queue
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from musicbridge.bridge.capture import CaptureBuffer
from musicbridge.bridge.config import Params
from musicbridge.bridge.generator import ModelRef, Phrase, Request, make_phrase
from musicbridge.bridge.learn import Control, Learn, Learned, Move
from musicbridge.bridge.library import NO_INDEX, IndexRef
from musicbridge.bridge.modes import (
    Answered,
    BarLine,
    Flushed,
    ModeChanged,
    ModelSwitched,
    ModeState,
    Moment,
    PathStale,
    SlotStored,
    next_bar_line,
    step,
    trigger_beat,
    window,
)
from musicbridge.bridge.session_log import AnswerTaken, NoteHeard, OutputCut, PhrasePlayed
from musicbridge.codecs import BEATS_PER_BAR, STEP_BEATS
from musicbridge.notes import Note

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 2.0  # an OSC command waits this long for the engine's answer
MAX_WAIT_S = 0.02  # re-read the clock at least this often while playing (tempo and a MIDI clock's phase move)
MIN_WAIT_S = 0.0005
IDLE_WAIT_S = 0.05  # while stopped only events matter, and they wake it at once
MAX_EVENTS_PER_PASS = 256  # a flood of input never keeps the trigger and the deadlines waiting
KEEP_MISSED = 16  # requests past their deadline remembered, so that their late answers are counted as late
TRANSPORT_FLUSHES = ("start", "stop", "relocate")  # the song position jumped: what was played is forgotten


class Refused(ValueError):
    """A command that cannot be done now; `code` is its OSC error code (docs/osc.md)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


# ---- events: what other threads post --------------------------------------------------------------
@dataclass(frozen=True)
class NoteIn:
    t: float  # arrival (perf_counter seconds)
    beat: float  # its song position (the clock's, at t)
    channel: int
    pitch: int
    velocity: int  # 0 = note-off


@dataclass(frozen=True)
class ControlIn:
    """A CC or note that MIDI learn wants (learning, or a bound control): from the MIDI input thread."""

    t: float  # arrival (perf_counter seconds)
    beat: float | None  # its song position; None while stopped (a note that turns out not to be learn's is dropped)
    control: Control
    value: int  # CC value or velocity (0 = note-off)


@dataclass(frozen=True)
class TransportChanged:
    kind: str  # start | stop | relocate | tempo (the clock's events)
    beat: float


@dataclass(frozen=True)
class AnswerReady:
    phrase: Phrase  # from the generation worker


@dataclass(frozen=True)
class ModelReady:
    seq: int  # the load request's number (LoadWorker.submit): the highest requested wins
    model: ModelRef
    requester: object = None  # who asked: the status reply after the switch goes there


@dataclass(eq=False)
class Call:
    """A command run on the engine thread; the sender waits for `done`, then reads result or error."""

    fn: Callable
    args: tuple
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None


_STOP = object()


@dataclass(frozen=True)
class View:
    """What other threads read (status replies, the status line, the summary): replaced whole, never changed."""

    params: Params
    model: ModelRef | None
    slots: str  # the capture slots holding a phrase: "", "a", "b" or "ab"
    last_latency_ms: float  # trigger → answer ready of the last generated answer; -1 before the first
    mappings: tuple[tuple[str, Control], ...] = ()  # MIDI learn: (target, control), in the order learned
    learned: frozenset[Control] = frozenset()  # the bound controls: the MIDI thread keeps them from capture and thru
    learning: str = ""  # the target armed for learning ("" when none)


class PhraseIds:
    """Numbers of /musicbridge/gen/* sequences: the engine's answers and the OSC thread's variations share them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> int:
        with self._lock:
            self._last += 1
            return self._last


def _ignore(*args) -> None:
    pass


class Engine:
    """The musical state and its one thread. Tests drive it without the thread: post() then pump()."""

    def __init__(self, params: Params, clock, scheduler, submit: Callable[[Request], None],
                 channel_for: Callable[[ModelRef | None], int], model: ModelRef | None = None, *,
                 seed: int | None = None, send_phrase: Callable[[int, list[Note], int, float], None] = _ignore,
                 model_switched: Callable[[object], None] = _ignore, now: Callable[[], float] = time.perf_counter,
                 learn: Learn | None = None, dispatch: Callable[[str, tuple], None] = _ignore,
                 learn_changed: Callable[[str | None], None] = _ignore,
                 model_names: Callable[[], tuple[str, ...]] = tuple, observe: Callable[[object], None] = _ignore,
                 index: IndexRef | None = None):
        # The musical state: written only on the engine thread.
        self.params = params
        self.mode = ModeState()
        self.capture = CaptureBuffer()
        self.epoch = 0
        self.model = model
        self.pending_model: ModelReady | None = None  # a finished load waiting for the next bar line
        self.newest_load = 0  # the number of the newest load taken (pending or applied)
        self.waiting: dict[int, Request] = {}  # seq → a request at the worker whose deadline has not passed
        self.missed: OrderedDict[int, Request] = OrderedDict()  # past their deadline; the answer may still come
        self.played_seq = 0  # the newest request whose answer (or fallback) was scheduled
        self.last_phrase: Phrase | None = None  # the last answer played: what the `repeat` fallback plays
        self.candidates: tuple[list, float, int, object] | None = None  # (rows, start beat, bars, codec)
        self.last_latency_ms = -1.0
        self.handled: tuple[float, int] | None = None  # (bar line, epoch) of the last trigger: a flush re-arms it
        self.counts = {"answers": 0, "stale": 0, "stale_model": 0, "overtaken": 0, "deadline_missed": 0,
                       "late_answers": 0}
        self.learn = learn if learn is not None else Learn({})  # MIDI learn's table
        self.index = index  # serve --index: the library `similar` answers from (read only; None: no index)
        # Its collaborators.
        self.clock = clock  # read only (thread-safe)
        self.scheduler = scheduler  # output timing stays there
        self.submit = submit  # to the generation worker
        self.channel_for = channel_for  # the answer channel of a model
        self.seed = seed if seed is not None else secrets.randbits(32)  # drawn: every answer's seed is known
        self.observe = observe  # the session log (bridge/session_log.py): what was heard, answered, played, cut
        self.send_phrase = send_phrase  # /musicbridge/gen/* of an answer (phrase id, notes, bars, start beat)
        self.model_switched = model_switched  # the status reply after a switch (to the requester)
        self.dispatch = dispatch  # a learned control's OSC message (address, arguments), run by the daemon
        self.learn_changed = learn_changed  # the mappings or the armed target changed (an error text when not saved)
        self.model_names = model_names  # what the `model` target picks among
        self.now = now
        self.phrase_ids = PhraseIds()
        self.requests = itertools.count(1)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.view: View
        self._publish()

    # ---- other threads: post events, call commands ------------------------------------------------
    def post(self, event) -> None:
        self.queue.put(event)

    def call(self, fn: Callable, *args):
        """Run `fn(*args)` on the engine thread and return its result (or raise its error); inline when the
        thread is not running (before start, after stop, in tests)."""
        thread = self.thread
        if thread is None or not thread.is_alive() or threading.current_thread() is thread:
            return fn(*args)
        command = Call(fn, args)
        self.queue.put(command)
        if not command.done.wait(CALL_TIMEOUT_S):
            raise Refused("internal", "the engine did not answer in time; try again")
        if command.error is not None:
            raise command.error
        return command.result

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread is None:
            return
        self.queue.put(_STOP)
        self.thread.join(timeout=2)
        while True:  # commands that came after the stop: their senders must not wait for a thread that is gone
            try:
                event = self.queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, Call):
                event.error = Refused("not_ready", "the daemon is shutting down")
                event.done.set()

    # ---- the thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                event = self.queue.get(timeout=self.wait_s(self.now()))
            except queue.Empty:
                event = None
            handled = 0
            while event is not None:
                if event is _STOP:
                    return
                self._handle(event)
                handled += 1
                if handled == MAX_EVENTS_PER_PASS:
                    break  # the timers first; the rest waits in the queue for the next pass
                try:
                    event = self.queue.get_nowait()
                except queue.Empty:
                    event = None
            self._advance_safely()

    def pump(self) -> None:
        """Apply every queued event, then the timers, at now(): the thread's work without the thread (tests)."""
        while True:
            try:
                event = self.queue.get_nowait()
            except queue.Empty:
                break
            self._handle(event)
        self.advance()

    def _handle(self, event) -> None:
        if isinstance(event, Call):
            try:
                event.result = event.fn(*event.args)
            except Exception as error:  # the caller reports it
                event.error = error
            event.done.set()
            return
        try:
            self.apply(event)
        except Exception:  # one bad event must not end the engine
            log.exception("error in the engine handling %s", type(event).__name__)

    def _advance_safely(self) -> None:
        try:
            self.advance()
        except Exception:  # one bad bar must not end the answers; the next bar tries again
            log.exception("error in the engine's timers")

    def wait_s(self, now: float) -> float:
        """How long to wait for an event before the next timer (trigger point or deadline) is due."""
        playing, beat, _ = self.clock.state(now)
        due = [d for r in self.waiting.values() if (d := self.scheduler.deadline(r.start_beat)) is not None]
        if playing:
            bar_end = next_bar_line(beat)
            if self.handled == (bar_end, self.epoch):
                bar_end += BEATS_PER_BAR
            trigger = self.clock.time_at(trigger_beat(bar_end))
            if trigger is not None:
                due.append(trigger)
        if not due:
            return MAX_WAIT_S if playing else IDLE_WAIT_S
        return min(max(min(due) - now, MIN_WAIT_S), MAX_WAIT_S)

    # ---- events -------------------------------------------------------------------------------------
    def apply(self, event) -> None:
        if isinstance(event, NoteIn):
            if event.velocity > 0:
                self.capture.note_on(event.channel, event.pitch, event.velocity, event.beat)
            else:
                self.capture.note_off(event.channel, event.pitch, event.beat)
            self.observe(NoteHeard(event.t, event.beat, event.channel, event.pitch, event.velocity))
        elif isinstance(event, TransportChanged):
            if event.kind in TRANSPORT_FLUSHES:
                if self.pending_model is not None and event.kind == "stop":
                    self._switch(self.pending_model, None)  # no bar line will come to switch on
                self.capture.clear()
                self._flush(f"transport {event.kind}", capture_cleared=True)
        elif isinstance(event, AnswerReady):
            self._accept(event.phrase)
        elif isinstance(event, ModelReady):
            self._model_ready(event)
        elif isinstance(event, ControlIn):
            self._control(event)
        else:
            raise TypeError(f"not an engine event: {event!r}")

    def advance(self) -> None:
        """The timers at now(): deadlines that passed, then the trigger point of the next bar line."""
        now = self.now()
        if self.learn.expire(now):
            self._publish()
            self.learn_changed(None)
        for request in list(self.waiting.values()):
            deadline = self.scheduler.deadline(request.start_beat)
            if deadline is not None and now >= deadline:
                del self.waiting[request.seq]
                self._missed(request)
        playing, beat, _ = self.clock.state(now)
        if not playing:
            return
        bar_end = next_bar_line(beat)
        if beat >= trigger_beat(bar_end) and self.handled != (bar_end, self.epoch):
            try:
                self._at_bar(bar_end, beat, forced=False)
            finally:  # once per bar line, even when it failed; after it: a switch there bumped the epoch
                self.handled = (bar_end, self.epoch)

    # ---- decisions ----------------------------------------------------------------------------------
    def _moment(self) -> Moment:
        return Moment(self.params, self.model, self.capture, self._library())

    def _library(self) -> IndexRef | str:
        """The index when it answers the active model, else why not (a sentence). A memo read: the daemon hashed
        the model's encoder before it became active (IndexRef.refusal)."""
        if self.index is None:
            return NO_INDEX
        if self.model is None or self.model.model is None:
            return "no model loaded (start with --model or send /musicbridge/model/load)"
        return self.index.refusal(self.model.model) or self.index

    def _step(self, event):
        self.mode, action = step(self.mode, event, self._moment())
        return action

    def _at_bar(self, bar_end: float, beat: float, forced: bool) -> str | None:
        """Ask the mode for the phrase starting at `bar_end`; a reason when there is none (forced only)."""
        if self.pending_model is not None:
            self._switch(self.pending_model, bar_end)
        action = self._step(BarLine(bar_end, beat, forced))
        if isinstance(action, Request):
            self._send(action)
            return None
        return action

    def _send(self, request: Request) -> None:
        request.seq = next(self.requests)
        request.epoch = self.epoch
        request.created = self.now()
        request.seed = self.seed + request.seq  # with the request, it decides the answer (musicbridge replay)
        request.params = self.params
        request.attributes = self.params.attributes()  # the attribute knobs not at 0 (continue, sample, mutate)
        if request.kind == "replay":  # no model call: it cannot miss its deadline
            self._accept(make_phrase(request, self.now))
            return
        self.waiting[request.seq] = request
        self.submit(request)

    def _accept(self, phrase: Phrase) -> None:
        request = phrase.request
        self.waiting.pop(request.seq, None)
        late = self.missed.pop(request.seq, None) is not None
        outcome = self._outcome(request)
        self.observe(AnswerTaken(self.now(), phrase, outcome, late))
        if outcome != "played":
            self.counts[outcome] += 1
            return
        if late:
            self.counts["late_answers"] += 1
        self.played_seq = request.seq
        self._step(Answered(request.kind, phrase.tokens, phrase.n_bars, tuple(phrase.path)))
        self.candidates = (phrase.candidates, request.start_beat, phrase.n_bars, request.model.codec)
        self.last_phrase = phrase
        if request.kind != "replay":
            self.last_latency_ms = phrase.latency_ms
        self.counts["answers"] += 1
        self._play(phrase.notes, phrase.n_bars, request)
        self._publish()
        log.debug("answer %d (%s%s): %d notes at beat %g, %.1f ms", request.seq, request.kind,
                  ", late" if late else "", len(phrase.notes), request.start_beat, phrase.latency_ms)

    def _outcome(self, request: Request) -> str:
        """What becomes of an answer: played, or dropped as stale_model, stale or overtaken (counted)."""
        if request.model is not self.model:
            return "stale_model"  # built for a model that is no longer active
        if request.epoch != self.epoch:
            return "stale"  # the transport or mode changed while it was generated
        if request.seq < self.played_seq:
            return "overtaken"  # a newer answer plays already
        return "played"

    def _missed(self, request: Request) -> None:
        """The deadline of `request` passed without its answer: the fallback plays from its start."""
        self.counts["deadline_missed"] += 1
        self.missed[request.seq] = request
        while len(self.missed) > KEEP_MISSED:
            self.missed.popitem(last=False)
        fallback = self.params.fallback
        log.debug("request %d (%s) missed its deadline (beat %g): %s", request.seq, request.kind,
                  request.start_beat, fallback)
        if request.seq < self.played_seq:
            return  # a newer answer plays already
        self.played_seq = request.seq
        if fallback == "repeat" and self.last_phrase is not None:
            self.counts["fallbacks"] = self.counts.get("fallbacks", 0) + 1  # fallback phrases played
            self._play(self.last_phrase.notes, self.last_phrase.n_bars, request, self.last_phrase.request.seq)

    def _play(self, notes: list[Note], n_bars: int, request: Request, answer: int | None = None) -> None:
        """Schedule the notes of answer `answer` (default: the request's own) for `request`."""
        phrase_id = self.phrase_ids.next()
        channel = self.channel_for(self.model)
        self.scheduler.add_phrase(notes, request.start_beat, phrase_id, channel, request.replace)
        now = self.now()
        self.observe(PhrasePlayed(now, request.seq if answer is None else answer, request.seq, request.start_beat,
                                  self.clock.time_at(request.start_beat), self.clock.state(now)[2], channel,
                                  request.replace))
        if request.reply:
            self.send_phrase(phrase_id, notes, n_bars, request.start_beat)

    def _flush(self, why: str, capture_cleared: bool = False) -> None:
        """Drop everything pending and turn every sounding note off; answers requested before are stale."""
        self.epoch += 1
        self.waiting.clear()
        self.missed.clear()
        self._step(Flushed(capture_cleared))
        closed = self.scheduler.flush((self.channel_for(self.model),))
        now = self.now()
        self.observe(OutputCut(now, now, why))
        log.debug("flush (%s): %d notes closed", why, closed)

    # ---- models -------------------------------------------------------------------------------------
    def _model_ready(self, ready: ModelReady) -> None:
        if ready.seq < self.newest_load:
            log.debug("load %d finished after load %d was taken: not switched to", ready.seq, self.newest_load)
            return
        self.newest_load = ready.seq
        playing, _, _ = self.clock.state(self.now())
        if playing:
            self.pending_model = ready  # one switch, at the next bar line
        else:
            self._switch(ready, None)

    def _switch(self, ready: ModelReady, bar_end: float | None) -> None:
        """Make `ready.model` the active model from `bar_end` on (None: now, nothing plays)."""
        self.pending_model = None
        before, after = self.model, ready.model
        if before is not None and after.model is not None and after.model is before.model:
            self.model_switched(ready.requester)  # the active model again: nothing changes
            return
        self.model = after
        same_codec = before is not None and before.codec == after.codec
        self._step(ModelSwitched(same_codec))
        self.last_phrase = None  # a `repeat` fallback never plays the old model's answer
        if not same_codec:  # tokens of another representation mean nothing to it
            self.candidates = None
        self.epoch += 1  # what the old model is still generating is stale
        self.waiting.clear()
        self.missed.clear()
        if bar_end is None:
            self.scheduler.flush((self.channel_for(before),))
        else:
            self.scheduler.cut(bar_end)  # the old model's phrase ends on the bar line
        now = self.now()
        at = self.clock.time_at(bar_end) if bar_end is not None else None
        self.observe(OutputCut(now, now if at is None else at, f"model {after.name}"))
        self._publish()
        log.info("model %s active%s", after.name, "" if bar_end is None else f" from beat {bar_end:g}")
        if self.params.mode == "similar" and isinstance(library := self._library(), str):
            log.warning("mode similar plays nothing with %s: %s", after.name, library)
        self.model_switched(ready.requester)

    # ---- MIDI learn ---------------------------------------------------------------------------------
    def _control(self, event: ControlIn) -> None:
        outcome = self.learn.on_control(event.control, event.value, self.now())
        if isinstance(outcome, Learned):
            log.info("MIDI learn: %s → %s", event.control.describe(), outcome.target)
            self.learn_changed(self._save_mappings())
        elif isinstance(outcome, Move):
            self._move(outcome)
        elif event.control.kind == "note" and event.beat is not None:
            # Not learn's after all (the MIDI thread read the view before learning ended): an ordinary note.
            self.apply(NoteIn(event.t, event.beat, event.control.channel, event.control.number, event.value))

    def _move(self, move: Move) -> None:
        target = move.target
        if target.kind == "model":
            model = self.pending_model.model if self.pending_model is not None else self.model  # the newest chosen
            current = model.name if model is not None else None
            choices = self.model_names()
        else:
            current = getattr(self.params, target.param) if target.param else None
            choices = target.choices
            if target.param == "mode" and isinstance(self._library(), str):  # a mode it can choose now
                target = replace(target, choices=tuple(mode for mode in choices if mode != "similar"))
        args = target.arguments(move.control, move.value, move.previous, current, choices)
        if args is not None:
            self.dispatch(target.address, args)

    def _save_mappings(self) -> str | None:
        """Write the mappings file and publish the mappings; the error, as a sentence, when the file was not written
        (the mappings work all the same)."""
        self._publish()
        try:
            self.learn.save()
        except OSError as failure:
            reason = failure.strerror or str(failure)
            error = (f"the MIDI mappings work now but were not saved to {self.learn.path} ({reason}); check that "
                     "the file and its folder are writable")
            log.warning("%s", error)
            return error
        return None

    # ---- commands (run on the engine thread through call()) ----------------------------------------
    def set_param(self, name: str, value) -> None:
        """A musical param (config.Params); mode and scale have their own effects."""
        if name == "mode":
            self.set_mode(value)
            return
        if getattr(self.params, name) == value:  # controllers send every param again when they reconnect
            return
        self.params = replace(self.params, **{name: value})  # checked against the ranges: ValueError
        if name in ("steps", "scale"):  # the interpolation path is decoded again with them
            self._step(PathStale())
        if name == "scale":
            log.info("scale lock: %s", value.name if value is not None else "off")
        self._publish()

    def set_mode(self, name: str) -> None:
        if name == self.params.mode:
            return
        if name == "similar" and isinstance(library := self._library(), str):
            raise Refused("not_ready", f"mode similar: {library}")
        self.params = replace(self.params, mode=name)
        self._step(ModeChanged(name, self.clock.beat_at(self.now())))
        self._flush(f"mode {name}")
        self._publish()

    def capture_slot(self, slot: str) -> None:
        """The model-length bars played up to the nearest bar line into a slot."""
        self._store(slot, self._captured(self._require_model()))

    def similar_input(self) -> tuple:
        """(tokens, model, index) of a /musicbridge/similar: the model-length bars played up to the nearest bar
        line, as capture reads them, for the QueryWorker (bridge/library.py) to encode and search."""
        model = self._require_model()
        library = self._library()
        if isinstance(library, str):
            raise Refused("not_ready", library)
        return self._captured(model), model, library

    def _captured(self, model: ModelRef):
        """The tokens of the model-length bars played up to the nearest bar line (a late press still counts)."""
        beat = self.clock.beat_at(self.now())
        end = round(beat / BEATS_PER_BAR) * BEATS_PER_BAR
        if not self.capture.window(end - model.bars * BEATS_PER_BAR, end):
            raise Refused("not_ready", f"nothing played in the {model.bars} bars before beat {end:g}")
        tokens, _, _ = window(self.capture, model.codec, model.bars, end)
        return tokens

    def store_slot(self, slot: str, tokens, model: ModelRef) -> None:
        """Tokens made for `model` (read from a file) into a slot."""
        if model is not self.model:
            raise Refused("not_ready", "the model changed while the file was read; send it again")
        self._store(slot, tokens)

    def _store(self, slot: str, tokens) -> None:
        self._step(SlotStored(slot, tokens))
        self._publish()

    def generate(self) -> None:
        """An answer now, as the current mode would, from the next bar line not less than a 16th away."""
        beat = self.clock.beat_at(self.now())
        bar_end = next_bar_line(beat)
        if bar_end - beat < STEP_BEATS:  # too close to the bar line to make it: the one after
            bar_end += BEATS_PER_BAR
        reason = self._at_bar(bar_end, beat, forced=True)
        if reason:
            raise Refused("not_ready", reason)

    def candidate(self, index: int) -> tuple:
        """(tokens, start beat, bars, codec) of candidate `index` of the last answer."""
        if self.candidates is None:
            raise Refused("not_ready", "no generation yet")
        rows, start_beat, n_bars, codec = self.candidates
        if index >= len(rows):
            raise Refused("out_of_range", f"index {index}: the last generation has {len(rows)} candidate(s)")
        return rows[index], start_beat, n_bars, codec

    def panic(self) -> None:
        self._flush("panic")

    def learn_arm(self, target: str) -> None:
        """The next CC or note-on binds to `target` (the OSC route checked the name)."""
        self.learn.arm(target, self.now())
        log.info("MIDI learn: move a control for %s", target)
        self._publish()

    def learn_clear(self, target: str | None) -> int:
        """Forget the mappings of `target` (None: all, and an armed learn); how many were forgotten."""
        count = self.learn.clear(target)
        error = self._save_mappings()
        if error:
            raise Refused("internal", error)
        return count

    def _require_model(self) -> ModelRef:
        if self.model is None:
            raise Refused("not_ready", "no model loaded (start with --model or send /musicbridge/model/load)")
        return self.model

    def _publish(self) -> None:
        mappings = self.learn.listing()
        self.view = View(self.params, self.model, "".join(sorted(self.mode.slots)), self.last_latency_ms, mappings,
                         frozenset(control for _, control in mappings), self.learn.armed or "")
