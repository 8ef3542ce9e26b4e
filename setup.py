"""Package discovery for the one import root, `musicbridge`; everything else about the project is in pyproject.toml.

pyproject.toml maps the stage folders into `musicbridge` ([tool.setuptools] package-dir: core/ → musicbridge,
bridge/ → musicbridge.bridge, …). setuptools' own discovery cannot follow such a mapping, and a hand-written list
drops any subpackage nobody adds to it (it still imports in an editable install and is missing from the wheel),
so the packages are found here: each mapped folder and every folder below it, the shipped model folders
(core/shipped/<name>/, …/continuation/) included — they hold no Python but are package data.
"""

import sys
from pathlib import Path

from setuptools import find_namespace_packages, setup

if sys.version_info >= (3, 11):
    import tomllib
else:  # the build requirement tomli (pyproject.toml [build-system])
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent
NOT_PACKAGES = ("__pycache__", "*.__pycache__", "*.egg-info")


def discovered_packages(package_dir: dict[str, str]) -> list[str]:
    """Every package under the mapped folders, named by the mapping (core/data → musicbridge.data)."""
    packages = []
    for name, folder in package_dir.items():
        packages.append(name)
        packages += [f"{name}.{sub}" for sub in find_namespace_packages(ROOT / folder, exclude=NOT_PACKAGES)]
    return sorted(set(packages))


PACKAGE_DIR = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
setup(packages=discovered_packages(PACKAGE_DIR))
