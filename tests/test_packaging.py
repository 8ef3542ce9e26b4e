"""The wheel installs one import root, `musicbridge`, with every package of every mapped stage folder in it."""

import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
SHIPPED = ROOT / PACKAGE_DIR["musicbridge"] / "shipped"
# What setuptools says when a folder is left out of the packages, or the license is written the deprecated way.
BUILD_WARNINGS = ("absent from the `packages` configuration", "License classifiers are deprecated",
                  "project.license` as a TOML table is deprecated")


def in_wheel(path: Path) -> str:
    """Where a file of the source tree lands in the wheel, by the package-dir mapping."""
    relative = path.relative_to(ROOT)
    name, folder = max(((n, f) for n, f in PACKAGE_DIR.items() if relative.is_relative_to(f)),
                       key=lambda item: len(item[1]))
    return "/".join([*name.split("."), *relative.relative_to(folder).parts])


def source_files(pattern: str, under: Path) -> list[Path]:
    return [p for p in under.rglob(pattern) if p.is_file() and "__pycache__" not in p.parts]


def test_wheel_holds_every_package_and_the_shipped_models(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "-v"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    )
    for warning in BUILD_WARNINGS:
        assert warning not in build.stdout + build.stderr, warning
    (wheel,) = tmp_path.glob("musicbridge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"musicbridge", next(t for t in top_level if t.endswith(".dist-info"))}
    # Every module of every mapped folder: a subpackage nobody listed anywhere is in the wheel too.
    modules = [path for folder in PACKAGE_DIR.values() for path in source_files("*.py", ROOT / folder)]
    assert len([m for m in modules if m.name == "__init__.py"]) >= len(PACKAGE_DIR) + 1  # + musicbridge.data
    missing = [str(m.relative_to(ROOT)) for m in modules if in_wheel(m) not in names]
    assert not missing, f"left out of the wheel: {missing}"
    # The shipped models (graphs, model.json, card, a continuation/ sub-model where there is one).
    shipped = source_files("*", SHIPPED)
    assert {p.name for p in shipped} >= {"model.json", "MODEL_CARD.md", "encoder.int8.onnx", "sampler.int8.onnx"}
    assert not [str(p.relative_to(ROOT)) for p in shipped if in_wheel(p) not in names]
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "musicbridge = musicbridge.cli:main" in entry_points
    # no test, data or run folders leak into the wheel
    assert not any(part in name for name in names for part in ("tests/", "/runs/", "conftest", "setup.py"))


def test_console_script_help_lists_the_core_commands():
    result = subprocess.run(["musicbridge", "--help"], capture_output=True, text=True, check=True)
    for command in ("data", "ports", "version"):
        assert command in result.stdout
    assert subprocess.run(["musicbridge", "version"], capture_output=True, text=True).stdout.strip() == __import__("musicbridge").__version__
