"""The JACK benchmarks' own command lines (argparse: they also run as `python -m`), with `--help` shaped like the
typer CLI's: a "Usage:" line, as `musicbridge bench-clock --help` shows it beside every other command."""

from __future__ import annotations

import argparse


class _UsageFormatter(argparse.HelpFormatter):
    def add_usage(self, usage, actions, groups, prefix=None):
        super().add_usage(usage, actions, groups, "Usage: " if prefix is None else prefix)

    def _metavar_formatter(self, action, default_metavar):
        if action.metavar is None and action.choices is not None:
            action.metavar = default_metavar  # NAME, not {a,b,c}: the choices are listed in the help text
        return super()._metavar_formatter(action, default_metavar)

    def _get_help_string(self, action):
        text = super()._get_help_string(action) or ""
        if action.choices is not None and "choices:" not in text:
            text += f" (choices: {', '.join(str(choice) for choice in action.choices)})"
        return text


def benchmark_parser(command: str, description: str) -> argparse.ArgumentParser:
    """A parser for `musicbridge <command>` (also `python -m musicbridge.benchmarks.<module>`)."""
    return argparse.ArgumentParser(prog=f"musicbridge {command}", description=description,
                                   formatter_class=_UsageFormatter)
