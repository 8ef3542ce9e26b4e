"""The attribute knobs live: an OSC message on /musicbridge/param/attr/<name> sets the engine's param, the engine's
next request carries it to the worker, and the worker decodes z + α·v with the model's vectors (a tiny export on a
fake clock; the OSC datagram goes through the real dispatcher and the daemon's real handler)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from musicbridge.benchmarks.fuzz_osc import message
from musicbridge.bridge.clock import Clock
from musicbridge.bridge.config import ATTRIBUTE_PARAMS, ATTRIBUTE_RANGE, Params
from musicbridge.bridge.daemon import Bridge
from musicbridge.bridge.engine import Engine, TransportChanged
from musicbridge.bridge.generator import ModelRef, run_model
from musicbridge.bridge.learn import learn_targets
from musicbridge.bridge.modes import trigger_beat
from musicbridge.bridge.osc import LEARN_TARGETS, ROUTES, OscServer
from musicbridge.bridge.scheduler import Scheduler
from musicbridge.codecs import BEATS_PER_BAR
from musicbridge.runtime import load_model

BPM = 120.0
CLIENT = ("127.0.0.1", 9)  # the sender of the test's datagrams (its error replies go nowhere)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny melody model exported with --data: it has attribute vectors."""
    from test_attributes import write_dataset

    from musicbridge.cli import app
    from musicbridge.export.testing import save_model_checkpoint, tiny_model

    tmp = tmp_path_factory.mktemp("knobs")
    checkpoint = save_model_checkpoint(tiny_model("melody"), tmp / "best.pt", dataset_hash=write_dataset(tmp / "data"))
    result = CliRunner().invoke(app, ["export", str(checkpoint), "-o", str(tmp / "out"), "--data", str(tmp / "data"),
                                      "--parity-sequences", "8", "--prior-windows", "8"])
    assert result.exit_code == 0, result.output
    return tmp / "out"


class Rig:
    """An engine in `sample` mode on a fake clock, behind the OSC dispatcher and the daemon's handlers."""

    def __init__(self, model):
        self.t = 1000.0
        self.clock = Clock("internal", BPM)
        self.scheduler = Scheduler(self.clock, None, now=lambda: self.t)
        self.requests = []
        self.model = ModelRef.of("tiny", model)
        self.engine = Engine(Params(mode="sample"), self.clock, self.scheduler, self.requests.append, lambda m: 0,
                             self.model, seed=7, now=lambda: self.t)
        self.clock.on_event = lambda kind, beat: self.engine.post(TransportChanged(kind, beat))
        bridge = Bridge.__new__(Bridge)  # the daemon's OSC handlers, on this engine (no ports, no threads)
        bridge.engine = self.engine
        self.osc = OscServer(bridge, "127.0.0.1", 0, 9)
        self.clock.play(self.t)
        self.engine.pump()

    def send(self, address: str, *args) -> None:
        self.osc.handle_packet(message(address, *args), CLIENT)

    def run_to(self, beat: float) -> None:
        target = self.clock.time_at(beat)
        while self.t < target:
            self.t = min(target, self.t + self.engine.wait_s(self.t))
            self.engine.pump()
        self.engine.pump()

    def close(self) -> None:
        self.osc.close()


def test_every_attribute_has_a_param_route_and_a_learn_target():
    routes = {route.address: route for route in ROUTES}
    for param, attribute in ATTRIBUTE_PARAMS.items():
        route = routes[f"/musicbridge/param/attr/{attribute}"]
        assert route.param == param and hasattr(Bridge, route.handler)
        (arg,) = route.args
        assert (arg.type, arg.low, arg.high) == ("f", *ATTRIBUTE_RANGE)
        assert getattr(Params(), param) == 0.0
        target = LEARN_TARGETS[param]
        assert target.kind == "range" and target.address == route.address
        assert target.arguments(target_control(), 127, None, 0.0, ()) == (ATTRIBUTE_RANGE[1],)
    assert set(learn_targets(ROUTES, "/musicbridge")) >= set(ATTRIBUTE_PARAMS)
    with pytest.raises(ValueError, match=r"attr_density 3.5 is outside -3..3"):
        Params(attr_density=3.5)
    assert Params(attr_density=1.5, attr_range=0.0).attributes() == {"density": 1.5}


def target_control():
    from musicbridge.bridge.learn import Control

    return Control("cc", 0, 21)


def test_an_osc_knob_reaches_the_workers_request_and_moves_z(tiny):
    model = load_model(tiny)
    rig = Rig(model)
    try:
        rig.send("/musicbridge/param/attr/density", 1.5)
        rig.send("/musicbridge/param/attr/stepwise", -2.0)
        rig.send("/musicbridge/param/attr/register", 4.0)  # out of range: refused, nothing changes
        assert (rig.engine.params.attr_density, rig.engine.params.attr_stepwise) == (1.5, -2.0)
        assert rig.engine.params.attr_register == 0.0
        rig.run_to(trigger_beat(BEATS_PER_BAR))
        (request,) = rig.requests
        assert request.kind == "sample" and request.attributes == {"density": 1.5, "stepwise": -2.0}
        # The worker decodes the moved codes: what the runtime plays with those knobs, not without them.
        tokens, _ = run_model(model, request)
        expected = model.sample_prior(request.variations, request.temperature, seed=request.seed,
                                      attributes=request.attributes)
        np.testing.assert_array_equal(tokens, expected)
        rig.send("/musicbridge/param/attr/density", 0.0)
        rig.send("/musicbridge/param/attr/stepwise", 0.0)
        rig.run_to(trigger_beat(BEATS_PER_BAR * 3) + 0.01)  # sample mode: one phrase every 2 bars
        assert rig.requests[-1].attributes == {}
        np.testing.assert_array_equal(run_model(model, rig.requests[-1])[0],
                                      model.sample_prior(1, rig.requests[-1].temperature, seed=rig.requests[-1].seed))
    finally:
        rig.close()


def test_a_model_without_vectors_plays_as_if_the_knobs_were_at_zero(tiny, tmp_path):
    stripped = tmp_path / "stripped"
    shutil.copytree(tiny, stripped)
    metadata = json.loads((stripped / "model.json").read_text())
    del metadata["attributes"]
    (stripped / "model.json").write_text(json.dumps(metadata))
    model = load_model(stripped)
    rig = Rig(model)
    try:
        rig.send("/musicbridge/param/attr/range", 2.5)
        rig.run_to(trigger_beat(BEATS_PER_BAR))
        (request,) = rig.requests
        assert request.attributes == {"range": 2.5}
        tokens, _ = run_model(model, request)  # no error live: the knob does nothing on this model
        np.testing.assert_array_equal(tokens, model.sample_prior(1, request.temperature, seed=request.seed))
    finally:
        rig.close()
