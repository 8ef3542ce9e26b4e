"""The musical params' one table (bridge/config.py): the OSC routes, the `serve` options, Params and the status
reply all read it, so a range changed there changes everywhere."""

from __future__ import annotations

import pytest
import typer

from musicbridge.bridge.commands import register
from musicbridge.bridge.config import BPM_RANGE, PARAM_CHOICES, PARAM_RANGES, Params, ServeConfig
from musicbridge.bridge.osc import REPLIES, ROUTES, STATUS_PARAMS


def serve_options() -> dict:
    app = typer.Typer()
    register(app)
    command = typer.main.get_command(app)
    serve = command.commands["serve"] if hasattr(command, "commands") else command
    return {p.name: p for p in serve.params}


def test_routes_options_and_params_share_the_ranges_and_defaults():
    routes = {route.address: route for route in ROUTES}
    options = serve_options()
    defaults = Params()
    for name, (low, high) in PARAM_RANGES.items():
        (arg,) = routes[f"/musicbridge/param/{name}"].args
        assert (arg.low, arg.high, arg.type) == (low, high, "i" if Params.is_integer(name) else "f")
        option = options[name]
        assert (option.min, option.max, option.default) == (low, high, getattr(defaults, name))
    (bpm,) = routes["/musicbridge/transport/tempo"].args
    assert (bpm.low, bpm.high) == BPM_RANGE == (options["bpm"].min, options["bpm"].max)
    assert options["bpm"].default == ServeConfig().bpm
    (index,) = routes["/musicbridge/variation"].args
    assert index.high == PARAM_RANGES["variations"][1] - 1  # a candidate index: below the most variations
    for name, choices in PARAM_CHOICES.items():
        route = routes["/musicbridge/mode" if name == "mode" else f"/musicbridge/param/{name}"]
        assert route.args[0].choices == choices


@pytest.mark.parametrize("name", list(PARAM_RANGES))
def test_params_refuse_what_the_table_does(name):
    params = Params()
    low, high = PARAM_RANGES[name]
    setattr(params, name, low)
    setattr(params, name, high)
    for outside in (low - 1, high + 1, float("nan")):
        with pytest.raises(ValueError, match=f"{name} .* outside"):
            setattr(params, name, outside)
    assert getattr(params, name) == high  # a refused value changes nothing
    with pytest.raises(ValueError, match="outside"):
        Params(**{name: high + 1})


def test_params_refuse_unknown_choices():
    with pytest.raises(ValueError, match="mode 'jazz' is not one of"):
        Params(mode="jazz")
    with pytest.raises(ValueError, match="ending"):
        Params().ending = "fade"


def test_the_status_reply_carries_every_param():
    fields = next(r.signature for r in REPLIES if r.address == "/musicbridge/status").split()
    names = [field.split(":")[0] for field in fields]
    assert names[-len(STATUS_PARAMS):] == list(STATUS_PARAMS)
    assert {*PARAM_RANGES, *PARAM_CHOICES, "scale"} <= set(names)
