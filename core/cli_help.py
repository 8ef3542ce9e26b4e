"""`--help` that shows how to type each parameter, whichever typer draws it.

Recent typer writes a type beside every parameter, including flags, which take no value (`--png <bool>` reads as
if `--png true` were wanted, and that is refused); a repeatable option as `<list[str]>`; a required argument as
`{midi_in}` in the usage line. `use_plain_help(app)` gives every command and group of an app (sub-apps included)
a class that draws flags bare, repeatable values as their element type, and arguments as NAME — the help of the
commands a stage adds later too, since it runs after they are registered. Older typer versions draw these well
already; there the class changes nothing.
"""

from __future__ import annotations

import re
import typing
from pathlib import PurePath

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import DefaultPlaceholder

REQUIRED_ARGUMENT = re.compile(r"^\{(?P<name>[^{}]+)\}(?P<more>(\.\.\.)?)$")  # typer's usage piece: {name} or {name}...


def _plain_parameter(param) -> None:
    """Give one parameter its plain help: no type for a flag, the element type for a list, NAME for an argument."""
    if param.param_type_name == "argument" and param.metavar is None:
        param.metavar = param.name.upper()
    descriptor = getattr(param, "type_descriptor", None)  # typer versions that draw types have one
    if descriptor is None:
        return
    if getattr(param, "is_flag", False):
        param.display_type_rich = lambda ctx=None: None  # the instance's own: typer asks each param for its type
    elif descriptor.is_list:
        (element,) = typing.get_args(descriptor.annotation)
        label = "path" if isinstance(element, type) and issubclass(element, PurePath) else element.__name__
        shown = f"<{label}>" + ("..." if param.param_type_name == "argument" else "")  # options: "repeatable" in help
        param.display_type_rich = lambda ctx=None, shown=shown: shown


class _PlainHelp:
    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            _plain_parameter(param)
        return params

    def collect_usage_pieces(self, ctx):
        pieces = super().collect_usage_pieces(ctx)
        return [REQUIRED_ARGUMENT.sub(r"\g<name>\g<more>", piece) for piece in pieces]


class PlainHelpCommand(_PlainHelp, TyperCommand):
    """A command whose --help shows how to type each parameter."""


class PlainHelpGroup(_PlainHelp, TyperGroup):
    """A group (the top-level command, `data`, `generate`) whose --help shows how to type each parameter."""


def use_plain_help(app: typer.Typer) -> None:
    """Draw the help of `app`, its commands and its sub-apps' commands with the plain-help classes (a class a
    command chose itself is kept)."""
    if isinstance(app.info.cls, DefaultPlaceholder) or app.info.cls in (None, TyperGroup):
        app.info.cls = PlainHelpGroup
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = PlainHelpCommand
    for group in app.registered_groups:
        use_plain_help(group.typer_instance)
