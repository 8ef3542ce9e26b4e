"""Arrays-only .npz files shipped beside a model's graphs (prior.npz, attributes.npz): read without pickles,
every fault a sentence the caller puts after the file's name."""

from __future__ import annotations

import io
import zipfile

import numpy as np


def read_arrays(data: bytes, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays `names` of the .npz bytes `data` (allow_pickle=False); a ValueError that says what is wrong."""
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array")
        with archive:
            arrays = {name: archive[name] for name in names if name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:  # np.load's ways of saying "not npz"
        reason = str(error).split(". ")[0]  # numpy's first sentence, not its advice to unpickle the file
        raise ValueError(f"it is not a readable .npz file of arrays ({type(error).__name__}: {reason})") from None
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ValueError(f"it lacks the array(s) {', '.join(missing)}")
    return arrays
