"""`musicbridge train --nproc-per-node N` re-runs itself under torchrun with every option it was given.

The relaunch command line is built from the command's declared parameters; this test gives every parameter
`train` declares — found from its signature, so an option added later is covered without editing the test — a
value unlike its default, and checks that the relaunched command line parses back to the same values.
"""

from __future__ import annotations

import typing
from pathlib import Path

import typer

from musicbridge.cli import app
from musicbridge.training.commands import relaunch_arguments, train

LEFT_OUT = ("nproc_per_node",)  # each of torchrun's processes is one process


def sample_value(name: str, annotation, default):
    """A value of the parameter's type that differs from its default."""
    if annotation is bool:
        return not default
    if annotation is int:
        return (default or 0) + 7
    if annotation is float:
        return (default or 0.0) + 0.25
    if annotation is str:
        return f"{name}-value"
    if annotation is Path:
        return Path("given") / name
    if typing.get_origin(annotation) is list and typing.get_args(annotation) == (str,):
        return [f"{name}=1", f"{name}=2"]
    raise AssertionError(f"train's {name} is a {annotation}: give it a sample value here")


def command_line(command, values: dict) -> list[str]:
    """`values` as the words a user types, each option by its long name."""
    words = []
    for param in command.params:
        value = values[param.name]
        name = max(param.opts, key=len)
        if param.is_flag:
            words.append(name if value else max(param.secondary_opts or [name], key=len))
        else:
            words += [part for item in (value if isinstance(value, list) else [value]) for part in (name, str(item))]
    return words


def test_the_relaunch_passes_every_declared_option():
    command = typer.main.get_command(app).commands["train"]
    hints = typing.get_type_hints(train)
    values = {p.name: sample_value(p.name, hints[p.name], p.default) for p in command.params}
    assert {p.name for p in command.params} >= {"preset", "data", "set_", "resume", "progress", "threads"}
    given = command.make_context("train", command_line(command, values))
    for param in command.params:
        assert given.params[param.name] == values[param.name] != param.default, param.name

    relaunched = relaunch_arguments(given, leave_out=LEFT_OUT)
    assert relaunched[0] == "train" and "--nproc-per-node" not in relaunched
    again = command.make_context("train", relaunched[1:])
    defaults = {p.name: p.default for p in command.params if p.name in LEFT_OUT}
    assert again.params == given.params | defaults


def test_options_left_unset_stay_unset():
    command = typer.main.get_command(app).commands["train"]
    given = command.make_context("train", ["--data", "data/mine", "--nproc-per-node", "2"])
    relaunched = relaunch_arguments(given, leave_out=LEFT_OUT)
    again = command.make_context("train", relaunched[1:])
    assert again.params == given.params | {"nproc_per_node": 1}
    assert "--steps" not in relaunched and "--out" not in relaunched  # None: the preset's and the default run dir
