"""The wheel installs one import root, `musicbridge`, with every stage folder mapped under it."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("bridge", "models", "training", "export", "benchmarks", "data")


def test_wheel_holds_one_import_root_with_every_stage(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "-q"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("musicbridge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"musicbridge", next(t for t in top_level if t.endswith(".dist-info"))}
    for stage in STAGES:
        assert f"musicbridge/{stage}/__init__.py" in names, stage
    for module in ("notes.py", "codecs.py", "cli.py", "midi_ports.py", "data/build.py"):
        assert f"musicbridge/{module}" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "musicbridge = musicbridge.cli:main" in entry_points
    # no test, data or run folders leak into the wheel
    assert not any(part in name for name in names for part in ("tests/", "/runs/", "conftest"))


def test_console_script_help_lists_the_core_commands():
    result = subprocess.run(["musicbridge", "--help"], capture_output=True, text=True, check=True)
    for command in ("data", "ports", "version"):
        assert command in result.stdout
    assert subprocess.run(["musicbridge", "version"], capture_output=True, text=True).stdout.strip() == __import__("musicbridge").__version__
