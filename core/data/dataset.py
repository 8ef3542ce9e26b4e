"""Reading a built dataset: memory-mapped token arrays plus the manifest that says how they were made."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicbridge.codecs import Codec, codec_from_description

SPLIT_NAMES = ("train", "valid", "test")


class DatasetError(ValueError):
    """A directory that is not a musicbridge dataset."""


@dataclass
class Dataset:
    path: Path
    manifest: dict
    codec: Codec

    @property
    def steps(self) -> int:
        return int(self.manifest["steps"])

    @property
    def hash(self) -> str:
        return self.manifest["hash"]

    def split(self, name: str) -> np.ndarray:
        """Token windows (n, steps) of one split ("all" joins them), memory-mapped where possible."""
        if name == "all":
            return np.concatenate([self.split(each) for each in SPLIT_NAMES])
        if name not in SPLIT_NAMES:
            raise DatasetError(f"unknown split {name!r}; choose one of {', '.join(SPLIT_NAMES)} or all")
        return np.load(self.path / f"{name}.npy", mmap_mode="r")


def load_dataset(path: str | os.PathLike) -> Dataset:
    path = Path(path)
    manifest_file = path / "manifest.json"
    if not manifest_file.is_file():
        raise DatasetError(f"{path} is not a dataset (no manifest.json); build one with `musicbridge data build`")
    manifest = json.loads(manifest_file.read_text())
    return Dataset(path, manifest, codec_from_description(manifest["representation"]))
