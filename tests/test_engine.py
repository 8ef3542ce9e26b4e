"""The engine and the mode decisions on a fake clock, without threads (bridge/engine.py, bridge/modes.py).

A real internal Clock and a real Scheduler (its sending thread not started, no port) read a time the test moves
by hand; the engine is pumped the way its thread would be, waking where it would wake (Engine.wait_s). Requests
the engine sends to the model are kept, and the test answers them with phrases of known notes, so every check
is about beats and events: which request at which bar line, which notes are scheduled from which beat.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicbridge.bridge.capture import CaptureBuffer
from musicbridge.bridge.clock import Clock
from musicbridge.bridge.config import Params
from musicbridge.bridge.engine import AnswerReady, Engine, ModelReady, NoteIn, Refused, TransportChanged
from musicbridge.bridge.generator import ModelRef, Phrase, Request
from musicbridge.bridge.modes import (
    Answered,
    BarLine,
    ModeChanged,
    ModeState,
    Moment,
    SlotStored,
    next_path_index,
    step,
    trigger_beat,
)
from musicbridge.bridge.scheduler import Scheduler
from musicbridge.codecs import BEATS_PER_BAR, get_codec
from musicbridge.notes import Note

MELODY = get_codec("melody")
BPM = 120.0


def tokens(*pitches: int, bars: int = 2, every: float = 1.0) -> np.ndarray:
    """A melody phrase: `pitches` one after another, each `every` beats long, from beat 0."""
    notes = [Note(p, 100, i * every, (i + 1) * every) for i, p in enumerate(pitches)]
    return MELODY.encode(notes, n_steps=bars * MELODY.steps_per_bar)


class Rig:
    """An engine on a fake clock; `requests` holds what it sent to the model, `sent` the gen/* sequences."""

    def __init__(self, mode: str = "continue", model: ModelRef | None = None, **params):
        self.t = 1000.0
        self.clock = Clock("internal", BPM)
        self.scheduler = Scheduler(self.clock, None, now=lambda: self.t)
        self.requests: list[Request] = []
        self.sent: list[tuple[int, list[Note], int, float]] = []
        self.switched: list[object] = []
        self.model = model or ModelRef("melody", MELODY, 2)
        self.engine = Engine(Params(mode=mode, **params), self.clock, self.scheduler, self.requests.append,
                             lambda model: 0, self.model, send_phrase=lambda *a: self.sent.append(a),
                             model_switched=self.switched.append, now=lambda: self.t)
        self.clock.on_event = lambda kind, beat: self.engine.post(TransportChanged(kind, beat))
        self.clock.play(self.t)  # beat 0 now
        self.engine.pump()

    @property
    def beat(self) -> float:
        return self.clock.beat_at(self.t)

    def run_to(self, beat: float) -> None:
        """Move time to `beat`, pumping the engine wherever its thread would wake on the way."""
        target = self.clock.time_at(beat)
        while self.t < target:
            self.t = min(target, self.t + self.engine.wait_s(self.t))
            self.engine.pump()
        self.engine.pump()

    def play(self, *notes: tuple[int, float, float]) -> None:
        """(pitch, start beat, end beat) notes, played in time (each start and end at its beat)."""
        events = sorted([(s, p, 100) for p, s, _ in notes] + [(e, p, 0) for p, _, e in notes])
        for beat, pitch, velocity in events:
            self.run_to(beat)
            self.engine.post(NoteIn(self.t, self.beat, 0, pitch, velocity))
            self.engine.pump()

    def answer(self, request: Request, phrase_tokens: np.ndarray, path=()) -> None:
        """The model's answer to `request`, arriving now."""
        notes = request.model.codec.decode(phrase_tokens)
        phrase = Phrase(request, phrase_tokens, notes, [phrase_tokens], request.bars, 1.0, 1.0, list(path))
        self.engine.post(AnswerReady(phrase))
        self.engine.pump()

    def scheduled(self, since: float = -math.inf) -> list[tuple[float, int]]:
        """(start beat, pitch) of the notes scheduled from beat `since` on (the scheduler's thread does not run
        here, so notes stay scheduled after their beat has passed)."""
        return [(n.on_beat, n.pitch) for n in self.scheduler.pending() if n.on_beat >= since]

    def sent_pitches(self) -> list[tuple[float, list[int]]]:
        """(start beat, pitches) of every gen/* sequence sent."""
        return [(start, [n.pitch for n in notes]) for _, notes, _, start in self.sent]


TRIGGER = trigger_beat(BEATS_PER_BAR)  # the trigger point of the first bar line (beat 3.8125)


# ---- the pure functions ------------------------------------------------------------------------------
def test_step_never_changes_a_state_in_place():
    capture = CaptureBuffer()
    moment = Moment(Params(mode="mutate"), ModelRef("melody", MELODY, 2), capture)
    before = ModeState()
    answered, _ = step(before, Answered("sample", tokens(60), 2), moment)
    assert before.last_tokens is None and answered.last_tokens is not None
    mutating, _ = step(answered, ModeChanged("mutate", 8.0), moment)
    after, request = step(mutating, BarLine(12.0, 11.8), moment)
    assert mutating.next_phrase_beat is None and after.next_phrase_beat == 12.0 + 2 * BEATS_PER_BAR
    assert request.kind == "mutate" and request.model is moment.model
    stored, _ = step(after, SlotStored("a", tokens(62)), moment)
    assert "a" not in after.slots and "a" in stored.slots


@pytest.mark.parametrize(("ending", "walk"), [
    ("hold", [1, 2, 2, 2, 2]),
    ("loop", [1, 2, 0, 1, 2]),
    ("pingpong", [1, 2, 1, 0, 1]),
])
def test_path_endings(ending, walk):
    index, direction, seen = 0, 1, []
    for _ in walk:
        index, direction = next_path_index(3, index, direction, ending)
        seen.append(index)
    assert seen == walk


# ---- every mode, on the fake clock ------------------------------------------------------------------
def test_continue_answers_every_bar_played_in_from_the_next_bar():
    rig = Rig("continue")
    rig.play((60, 0.0, 1.0), (64, 1.0, 2.0), (67, 2.0, 3.5))
    rig.run_to(TRIGGER - 0.01)
    assert rig.requests == []  # nothing before the trigger point
    rig.run_to(TRIGGER)
    (request,) = rig.requests
    assert (request.kind, request.start_beat, request.model) == ("continue", 4.0, rig.model)
    assert [n.pitch for n in MELODY.decode(request.tokens)] == [60, 64, 67]  # the two bars up to the bar line
    rig.answer(request, tokens(72, 74, 76, 77, 79, 81, 83, 84))  # beats 4..12
    rig.play((62, 4.5, 5.0))
    rig.run_to(TRIGGER + 4)
    second = rig.requests[-1]
    assert second.start_beat == 8.0 and [n.pitch for n in MELODY.decode(second.tokens)] == [60, 64, 67, 62]
    rig.answer(second, tokens(50, 52))
    # The newer answer replaces the rest of the older one from its start.
    assert rig.scheduled(since=4.0) == [(4.0, 72), (5.0, 74), (6.0, 76), (7.0, 77), (8.0, 50), (9.0, 52)]
    rig.run_to(TRIGGER + 8)
    assert len(rig.requests) == 2  # bar 3: nothing played, nothing held → no answer


def test_continue_answers_a_note_held_across_the_bar_line():
    rig = Rig("continue")
    rig.play((60, 3.0, 9.0))  # held through bar 2
    rig.run_to(TRIGGER + 4)
    assert [r.start_beat for r in rig.requests] == [4.0, 8.0]


def test_call_response_waits_for_the_silence_then_answers_once():
    rig = Rig("call-response", silence=3.0)
    rig.play((60, 0.0, 0.5), (62, 0.5, 1.0), (64, 1.0, 1.5))
    rig.run_to(TRIGGER)
    assert rig.requests == []  # 4 − 1.5 = 2.5 beats of silence at the first bar line: not yet 3
    rig.run_to(TRIGGER + 4)
    (request,) = rig.requests
    assert request.start_beat == 8.0
    assert [n.pitch for n in MELODY.decode(request.tokens)] == [60, 62, 64]  # the phrase up to the bar after it
    rig.run_to(TRIGGER + 8)
    assert len(rig.requests) == 1  # answered once: silence alone asks nothing more
    rig.play((65, 13.0, 13.5))
    rig.run_to(TRIGGER + 16)
    assert [r.start_beat for r in rig.requests] == [8.0, 20.0]


def test_call_response_does_not_answer_while_a_note_is_held():
    rig = Rig("call-response", silence=0.5)
    rig.play((60, 0.0, 9.5))
    rig.run_to(TRIGGER + 4)
    assert rig.requests == []
    rig.run_to(TRIGGER + 8)
    assert [r.start_beat for r in rig.requests] == [12.0]


@pytest.mark.parametrize(("ending", "points"), [
    ("hold", ["A", "M", "B", "B", "B"]),
    ("loop", ["A", "M", "B", "A", "M"]),
    ("pingpong", ["A", "M", "B", "M", "A"]),
])
def test_interpolate_walks_the_path_then_its_ending(ending, points):
    rig = Rig("off", steps=3, bars=1, ending=ending)
    a, m, b = tokens(60, bars=1), tokens(64, bars=1), tokens(67, bars=1)
    rig.engine.store_slot("a", a, rig.model)
    rig.engine.store_slot("b", b, rig.model)
    rig.engine.set_mode("interpolate")
    rig.run_to(TRIGGER)
    (request,) = rig.requests
    assert request.kind == "interpolate" and request.steps == 3
    assert np.array_equal(request.tokens, a) and np.array_equal(request.other, b)
    rig.answer(request, a, path=(a, m, b))
    rig.run_to(TRIGGER + 4 * (len(points) - 1))
    assert len(rig.requests) == 1  # the rest of the path is replayed: no model call
    name = {60: "A", 64: "M", 67: "B"}
    assert [(start, name[pitches[0]]) for start, pitches in rig.sent_pitches()] == \
        [(4.0 * (i + 1), point) for i, point in enumerate(points)]


def test_interpolate_needs_both_slots():
    rig = Rig("interpolate")
    with pytest.raises(Refused, match="slots a and b"):
        rig.engine.generate()
    rig.run_to(TRIGGER + 8)
    assert rig.requests == []


def test_sample_asks_every_bars_bars():
    rig = Rig("sample", bars=2)
    rig.run_to(TRIGGER + 8)
    assert [(r.kind, r.start_beat) for r in rig.requests] == [("sample", 4.0), ("sample", 12.0)]
    assert rig.requests[0].reference_density is None  # nothing played yet to match
    rig.answer(rig.requests[1], tokens(60, 62, 64, 65))
    rig.run_to(TRIGGER + 16)
    assert rig.requests[2].start_beat == 20.0 and rig.requests[2].reference_density == pytest.approx(2.0)


def test_loop_plays_the_last_answer_back_to_back():
    rig = Rig("sample", bars=2)
    rig.run_to(TRIGGER)
    rig.answer(rig.requests[0], tokens(60, 62))
    rig.engine.set_mode("loop")
    rig.run_to(TRIGGER + 20)
    assert len(rig.requests) == 1  # a loop calls no model
    loops = rig.sent_pitches()[1:]
    assert [start for start, _ in loops] == [4.0, 12.0, 20.0]  # every 2 bars, from the first bar line after
    assert all(pitches == [60, 62] for _, pitches in loops)


def test_loop_and_mutate_need_an_answer_first():
    for mode, reason in (("loop", "nothing to loop yet"), ("mutate", "nothing to mutate yet")):
        rig = Rig(mode)
        with pytest.raises(Refused, match=reason):
            rig.engine.generate()


def test_mutate_keeps_its_source_fixed():
    rig = Rig("sample", bars=1)
    rig.run_to(TRIGGER)
    source = tokens(60, 64, bars=1)
    rig.answer(rig.requests[0], source)
    rig.engine.set_mode("mutate")  # at the trigger point: the flush re-arms this bar line
    for k in range(3):  # each mutation answered with something else: the source does not drift to it
        rig.run_to(TRIGGER + 4 * k)
        request = rig.requests[-1]
        assert (request.kind, request.start_beat) == ("mutate", 4.0 + 4 * k)
        assert np.array_equal(request.tokens, source)
        rig.answer(request, tokens(70 + k, bars=1))
    assert [pitches for _, pitches in rig.sent_pitches()] == [[60, 64], [70], [71], [72]]


def test_off_asks_nothing_and_refuses_generate():
    rig = Rig("off")
    rig.play((60, 0.0, 3.0))
    rig.run_to(TRIGGER + 8)
    assert rig.requests == []
    with pytest.raises(Refused, match="mode is off"):
        rig.engine.generate()


def test_generate_asks_now_for_the_next_bar_line():
    rig = Rig("sample")
    rig.run_to(1.0)
    rig.engine.generate()
    assert rig.requests[-1].start_beat == 4.0
    rig.run_to(3.9)  # less than a 16th before the bar line: the one after
    rig.engine.generate()
    assert rig.requests[-1].start_beat == 8.0


# ---- answers that are no longer current ----------------------------------------------------------------
def test_an_answer_from_before_a_flush_is_dropped_and_counted():
    rig = Rig("sample")
    rig.run_to(TRIGGER)
    request = rig.requests[0]
    rig.engine.set_mode("continue")  # a mode change flushes: the answer is stale
    rig.answer(request, tokens(60))
    assert rig.engine.counts["stale"] == 1 and rig.sent == [] and rig.scheduled() == []
    rig.engine.set_mode("sample")
    rig.run_to(TRIGGER + 4)
    request = rig.requests[-1]
    rig.clock.stop(rig.t)  # a Stop flushes too
    rig.engine.pump()
    rig.answer(request, tokens(60))
    assert rig.engine.counts["stale"] == 2 and rig.sent == []


def test_an_answer_older_than_the_one_playing_is_dropped():
    rig = Rig("sample", bars=1)
    rig.run_to(TRIGGER + 4)
    first, second = rig.requests
    rig.answer(second, tokens(64, bars=1))
    rig.answer(first, tokens(60, bars=1))
    assert rig.engine.counts["overtaken"] == 1
    assert [pitches for _, pitches in rig.sent_pitches()] == [[64]]


# ---- the model switch ------------------------------------------------------------------------------
def test_a_model_switch_is_applied_at_the_bar_line_and_the_old_models_answers_never_play():
    rig = Rig("sample", bars=2)
    other = ModelRef("other", MELODY, 2)
    rig.run_to(TRIGGER)
    rig.answer(rig.requests[0], tokens(60, 62, 64, 65, 67, 69, 71, 72))  # the old model plays beats 4..12
    rig.run_to(5.0)
    rig.engine.generate()  # the old model is asked for beat 8 ...
    in_flight = rig.requests[-1]
    assert (in_flight.model, in_flight.start_beat) == (rig.model, 8.0)
    rig.engine.post(ModelReady(1, other, requester="client"))  # ... and a load finishes while it generates
    rig.engine.pump()
    assert rig.engine.model is rig.model and rig.switched == []  # not yet: the switch waits for the bar line
    rig.run_to(TRIGGER + 4)
    assert rig.engine.model is other and rig.switched == ["client"]
    new = rig.requests[-1]
    assert (new.model, new.start_beat) == (other, 8.0)
    rig.answer(in_flight, tokens(80, 81))  # the old model's answer comes after the switch: never played
    assert rig.engine.counts["stale_model"] == 1
    rig.answer(new, tokens(74, 76))
    # The old model's phrase ends on the bar line; the new model's answer plays from it.
    assert rig.scheduled() == [(4.0, 60), (5.0, 62), (6.0, 64), (7.0, 65), (8.0, 74), (9.0, 76)]
    assert [pitches[0] for _, pitches in rig.sent_pitches()] == [60, 74]


def test_two_loads_end_on_the_last_requested_whatever_order_they_finish_in():
    rig = Rig("sample")
    first, second = ModelRef("first", MELODY, 2), ModelRef("second", MELODY, 2)
    rig.engine.post(ModelReady(2, second))
    rig.engine.post(ModelReady(1, first))  # requested before, finished after
    rig.run_to(TRIGGER)
    assert rig.engine.model is second and rig.engine.view.model is second
    rig.run_to(TRIGGER + 8)
    assert {r.model for r in rig.requests} == {second}


def test_a_load_while_stopped_switches_at_once():
    rig = Rig("sample")
    rig.clock.stop(rig.t)
    rig.engine.pump()
    other = ModelRef("other", MELODY, 2)
    rig.engine.post(ModelReady(1, other))
    rig.engine.pump()
    assert rig.engine.model is other


def test_a_switch_to_another_representation_forgets_its_tokens():
    rig = Rig("sample")
    rig.engine.store_slot("a", tokens(60), rig.model)
    rig.run_to(TRIGGER)
    rig.answer(rig.requests[0], tokens(60))
    drums = ModelRef("drums", get_codec("drums"), 2)
    rig.engine.post(ModelReady(1, drums))
    rig.run_to(TRIGGER + 8)
    assert rig.engine.model is drums and rig.engine.view.slots == "" and rig.engine.last_phrase is None
    with pytest.raises(Refused, match="model changed"):
        rig.engine.store_slot("b", tokens(60), rig.model)  # read for the model that was active before


# ---- the deadline policy -----------------------------------------------------------------------------
def test_a_missed_deadline_repeats_the_last_answer_and_the_late_answer_takes_over():
    rig = Rig("sample", bars=1)
    rig.run_to(TRIGGER)
    rig.answer(rig.requests[0], tokens(60, 62, 64, 65, bars=1))
    rig.run_to(TRIGGER + 4)
    late = rig.requests[1]
    assert late.start_beat == 8.0
    rig.run_to(8.0 - 0.02)
    assert rig.engine.counts["deadline_missed"] == 0
    rig.run_to(8.0 - 0.005)  # past its deadline (the start minus the 5 ms output lead: 0.01 beat at 120 bpm)
    assert rig.engine.counts["deadline_missed"] == 1
    assert rig.scheduled(since=8.0) == [(8.0, 60), (9.0, 62), (10.0, 64), (11.0, 65)]  # the last answer again
    assert rig.sent_pitches()[-1] == (8.0, [60, 62, 64, 65])
    rig.run_to(9.5)
    rig.answer(late, tokens(70, 72, 74, 76, bars=1))
    assert rig.engine.counts["late_answers"] == 1
    # From its first note not yet due: 70 and 72 were due at 8 and 9 and are dropped, never sent late.
    assert rig.scheduled(since=8.0) == [(10.0, 74), (11.0, 76)]
    assert rig.scheduler.late_dropped == 2


def test_hold_starts_nothing_new_at_a_missed_deadline():
    rig = Rig("sample", bars=2, fallback="hold")
    rig.run_to(TRIGGER)
    rig.answer(rig.requests[0], tokens(60, 62, 64, 65, 67, 69, 71, 72))
    rig.run_to(TRIGGER + 8)
    assert rig.requests[1].start_beat == 12.0
    rig.run_to(12.0)
    assert rig.engine.counts["deadline_missed"] == 1 and len(rig.sent) == 1
    assert rig.scheduled(since=12.0) == []  # the first answer ended at 12: silent until the answer comes


def test_hold_lets_the_answer_that_plays_play_on():
    rig = Rig("continue", bars=2, fallback="hold")
    rig.play((60, 0.0, 3.0))
    rig.run_to(TRIGGER)
    rig.answer(rig.requests[0], tokens(60, 62, 64, 65, 67, 69, 71, 72))  # beats 4..12
    rig.play((62, 4.0, 6.0))
    rig.run_to(8.0)  # the request for beat 8 missed its deadline
    assert rig.engine.counts["deadline_missed"] == 1
    assert rig.scheduled(since=8.0) == [(8.0, 67), (9.0, 69), (10.0, 71), (11.0, 72)]  # its 2nd bar plays on


def test_the_engine_wakes_for_the_trigger_and_the_deadline():
    rig = Rig("sample")
    rig.run_to(1.0)
    to_trigger = rig.clock.time_at(TRIGGER) - rig.t
    assert rig.engine.wait_s(rig.t) == pytest.approx(min(to_trigger, 0.02))
    rig.run_to(TRIGGER)
    deadline = rig.scheduler.deadline(4.0)
    rig.t = deadline - 0.003
    assert rig.engine.wait_s(rig.t) == pytest.approx(0.003)
