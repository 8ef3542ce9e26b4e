"""MIDI learn without MIDI: the targets read from the route table, what a control's value does to each kind of
target, the table the engine owns, and the mappings file (bridge/learn.py, bridge/engine.py).

The end-to-end path — real CCs and notes through JACK into `musicbridge serve` — is tests/test_learn_jack.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from musicbridge.bridge.clock import Clock
from musicbridge.bridge.config import ATTRIBUTE_PARAMS, MODES, PARAM_CHOICES, PARAM_RANGES, Params
from musicbridge.bridge.engine import ControlIn, Engine, TransportChanged, View
from musicbridge.bridge.generator import ModelRef
from musicbridge.bridge.learn import (
    ACTIONS,
    LEARN_WINDOW_S,
    Control,
    Learn,
    Learned,
    MappingsError,
    Move,
    control_of,
    dumps,
    learn_targets,
    load_mappings,
    tomllib,
)
from musicbridge.bridge.osc import LEARN_TARGETS, ROUTES, Arg, P, Route
from musicbridge.bridge.scheduler import Scheduler
from musicbridge.codecs import get_codec

CC21 = Control("cc", 0, 21)
PAD = Control("note", 9, 36)


def move(name: str, control: Control, value: int, previous: int | None = None, current=None, choices=()):
    return LEARN_TARGETS[name].arguments(control, value, previous, current, choices)


# ---- targets ----------------------------------------------------------------------------------------------
def test_every_param_with_a_range_or_choices_and_every_action_is_a_target():
    assert set(PARAM_RANGES) | set(ATTRIBUTE_PARAMS) | set(PARAM_CHOICES) | set(ACTIONS) | {"model"} == set(LEARN_TARGETS)
    learn_route = next(r for r in ROUTES if r.address == f"{P}/learn")
    assert learn_route.args[0].choices == tuple(LEARN_TARGETS)  # what /musicbridge/learn accepts
    for target in LEARN_TARGETS.values():
        route = next(r for r in ROUTES if r.address == target.address)
        if target.kind == "action":
            route.parse(target.args)  # the dispatcher takes what the action sends


def test_a_new_param_route_is_learnable_without_touching_learn():
    """An attribute knob (say) added as a param route registers itself."""
    knob = Route(f"{P}/param/density", (Arg("amount", "f", -2.0, 2.0),), "osc_density", "more notes", param="density")
    targets = learn_targets((*ROUTES, knob), P)
    assert targets["density"].kind == "range" and (targets["density"].low, targets["density"].high) == (-2.0, 2.0)
    assert targets["density"].arguments(CC21, 127, None, 0.0, ()) == (2.0,)


def test_messages_become_controls():
    assert control_of([0xB3, 21, 100]) == (Control("cc", 3, 21), 100)
    assert control_of([0x99, 36, 90]) == (Control("note", 9, 36), 90)
    assert control_of([0x89, 36, 64]) == (Control("note", 9, 36), 0)  # a note-off whatever its release velocity
    assert control_of([0xC0, 5]) is None and control_of([0xE0, 0, 64]) is None


# ---- what a value does ------------------------------------------------------------------------------------
def test_a_cc_spans_a_params_range_and_integers_round():
    assert move("temperature", CC21, 0) == (0.0,)
    assert move("temperature", CC21, 127) == (2.0,)
    assert move("temperature", CC21, 64) == pytest.approx((64 / 127 * 2.0,))
    assert move("bars", CC21, 0) == (1,) and move("bars", CC21, 127) == (16,)
    assert move("bars", CC21, 60) == (round(1 + 15 * 60 / 127),)
    assert isinstance(move("bars", CC21, 60)[0], int)
    assert move("novelty", PAD, 127) == (4.0,)  # a note-on's velocity, like a CC value
    assert move("novelty", PAD, 0) is None  # its release changes nothing


def test_a_cc_picks_a_choice_by_zone_and_a_note_steps_through_them():
    modes = MODES
    assert move("mode", CC21, 0) == (modes[0],)
    assert move("mode", CC21, 127) == (modes[-1],)
    zones = [move("mode", CC21, v)[0] for v in range(128)]
    assert sorted(set(zones), key=modes.index) == list(modes)  # every choice reachable, in order
    assert move("mode", CC21, 3, previous=1) is None  # same zone as before: nothing new
    assert move("mode", PAD, 100, current="continue") == ("call-response",)
    assert move("mode", PAD, 100, current=modes[-1]) == (modes[0],)  # wraps around
    assert move("mode", PAD, 0, current="continue") is None
    names = ("melody_a", "melody_b")
    assert move("model", PAD, 90, current="melody_a", choices=names) == ("melody_b",)
    assert move("model", CC21, 127, choices=names) == ("melody_b",)
    assert move("model", CC21, 127, choices=()) is None


def test_an_action_fires_on_a_press_only():
    assert move("generate", CC21, 127) == ()
    assert move("generate", CC21, 127, previous=127) is None  # held, or a knob sweeping on: once
    assert move("generate", CC21, 0, previous=127) is None  # the release
    assert move("generate", CC21, 64, previous=63) == ()
    assert move("generate", CC21, 63, previous=0) is None
    assert move("capture_b", PAD, 1) == ("b",)
    assert move("capture_b", PAD, 0) is None


# ---- the table ---------------------------------------------------------------------------------------------
def test_learning_binds_the_next_cc_or_note_on_and_moves_bound_controls():
    learn = Learn(LEARN_TARGETS)
    assert learn.on_control(CC21, 10, 0.0) is None  # not learning, not bound: ordinary input
    learn.arm("temperature", 0.0)
    assert learn.on_control(PAD, 0, 1.0) is None  # a note-off never binds
    assert learn.on_control(CC21, 10, 1.0) == Learned("temperature", CC21)
    assert learn.armed is None
    moved = learn.on_control(CC21, 20, 2.0)
    assert isinstance(moved, Move) and moved.target.name == "temperature" and moved.previous is None
    assert learn.on_control(CC21, 30, 2.0).previous == 20
    learn.arm("panic", 3.0)
    assert learn.on_control(PAD, 100, 3.0) == Learned("panic", PAD)
    learn.arm("mode", 4.0)
    assert learn.on_control(CC21, 5, 4.0) == Learned("mode", CC21)  # learned again: it moves, one target each
    assert learn.listing() == (("panic", PAD), ("mode", CC21))
    with pytest.raises(ValueError, match="nothing called"):
        learn.arm("tempo", 5.0)


def test_an_armed_learn_expires_and_clear_forgets():
    learn = Learn(LEARN_TARGETS)
    learn.arm("bars", 0.0)
    assert not learn.expire(LEARN_WINDOW_S - 1)
    assert learn.on_control(CC21, 1, LEARN_WINDOW_S + 1) is None and learn.armed is None
    learn.bindings = {CC21: "bars", PAD: "generate", Control("cc", 0, 22): "bars"}
    assert learn.clear("bars") == 2 and learn.listing() == (("generate", PAD),)
    learn.arm("mode", 0.0)
    assert learn.clear() == 1 and learn.listing() == () and learn.armed is None


# ---- the file ----------------------------------------------------------------------------------------------
def test_mappings_round_trip_through_the_file(tmp_path):
    path = tmp_path / "mappings.toml"
    assert load_mappings(path, LEARN_TARGETS) == {}  # not there yet: empty
    learn = Learn(LEARN_TARGETS, path, {CC21: "temperature", PAD: "generate"})
    learn.save()
    assert [p.name for p in tmp_path.iterdir()] == ["mappings.toml"]  # no temporary file left behind
    data = tomllib.loads(path.read_text())
    assert data["mapping"] == [{"target": "temperature", "channel": 1, "cc": 21},
                               {"target": "generate", "channel": 10, "note": 36}]
    assert Learn.open(LEARN_TARGETS, path).bindings == {CC21: "temperature", PAD: "generate"}
    assert list(Learn.open(LEARN_TARGETS, path).bindings) == [CC21, PAD]  # in the order learned


def test_a_file_that_cannot_be_written_raises_and_leaves_nothing(tmp_path):
    learn = Learn(LEARN_TARGETS, tmp_path / "gone" / "mappings.toml", {CC21: "bars"})
    with pytest.raises(OSError):
        learn.save()
    assert list(tmp_path.iterdir()) == []


GOOD = '[[mapping]]\ntarget = "bars"\nchannel = 1\ncc = 7\n'


@pytest.mark.parametrize(("text", "line", "says"), [
    (GOOD + "\n[[mapping]]\ntarget = 'tempo'\nchannel = 1\ncc = 8\n", 6, "target 'tempo' is not one of"),
    (GOOD + "\n[[mapping]]\ntarget = 'bars'\nchannel = 17\ncc = 8\n", 6, "channel must be an integer 1-16"),
    (GOOD + "\n[[mapping]]\ntarget = 'bars'\nchannel = 1\ncc = 8\nnote = 9\n", 6, "exactly one of cc"),
    (GOOD + "\n[[mapping]]\ntarget = 'bars'\nchannel = 1\nnote = 128\n", 6, "note must be an integer 0-127"),
    (GOOD + "\n[[mapping]]\ntarget = 'mode'\nchannel = 1\ncc = 7\n", 6, "CC 7 on channel 1 is mapped twice"),
    (GOOD + "\n[[mapping]]\ntarget = 'mode'\nchannel = 1\ncc = 8\nknob = 1\n", 6, "unknown key(s) knob"),
    (GOOD + "speed = 3\n", 1, "unknown key(s) speed"),  # a key added to the last table
    ("[[mapping]]\ntarget = 'bars'\nchannel = 1\ncc = = 7\n", 4, "not valid TOML"),
    ("title = 'mine'\n" + GOOD, 1, "unknown key 'title'"),
])
def test_a_bad_file_is_an_error_naming_the_line(tmp_path, text, line, says):
    path = tmp_path / "mappings.toml"
    path.write_text(text)
    with pytest.raises(MappingsError) as error:
        load_mappings(path, LEARN_TARGETS)
    message = str(error.value)
    assert f"line {line}" in message and says in message and "fix or remove it" in message, message


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(MappingsError, match="does not exist"):
        load_mappings(tmp_path / "nowhere" / "m.toml", LEARN_TARGETS)


def test_dumps_writes_what_a_person_would():
    text = dumps({PAD: "capture_a"})
    assert text.startswith("# musicbridge MIDI mappings")
    assert '[[mapping]]\ntarget = "capture_a"\nchannel = 10\nnote = 36\n' in text


# ---- the engine owns it --------------------------------------------------------------------------------------
class EngineRig:
    """An engine on a fake clock (no threads) with a learn table; what it dispatches is recorded."""

    def __init__(self, path=None):
        self.t = 1000.0
        self.clock = Clock("internal", 120.0)
        self.dispatched: list[tuple[str, tuple]] = []
        self.changes: list[str | None] = []
        model = ModelRef("melody", get_codec("melody"), 2)
        self.engine = Engine(Params(), self.clock, Scheduler(self.clock, None, now=lambda: self.t), lambda r: None,
                             lambda m: 0, model, now=lambda: self.t, learn=Learn(LEARN_TARGETS, path),
                             dispatch=lambda address, args: self.dispatched.append((address, args)),
                             learn_changed=self.changes.append, model_names=lambda: ("melody", "other"))
        self.clock.on_event = lambda kind, beat: self.engine.post(TransportChanged(kind, beat))
        self.clock.play(self.t)
        self.engine.pump()

    def control(self, control: Control, value: int) -> None:
        self.engine.post(ControlIn(self.t, self.clock.beat_at(self.t), control, value))
        self.engine.pump()


def test_the_engine_binds_publishes_saves_and_dispatches(tmp_path):
    rig = EngineRig(tmp_path / "m.toml")
    engine = rig.engine
    engine.learn_arm("temperature")
    assert engine.view.learning == "temperature" and engine.view.learned == frozenset()
    rig.control(CC21, 100)
    assert engine.view.learning == "" and engine.view.learned == {CC21}
    assert engine.view.mappings == (("temperature", CC21),) and rig.changes == [None]
    assert "cc = 21" in (tmp_path / "m.toml").read_text()
    rig.control(CC21, 127)
    assert rig.dispatched == [(f"{P}/param/temperature", (2.0,))]
    engine.learn_arm("model")
    rig.control(PAD, 80)
    rig.control(PAD, 80)
    assert rig.dispatched[-1] == (f"{P}/model/load", ("other",))  # the next of model_names after the active one
    assert engine.learn_clear(None) == 2 and engine.view.learned == frozenset()
    assert tomllib.loads((tmp_path / "m.toml").read_text()) == {}


def test_a_note_that_learning_no_longer_wants_is_captured(tmp_path):
    """The MIDI thread read the view while learning; the engine had just bound something else."""
    rig = EngineRig()
    rig.control(Control("note", 0, 60), 100)  # neither armed nor bound by the time it is handled
    assert (0, 60) in rig.engine.capture.held and rig.dispatched == []


def test_an_unsaved_mapping_still_works_and_says_so(tmp_path):
    rig = EngineRig(tmp_path / "gone" / "m.toml")
    rig.engine.learn_arm("bars")
    rig.control(CC21, 0)
    assert rig.engine.view.learned == {CC21}
    assert rig.changes and "were not saved" in rig.changes[-1]


def test_the_engine_forgets_an_armed_learn_after_the_window():
    rig = EngineRig()
    rig.engine.learn_arm("bars")
    rig.t += LEARN_WINDOW_S + 1
    rig.engine.pump()
    assert rig.engine.view.learning == "" and rig.changes == [None]


def test_view_fields_have_defaults():
    """Code that builds a View the old way (params, model, slots, latency) keeps working."""
    fields = [f for f in dataclasses.fields(View) if f.default is dataclasses.MISSING]
    assert [f.name for f in fields] == ["params", "model", "slots", "last_latency_ms"]


# ---- the Max for Live device's Learn control ---------------------------------------------------------------
def test_the_devices_learn_menu_offers_targets_the_daemon_learns():
    """The Learn menu stores its item in [zl reg]; the Learn button sends it as /musicbridge/learn <target>."""
    import json

    from test_patches import MAXPAT, MaxGraph, object_name

    graph = MaxGraph(json.loads(MAXPAT.read_text()))
    (menu,) = [b for b in graph.named("live.menu") if graph.boxes[b]["varname"] == "Learn target"]
    items = graph.boxes[menu]["saved_attribute_attributes"]["valueof"]["parameter_enum"]
    assert set(items) <= set(LEARN_TARGETS) and "temperature" in items and "generate" in items
    (store,) = [(dst, inlet) for outlet, dst, inlet in graph.edges[menu] if outlet == 1]  # the item's text
    assert graph.boxes[store[0]]["text"] == "zl reg" and store[1] == 1
    (button,) = [b for b in graph.named("live.text") if graph.boxes[b]["varname"] == "Learn"]
    (bang,) = [dst for _, dst, _ in graph.edges[button]]
    assert graph.boxes[bang]["text"] == "t b" and [(d, i) for _, d, i in graph.edges[bang]] == [(store[0], 0)]
    (prepend,) = [dst for outlet, dst, _ in graph.edges[store[0]] if outlet == 0]
    assert graph.boxes[prepend]["text"] == f"prepend {P}/learn"
    assert [object_name(graph.boxes[d]) for _, d, _ in graph.edges[prepend]] == ["s"]
