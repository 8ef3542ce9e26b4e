"""Reading a built dataset: memory-mapped token arrays plus the manifest that says how they were made."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicbridge.codecs import Codec, codec_from_description

SPLIT_NAMES = ("train", "valid", "test")
VERIFY_CHUNK_ROWS = 65_536  # windows checked at a time: a few MB whatever the dataset's size


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
        file = self.path / f"{name}.npy"
        try:
            return np.load(file, mmap_mode="r")
        except FileNotFoundError:
            raise DatasetError(f"{file} is missing; build the dataset again with `musicbridge data build`") from None
        except (ValueError, OSError, EOFError) as error:  # "mmap length is greater than file size", a bad header
            raise DatasetError(f"{file} is damaged ({error}); build the dataset again with "
                               "`musicbridge data build`") from None

    def origins(self, name: str) -> np.ndarray:
        """Where each window of a split comes from: (n, 3) int32 rows of piece (numbered across the build, so
        unique in "all" too), voice (the piece's instrument) and bar (the 4-beat bar the window starts on).
        DatasetError for a dataset built before builds wrote them (`<split>_origins.npy`)."""
        from musicbridge.data.build import ORIGINS_SUFFIX  # the writer's own file name

        if name == "all":
            return np.concatenate([self.origins(each) for each in SPLIT_NAMES])
        if name not in SPLIT_NAMES:
            raise DatasetError(f"unknown split {name!r}; choose one of {', '.join(SPLIT_NAMES)} or all")
        file = self.path / f"{name}{ORIGINS_SUFFIX}"
        try:
            origins = np.load(file, allow_pickle=False)
        except FileNotFoundError:
            raise DatasetError(f"{self.path} has no {file.name} (it was built before datasets recorded the piece of "
                               "each window); build it again with `musicbridge data build` and the same sources "
                               "and options: the windows and the hash come out the same, with the origins "
                               "beside them") from None
        except (ValueError, OSError, EOFError) as error:
            raise DatasetError(f"{file} is damaged ({error}); build the dataset again with "
                               "`musicbridge data build`") from None
        if origins.ndim != 2 or origins.shape != (len(self.split(name)), 3):
            raise DatasetError(f"{file} holds {origins.shape} rows for {len(self.split(name))} windows of {name}.npy "
                               "(the files come from different builds); build the dataset again with "
                               "`musicbridge data build`")
        return origins

    def verify(self) -> None:
        """DatasetError naming the file when a split is not what the manifest says: integer tokens inside the
        vocabulary, (n, steps) windows, and arrays whose hash is the manifest's (a dataset edited or mixed up
        after it was built). Reads every split once, in chunks (bounded memory)."""
        from musicbridge.data.build import dataset_hash  # the writer's own hash

        vocab = self.codec.vocab_size
        arrays = {}
        for name in SPLIT_NAMES:
            array = self.split(name)
            file = self.path / f"{name}.npy"
            if not np.issubdtype(array.dtype, np.integer):
                raise DatasetError(f"{file} holds {array.dtype} tokens; tokens are integers (uint16) — build the "
                                   "dataset again with `musicbridge data build`")
            if array.ndim != 2 or array.shape[1] != self.steps:
                raise DatasetError(f"{file} holds windows of shape {array.shape[1:]}, the manifest says {self.steps} "
                                   "steps — build the dataset again with `musicbridge data build`")
            for start in range(0, len(array), VERIFY_CHUNK_ROWS):
                chunk = np.asarray(array[start:start + VERIFY_CHUNK_ROWS])
                low, high = (int(chunk.min()), int(chunk.max())) if chunk.size else (0, 0)
                if low < 0 or high >= vocab:
                    token = low if low < 0 else high
                    raise DatasetError(f"{file} holds token {token}, outside the vocabulary of {self.codec.name} "
                                       f"({vocab} tokens: 0..{vocab - 1}) — build the dataset again with `musicbridge data build`")
            arrays[name] = array
        if dataset_hash(self.codec, arrays) != self.hash:
            raise DatasetError(f"{self.path / 'manifest.json'}: the arrays do not match the manifest's hash (a split "
                               "was changed or copied from another dataset) — build the dataset again with "
                               "`musicbridge data build`")


def load_dataset(path: str | os.PathLike) -> Dataset:
    path = Path(path)
    manifest_file = path / "manifest.json"
    if not manifest_file.is_file():
        raise DatasetError(f"{path} is not a dataset (no manifest.json); build one with `musicbridge data build`")
    try:
        manifest = json.loads(manifest_file.read_text())
        for key in ("representation", "steps", "hash"):
            manifest[key]  # noqa: B018 — a manifest without them is not one `data build` wrote
    except (ValueError, KeyError, TypeError) as error:
        raise DatasetError(f"{manifest_file} is not a dataset manifest ({type(error).__name__}: {error}); build the "
                           "dataset again with `musicbridge data build`") from None
    return Dataset(path, manifest, codec_from_description(manifest["representation"]))
