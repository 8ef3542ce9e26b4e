"""Embeddings: MIDI files → the latent vector (μ) of every window and of every file, an index of them, nearest
neighbours in it, and the retrieval scores that say whether an embedding is any good. Torch-free: `musicbridge
embed` / `similar` use it offline, and the daemon can load an index to answer live.

    index = build_index(load_model("mel_2bar"), midi_files(["library/"]))
    index.save("library.npz")
    index = EmbeddingIndex.load("library.npz")
    index.check_model(model)                      # refuses vectors of another model
    matches = index.nearest(model.encode(tokens)[0][0], k=5)   # [Match(file, bar, distance, voice, row)]
    index.tokens[matches[0].row]                  # the phrase itself, ready to play

Windows are cut by the dataset builder's rule (musicbridge.data.build.sequence_windows): each pitched instrument
of a file is its own melody (the highest note at each onset wins inside it; a drum model reads the drum
instruments), `model.bars` bars every `hop` bars, nearly silent windows left out, a melody out of range moved by
octaves, and MIDI files keep their own time — a library phrase is cut the way a model's training data was.

Distance: cosine (1 − cos) by default, Euclidean on request; docs/latent.md has the measurements behind it.
The index file is an .npz of plain arrays (read with allow_pickle=False; its layout is INDEX_ARRAYS below).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

import musicbridge
from musicbridge.codecs import Codec, codec_from_description
from musicbridge.data.build import BuildReport, WindowRules, sequence_windows
from musicbridge.data.sources import SourceError, WorkUnit, parse_unit, work_units
from musicbridge.notes import Note
from musicbridge.phrases import TOO_WIDE_DROP, window_tokens
from musicbridge.runtime import SHIPPED_DIR

INDEX_FORMAT = 1
COSINE, EUCLIDEAN = "cosine", "euclidean"
METRICS = (COSINE, EUCLIDEAN)
DEFAULT_METRIC = COSINE  # docs/latent.md: the better of the two on the shipped model's test split
ENCODE_BATCH = 256  # windows per encoder call
# The arrays of an index file: name → what each row holds (N windows, F files, Z latent size, T steps).
INDEX_ARRAYS = {
    "vectors": "(N, Z) float32: μ of each window",
    "tokens": "(N, T) uint16: the window's tokens, what was encoded (similar --out writes them as MIDI)",
    "file_index": "(N,) int32: the window's file, an index into files",
    "voice": "(N,) int32: the file's instrument it comes from (0 = the first the model reads)",
    "window": "(N,) int32: the window's number in its file (by voice, then bar)",
    "bar": "(N,) int32: the 4-beat bar the window starts on, from the file's start",
    "files": "(F,) str: the files, as found",
    "file_vectors": "(F, Z) float32: the mean of each file's window vectors",
    "meta": "() str: JSON — format, the model (name, preset, variant, encoder_sha256, dataset_hash, "
            "representation, bars, z_size), hop, musicbridge version, creation time, skipped files",
}
# meta keys that must agree between an index and the model a query is encoded with.
MODEL_IDENTITY = ("encoder_sha256", "dataset_hash", "representation", "bars", "z_size")


class EmbeddingError(ValueError):
    """An index that cannot be used: unreadable, of another format, or made with another model than the query's."""


class Match(NamedTuple):
    """One window of the library near a query."""

    file: str
    bar: int  # the 4-beat bar the window starts on in `file`
    distance: float
    voice: int  # the file's instrument (0 = the first the model reads)
    row: int  # the window's row in the index: index.tokens[row] is the phrase


class FileMatch(NamedTuple):
    """One file of the library near a query, by its mean vector."""

    file: str
    distance: float


# ---- distances ------------------------------------------------------------------------------------------------
def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def paired_distances(a: np.ndarray, b: np.ndarray, metric: str = DEFAULT_METRIC) -> np.ndarray:
    """(N,) distances between row i of a and row i of b (N, Z)."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if metric == COSINE:
        return 1.0 - (_unit(a) * _unit(b)).sum(-1)
    if metric == EUCLIDEAN:
        return np.linalg.norm(a - b, axis=-1)
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def distances(queries: np.ndarray, vectors: np.ndarray, metric: str = DEFAULT_METRIC) -> np.ndarray:
    """(Q, N) distances from each query (Q, Z) to each vector (N, Z): cosine = 1 − cos (0..2), or Euclidean."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if metric == COSINE:
        return 1.0 - _unit(queries) @ _unit(vectors).T
    if metric == EUCLIDEAN:
        squared = (queries**2).sum(1)[:, None] + (vectors**2).sum(1)[None, :] - 2.0 * queries @ vectors.T
        return np.sqrt(np.maximum(squared, 0.0))
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def _searchable(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, unit rows, squared norms), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors, _unit(vectors), (vectors**2).sum(1)


# ---- the index ------------------------------------------------------------------------------------------------
@dataclass(eq=False)  # arrays inside: == has no single meaning
class EmbeddingIndex:
    """Window vectors of a library of MIDI files, with where each window lies; `nearest` answers a query."""

    vectors: np.ndarray  # (N, Z) float32: μ of each window
    tokens: np.ndarray  # (N, T) uint16: each window's tokens
    file_index: np.ndarray  # (N,) int32: each window's file, an index into files
    voice: np.ndarray  # (N,) int32
    window: np.ndarray  # (N,) int32
    bar: np.ndarray  # (N,) int32
    files: list[str]  # (F,)
    file_vectors: np.ndarray  # (F, Z) float32: mean window vector of each file
    meta: dict = field(default_factory=dict)  # model identity, hop, version, skipped files (INDEX_ARRAYS["meta"])

    def __post_init__(self) -> None:
        # What every query reuses, computed once (an index is read-only once made): the vectors, their unit rows
        # (cosine) and squared norms (Euclidean) — a query is then one matrix-vector product.
        self._searchable = {"windows": _searchable(self.vectors), "files": _searchable(self.file_vectors)}

    @property
    def codec(self) -> Codec:
        return codec_from_description(self.meta["representation"])

    def __len__(self) -> int:
        return len(self.vectors)

    def nearest(self, vector: np.ndarray, k: int = 5, metric: str = DEFAULT_METRIC) -> list[Match]:
        """The k windows nearest to `vector` (Z,), nearest first."""
        rows, found = self._nearest_rows("windows", vector, k, metric)
        return [Match(self.files[self.file_index[row]], int(self.bar[row]), float(distance), int(self.voice[row]),
                      int(row)) for row, distance in zip(rows, found, strict=True)]

    def nearest_files(self, vector: np.ndarray, k: int = 5, metric: str = DEFAULT_METRIC) -> list[FileMatch]:
        """The k files whose mean window vector is nearest to `vector` (Z,)."""
        rows, found = self._nearest_rows("files", vector, k, metric)
        return [FileMatch(self.files[row], float(distance)) for row, distance in zip(rows, found, strict=True)]

    def _nearest_rows(self, which: str, vector: np.ndarray, k: int, metric: str):
        vectors, unit, squared = self._searchable[which]
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != vectors.shape[1]:
            raise ValueError(f"expected a vector of {vectors.shape[1]} values (the index's latent size), "
                             f"got {vector.shape[0]}")
        if metric == COSINE:
            found = 1.0 - unit @ _unit(vector)
        elif metric == EUCLIDEAN:
            found = np.sqrt(np.maximum(squared + vector @ vector - 2.0 * (vectors @ vector), 0.0))
        else:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        k = min(int(k), len(found))
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        candidates = np.argpartition(found, k - 1)[:k]  # the k nearest in any order: O(N)
        rows = candidates[np.lexsort((candidates, found[candidates]))]  # nearest first, ties by row
        return rows, found[rows]

    # -- model identity ---------------------------------------------------------------------------------------

    def check_model(self, model) -> None:
        """EmbeddingError unless `model` (a runtime Model) encodes the way the index's vectors were made:
        distances between the latents of two models mean nothing."""
        theirs, ours = model_identity(model), self.meta
        differing = [key for key in MODEL_IDENTITY if theirs[key] != ours.get(key)]
        if differing:
            raise EmbeddingError(
                f"the index was embedded with {ours.get('model')} (preset {ours.get('preset')}, variant "
                f"{ours.get('variant')}, encoder {str(ours.get('encoder_sha256'))[:12]}) and the query would be "
                f"encoded with {theirs['model']} (preset {theirs['preset']}, variant {theirs['variant']}, encoder "
                f"{theirs['encoder_sha256'][:12]}): they differ in {', '.join(differing)}. Query with "
                f"--model {ours.get('model')} (and its --variant), or embed the library again with this model")

    # -- files ------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index as an .npz (atomically: a temp file beside it, then a rename)."""
        path = Path(path)
        arrays = {
            "vectors": self.vectors.astype(np.float32), "tokens": self.tokens.astype(np.uint16),
            "file_index": self.file_index.astype(np.int32), "voice": self.voice.astype(np.int32),
            "window": self.window.astype(np.int32), "bar": self.bar.astype(np.int32),
            "files": np.asarray(self.files, dtype=str).reshape(-1),
            "file_vectors": self.file_vectors.astype(np.float32),
            "meta": np.asarray(json.dumps(self.meta)),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, **arrays)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> EmbeddingIndex:
        """Read an index file; EmbeddingError (with the fix) for anything that is not one this musicbridge wrote."""
        path = Path(path)
        again = "make it again with `musicbridge embed`"
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in INDEX_ARRAYS}
        except FileNotFoundError:
            raise EmbeddingError(f"no index file at {path}; make one with `musicbridge embed FILES -o {path}`") from None
        except KeyError as error:
            raise EmbeddingError(f"{path} is not a musicbridge index (no {error} array); {again}") from None
        except (ValueError, OSError, EOFError) as error:  # not a zip, truncated, an object array
            raise EmbeddingError(f"{path} is not a readable index ({type(error).__name__}: {error}); {again}") from None
        try:
            meta = json.loads(str(arrays["meta"]))
        except ValueError:
            raise EmbeddingError(f"{path}: its meta is not JSON; {again}") from None
        if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
            raise EmbeddingError(f"{path} is an index of format {meta.get('format') if isinstance(meta, dict) else '?'}"
                                 f"; this musicbridge reads format {INDEX_FORMAT} — {again}")
        n, files = len(arrays["vectors"]), arrays["files"]
        consistent = (arrays["vectors"].ndim == 2 and arrays["tokens"].shape[0] == n
                      and all(arrays[name].shape == (n,) for name in ("file_index", "voice", "window", "bar"))
                      and arrays["file_vectors"].shape == (len(files), arrays["vectors"].shape[1])
                      and (n == 0 or 0 <= arrays["file_index"].min() <= arrays["file_index"].max() < len(files)))
        if not consistent:
            raise EmbeddingError(f"{path}: its arrays disagree in length (a damaged or hand-edited index); {again}")
        return cls(arrays["vectors"].astype(np.float32), arrays["tokens"], arrays["file_index"], arrays["voice"],
                   arrays["window"], arrays["bar"], [str(f) for f in files], arrays["file_vectors"], meta)


def model_identity(model) -> dict:
    """What makes two runtime models' vectors comparable: the encoder graph's sha256 (one export, one variant),
    the training data, the representation, the window length and the latent size; plus how to load it again
    (a shipped model's name, else its directory) and names for messages."""
    meta = model.metadata
    encoder = Path(model.files["encoder"]).read_bytes()
    path = Path(model.path).resolve()
    name = path.name if path.parent == SHIPPED_DIR.resolve() else str(path)
    return {"model": name, "preset": meta.get("preset"), "variant": model.variant,
            "encoder_sha256": hashlib.sha256(encoder).hexdigest(), "dataset_hash": meta.get("dataset_hash"),
            "representation": meta["representation"], "bars": model.bars, "z_size": model.z_size}


# ---- building -------------------------------------------------------------------------------------------------
def midi_files(sources: Sequence[str]) -> list[str]:
    """The MIDI files SOURCES name: files, folders (searched recursively for .mid/.midi) and globs, as the
    dataset builder finds them. EmbeddingError for a source that names nothing."""
    found = []
    for source in sources:
        if source.startswith("music21:"):
            raise EmbeddingError(f"{source}: embed reads MIDI files and folders; give their paths")
        try:
            found += [unit.path for unit in work_units(source)]
        except SourceError as error:
            raise EmbeddingError(str(error)) from None
    return list(dict.fromkeys(found))  # a file named twice is embedded once


@dataclass
class FileWindows:
    """The windows of one file, or why it has none."""

    file: str
    voice: list[int]
    bar: list[int]
    tokens: list[np.ndarray]
    reason: str | None = None  # set when the file was skipped


def read_windows(file: str, codec: Codec, bars: int, hop: int = 1, report: BuildReport | None = None) -> FileWindows:
    """A MIDI file's windows by the dataset builder's rule; an unreadable file (or one with nothing the model
    reads) comes back with a reason instead of raising."""
    pieces, reason = parse_unit(WorkUnit("midi", file), None)
    if reason:
        name = Path(file).name
        reason = f"{file}{reason[len(name):]}" if reason.startswith(f"{name}: ") else f"{file}: {reason}"
        return FileWindows(file, [], [], [], reason)
    windows = list(sequence_windows(pieces[0].sequence, codec, WindowRules(bars, hop, time="keep"),
                                    report or BuildReport()))
    if not windows:
        kind = "drum" if codec.name == "drums" else "pitched"
        return FileWindows(file, [], [], [], f"{file}: nothing for a {codec.name} model in {bars}-bar windows (its "
                                             f"{kind} notes last under {bars} bars, or no window holds "
                                             f"{max(2, bars)} note-ons)")
    return FileWindows(file, [w.voice for w in windows], [w.bar for w in windows], [w.tokens for w in windows])


def encode_windows(model, tokens: np.ndarray, batch_size: int = ENCODE_BATCH,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """μ (N, Z) float32 of windows (N, T), `batch_size` at a time; progress(done, total) after each batch."""
    tokens = np.asarray(tokens, dtype=np.int64)
    out = np.zeros((len(tokens), model.z_size), dtype=np.float32)
    for start in range(0, len(tokens), batch_size):
        out[start:start + batch_size] = model.encode(tokens[start:start + batch_size])[0]
        if progress:
            progress(min(start + batch_size, len(tokens)), len(tokens))
    return out


def build_index(model, files: Sequence[str], hop: int = 1, batch_size: int = ENCODE_BATCH, progress: Callable[[str, int, int], None] | None = None
                ) -> EmbeddingIndex:
    """Embed every window of `files` with a runtime `model`; unreadable files and files without a window are
    listed in meta["skipped"] ({"file", "reason"}), never raised. progress(phase, done, total): phase "reading"
    (files), then "encoding" (windows)."""
    report = BuildReport()
    kept: list[FileWindows] = []
    skipped = []
    for done, file in enumerate(files, 1):
        found = read_windows(file, model.codec, model.bars, hop, report)
        if found.reason:
            skipped.append({"file": file, "reason": found.reason})
        else:
            kept.append(found)
        if progress:
            progress("reading", done, len(files))
    steps = model.steps
    tokens = np.stack([t for f in kept for t in f.tokens]) if kept else np.zeros((0, steps), np.uint16)
    vectors = encode_windows(model, tokens, batch_size, progress and (lambda d, t: progress("encoding", d, t)))
    counts = [len(f.tokens) for f in kept]
    file_of = np.repeat(np.arange(len(kept), dtype=np.int32), counts)
    if kept:  # each file's windows are consecutive rows: sum them per file
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        file_vectors = np.add.reduceat(vectors.astype(np.float64), offsets) / np.asarray(counts)[:, None]
    else:
        file_vectors = np.zeros((0, model.z_size))
    meta = {"format": INDEX_FORMAT, **model_identity(model), "hop": hop, "musicbridge_version": musicbridge.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "windows_dropped": {
                key: value for key, value in report.windows_dropped.items() if value},
            "skipped": skipped}
    return EmbeddingIndex(
        vectors, tokens.astype(np.uint16), file_of,
        np.asarray([v for f in kept for v in f.voice], np.int32),
        np.concatenate([np.arange(c, dtype=np.int32) for c in counts]) if kept else np.zeros(0, np.int32),
        np.asarray([b for f in kept for b in f.bar], np.int32),
        [f.file for f in kept], file_vectors.astype(np.float32), meta)


# ---- how good an embedding is -----------------------------------------------------------------------------------
RECALL_AT = (1, 5, 10)
TRANSPOSITIONS = (-6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6)  # semitones a window's copy is moved by


def ranking_summary(ranks: np.ndarray, recall_at: Sequence[int] = RECALL_AT) -> dict:
    """Mean reciprocal rank, recall@k (share of ranks ≤ k) and the median rank of 1-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not len(ranks):
        return {"queries": 0, "mrr": None, **{f"recall@{k}": None for k in recall_at}, "median_rank": None}
    return {"queries": int(len(ranks)), "mrr": float((1.0 / ranks).mean()),
            **{f"recall@{k}": float((ranks <= k).mean()) for k in recall_at}, "median_rank": float(np.median(ranks))}


def same_piece_ranks(vectors: np.ndarray, pieces: np.ndarray, metric: str = DEFAULT_METRIC,
                     voices: np.ndarray | None = None, bars: np.ndarray | None = None, window_bars: int = 0,
                     batch: int = 256) -> np.ndarray:
    """For each window as a query, the 1-based rank of the nearest other window of its own piece among its
    candidates: every other window, less those of its own piece and voice that overlap it in time
    (|bar − bar'| < window_bars: they share notes, which would make the task trivial). A rank counts the
    candidates strictly nearer, plus one. Queries with no same-piece candidate are left out (returned ranks are
    of the others only)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    pieces = np.asarray(pieces)
    n = len(vectors)
    ranks = []
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n))
        found = distances(vectors[rows], vectors, metric)  # (b, N)
        same = pieces[rows][:, None] == pieces[None, :]
        excluded = rows[:, None] == np.arange(n)[None, :]
        if window_bars and voices is not None and bars is not None:
            overlapping = (np.asarray(voices)[rows][:, None] == np.asarray(voices)[None, :]) & (
                np.abs(np.asarray(bars)[rows][:, None] - np.asarray(bars)[None, :]) < window_bars)
            excluded |= same & overlapping
        found[excluded] = np.inf
        same &= ~excluded
        has_same = same.any(axis=1)
        nearest_same = np.where(same, found, np.inf).min(axis=1)  # (b,)
        rank = (found < nearest_same[:, None]).sum(axis=1) + 1
        ranks.append(rank[has_same])
    return np.concatenate(ranks) if ranks else np.zeros(0, np.int64)


def copy_ranks(vectors: np.ndarray, copies: np.ndarray, metric: str = DEFAULT_METRIC, batch: int = 256) -> np.ndarray:
    """For each window, the 1-based rank of its own copy (a transposed one, say: `copies` row i) among the copy
    and every other window — 1 when the copy is nearer than any other window."""
    vectors, copies = np.asarray(vectors, dtype=np.float32), np.asarray(copies, dtype=np.float32)
    n = len(vectors)
    ranks = []
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n))
        to_copy = paired_distances(vectors[rows], copies[rows], metric)
        found = distances(vectors[rows], vectors, metric)
        found[np.arange(len(rows)), rows] = np.inf  # not the window itself
        ranks.append((found < to_copy[:, None]).sum(axis=1) + 1)
    return np.concatenate(ranks) if ranks else np.zeros(0, np.int64)


def transposed_windows(codec: Codec, tokens: np.ndarray, semitones: Sequence[int], bars: int) -> np.ndarray:
    """Each melody window (N, T) moved by its number of semitones — by an octave less or more where that would
    leave the representation's range (musicbridge.phrases.window_tokens)."""
    if codec.name != "melody":
        raise ValueError(f"only melodies transpose; a {codec.name} window has no pitch")
    out = np.empty_like(np.asarray(tokens, dtype=np.int64))
    for i, (row, shift) in enumerate(zip(tokens, semitones, strict=True)):
        notes = [Note(n.pitch + int(shift), n.velocity, n.start, n.end) for n in codec.decode(row)]
        out[i] = window_tokens(codec, notes, bars, TOO_WIDE_DROP)
    return out


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity of the rows of a and b, pairwise (row i with row i)."""
    return float(1.0 - paired_distances(a, b, COSINE).astype(np.float64).mean())
