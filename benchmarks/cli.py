"""The JACK benchmarks' own command lines (argparse: they also run as `python -m`), with `--help` shaped like the
typer CLI's: a "Usage:" line, as `musicbridge bench-clock --help` shows it beside every other command; and how
they end: the JSON of every run measured is written whatever happened after it, then the exit status says
whether the figures hold (0), mean nothing or broke a checked rule (EXIT_FAILED), or stopped short of the runs
asked for because the rig failed (EXIT_INCOMPLETE), with one sentence saying why."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

EXIT_FAILED = 1  # a run measured nothing (its figures mean nothing) or a rule the benchmark checks broke
EXIT_INCOMPLETE = 3  # the rig failed part way (a run could not start, the teardown failed); what ran is measured


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


def teardown(jack, workdir: Path, keep: bool) -> str | None:
    """Stop the benchmark's JACK server (a jack_rig.JackServer, or None) and remove the work directory unless
    `keep`; what went wrong, as one sentence, or None. Never raises: the figures are written after it."""
    problem = None
    if jack is not None:
        code = jack.process.poll() if jack.process is not None else None
        if code is not None:
            problem = f"the JACK server {jack.name} had already exited (code {code}) before the teardown"
        try:
            jack.stop()
        except Exception as error:  # noqa: BLE001 — whatever it is, the runs measured must still be written
            problem = f"stopping the JACK server {jack.name} failed ({type(error).__name__}: {error})"
    if keep:
        print(f"work directory kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return problem


def emit(result: dict, json_out: Path | None) -> None:
    """Print the JSON, and write it to `json_out` when given."""
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if json_out:
        json_out.write_text(text)


def conclude(name: str, result: dict, problems: list[str], advice: str) -> None:
    """Exit as the figures (already emitted) say: EXIT_FAILED naming `problems` (and what stopped the run, if
    anything did), EXIT_INCOMPLETE when result holds "stopped_early" or "teardown_failed" but what was measured
    holds; return when all is well."""
    incomplete = [result[key] for key in ("stopped_early", "teardown_failed") if result.get(key)]
    if problems:
        print(f"{name}: FAILED — {'; '.join([*problems, *incomplete])}. {advice}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    if incomplete:
        print(f"{name}: INCOMPLETE — {'; '.join(incomplete)}. The runs measured before that are in the JSON; run the "
              "benchmark again for the rest.", file=sys.stderr)
        sys.exit(EXIT_INCOMPLETE)
