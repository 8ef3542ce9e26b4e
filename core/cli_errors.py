"""How a musicbridge command ends: its exit status and, on a problem, one sentence with the fix — no traceback.

Every command follows the same statuses (`musicbridge --help` lists them):
0 done; 1 the command could not do what was asked (a missing file, a model that does not load, an optional
dependency this install lacks) and says what to do; 2 the command line itself does not parse (an unknown option,
a value of the wrong type or out of range: typer's usage error); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import importlib
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

USER_ERROR = 1
USAGE_ERROR = 2  # typer's own status for a command line that does not parse; commands never raise it themselves
INTERRUPTED = 130  # typer's status for Ctrl-C (128 + SIGINT, as shells report it)

EXIT_STATUS_HELP = (
    f"Exit status: 0 done; {USER_ERROR} the command could not do what was asked (the message says the fix); "
    f"{USAGE_ERROR} the command line does not parse (unknown option, value of the wrong type or out of range); "
    f"{INTERRUPTED} interrupted."
)

TRAIN_INSTALL = "pip install torch==2.13.0 'musicbridge[train]'"  # the pin: an open range pulls a CUDA build
# The optional dependencies (pyproject's extras) by import name, and the install line that brings each.
EXTRAS = {
    "torch": TRAIN_INSTALL,
    "onnx": TRAIN_INSTALL,
    "matplotlib": "pip install 'musicbridge[plot]'",
    "music21": "pip install 'musicbridge[corpus]'",
    "aalink": "pip install 'musicbridge[link]'",  # serve --clock link (aalink is GPL-3.0)
}


def print_error(console: Console, message: str) -> None:
    """`error: message` on one line; the message is text, not markup (`musicbridge[plot]` stays as typed)."""
    console.print(f"[red]error:[/red] {escape(message)}")


def fail(console: Console, message: str) -> NoReturn:
    """Print `error: message` (one sentence with the fix) and end the command with USER_ERROR."""
    print_error(console, message)
    raise typer.Exit(USER_ERROR)


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The sentence for an optional dependency this install lacks; None when `error` is about anything else."""
    module = (error.name or "").partition(".")[0]
    if module not in EXTRAS:
        return None
    return f"this command needs {module}, which this installation lacks: {EXTRAS[module]}"


def require_extra(module: str, what: str, console: Console) -> None:
    """Fail now, before the command writes anything, when `what` (e.g. "--png") needs a missing extra."""
    try:
        importlib.import_module(module)
    except ImportError:
        fail(console, f"{what} needs {module}, which this installation lacks: {EXTRAS[module]} (or leave {what} out)")
