"""A newcomer's mistakes end in one sentence with the fix and the documented exit status — never a traceback —
and `--help` shows how to type each parameter.

The optional extras are taken away for real: a package of the same name placed first on PYTHONPATH fails to
import exactly as a missing one does (ModuleNotFoundError naming it), in a real `python -m musicbridge` process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from musicbridge.cli import app
from musicbridge.cli_errors import EXIT_STATUS_HELP, USAGE_ERROR, USER_ERROR

ANSI = re.compile(r"\x1b\[[0-9;]*m")
BOX = re.compile(r"[│╭╮╰╯─]")  # rich's panel borders, between the wrapped lines of a help cell
WIDE = {"COLUMNS": "200"}  # help tables one row per parameter, so a type is never folded across lines
# What libjack and ALSA print on their own when there is no server / no sequencer.
LIBRARY_NOISE = ("Cannot connect to server", "jack server is not running", "JackShm", "ALSA lib")


def run_cli(*args: str, cwd: Path, hide: tuple[str, ...] = (), tmp_path: Path | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m musicbridge ARGS` in a real process; `hide` names modules made unimportable in it."""
    environment = {**os.environ, **(env or {})}
    if hide:
        shadow = tmp_path / "hidden_modules"
        for module in hide:
            package = shadow / module
            package.mkdir(parents=True, exist_ok=True)
            (package / "__init__.py").write_text(
                f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n")
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shadow), environment.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "musicbridge", *args], capture_output=True, text=True, cwd=cwd,
                          env=environment, timeout=120)


def flat(text: str) -> str:
    """Help text as one line of words: no colours, no panel borders, wrapped lines joined."""
    return " ".join(BOX.sub(" ", ANSI.sub("", text)).split())


def assert_one_sentence(result: subprocess.CompletedProcess, status: int, *fragments: str) -> None:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# -- missing extras -------------------------------------------------------------------------------------------


def test_png_without_matplotlib_fails_before_writing_anything(tmp_path):
    out = tmp_path / "ideas.mid"
    result = run_cli("generate", "sample", "-o", str(out), "-n", "2", "--png", cwd=tmp_path, hide=("matplotlib",),
                     tmp_path=tmp_path)
    assert_one_sentence(result, USER_ERROR, "--png needs matplotlib", "pip install 'musicbridge[plot]'")
    assert not out.exists() and not out.with_suffix(".png").exists()


@pytest.mark.parametrize("command", [["train", "--preset", "mel_2bar", "--data", "data/none"],
                                     ["export", "runs/none/best.pt", "-o", "exported/none"]])
def test_train_and_export_in_a_serve_only_install_name_the_install_line(tmp_path, command):
    result = run_cli(*command, cwd=tmp_path, hide=("torch",), tmp_path=tmp_path)
    assert_one_sentence(result, USER_ERROR, "needs torch", "pip install torch==2.13.0 'musicbridge[train]'")


# -- files and values -----------------------------------------------------------------------------------------


def test_generate_creates_the_missing_folder_of_its_output(tmp_path):
    out = tmp_path / "answers" / "today" / "ideas.mid"
    result = run_cli("generate", "sample", "-o", str(out), "--phrases", "1", "--seed", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0


def test_generate_into_a_path_through_a_file_is_one_sentence(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file where the output folder would be")
    result = run_cli("generate", "sample", "-o", str(blocker / "ideas.mid"), "-n", "1", cwd=tmp_path)
    assert_one_sentence(result, USER_ERROR, f"cannot write {blocker / 'ideas.mid'}: {blocker} is a file, not a folder",
                        "choose another -o path")


def test_an_unknown_log_level_is_a_usage_error_listing_the_levels(tmp_path):
    result = run_cli("serve", "--log-level", "verbose", cwd=tmp_path, env=WIDE)
    assert result.returncode == USAGE_ERROR and "Traceback" not in result.stderr
    assert "'verbose' is not one of debug, info, warning, error" in flat(result.stderr)


def test_ports_without_a_midi_system_prints_no_library_noise(tmp_path):
    env = {"JACK_DEFAULT_SERVER": f"no-such-server-{time.time_ns()}", "JACK_NO_START_SERVER": "1"}
    result = run_cli("ports", cwd=tmp_path, env=env)
    for noise in LIBRARY_NOISE:
        assert noise not in result.stderr, result.stderr
    if result.returncode != 0:  # no ALSA sequencer on this machine either
        assert_one_sentence(result, USER_ERROR, "no usable MIDI system", "To enable MIDI")


# -- exit statuses ----------------------------------------------------------------------------------------------


def test_exit_statuses_are_documented_and_kept():
    runner = CliRunner()
    top = runner.invoke(app, ["--help"], env=WIDE)
    assert " ".join(EXIT_STATUS_HELP.split()) in flat(top.output)
    # A problem with what was asked (training's own errors included): 1; a command line that does not parse: 2.
    no_run_directory = runner.invoke(app, ["train", "--data", "data/none"])
    assert no_run_directory.exit_code == USER_ERROR and "--out DIR" in no_run_directory.output
    unknown_option = runner.invoke(app, ["train", "--data", "data/none", "--no-such-option"])
    assert unknown_option.exit_code == USAGE_ERROR


# -- help -----------------------------------------------------------------------------------------------------


def command_paths(command, path=()):
    """Every command and group under `command`, as the words that name it."""
    yield list(path)
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


def test_help_shows_how_to_type_each_parameter():
    runner = CliRunner()
    paths = list(command_paths(typer.main.get_command(app)))
    assert ["generate", "sample"] in paths and ["serve"] in paths and ["data", "build"] in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env=WIDE)
        assert result.exit_code == 0, (path, result.output)
        text = ANSI.sub("", result.output)
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "<bool>" not in text and "list[" not in text and "{" not in usage, (path, text)
    assert "--phrases -n" in flat(runner.invoke(app, ["generate", "sample", "--help"], env=WIDE).output)
    assert "[OPTIONS] MIDI_IN" in flat(runner.invoke(app, ["generate", "continue", "--help"], env=WIDE).output)
    interpolate = flat(runner.invoke(app, ["generate", "interpolate", "--help"], env=WIDE).output)
    assert "not counting them" in interpolate and "A first and B last" in interpolate
    serve = flat(runner.invoke(app, ["serve", "--help"], env=WIDE).output)
    assert "phrases on the path, A and B included" in serve
