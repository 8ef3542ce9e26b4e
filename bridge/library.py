"""The performer's library, live (`serve --index FILE.npz`): the nearest library phrases to what was just played.

The index is an EmbeddingIndex (musicbridge.embeddings, docs/latent.md) loaded once at start and read only after,
so every thread may read it. It answers only a model whose encoder made its vectors: distances between the
latents of two models mean nothing. IndexRef.refusal says why it cannot answer a model; the model's encoder is
hashed once per model (the daemon does it at start and on the model-load worker, before a switch), so the
engine only reads the memo.

Two ways to ask, both off the clock, engine and OSC threads (an encoder call plus one matrix-vector product:
13 ms for 100,000 windows on the 2-core machine):
- /musicbridge/similar [k]: a Query for the QueryWorker's thread, answered to the sender with the k nearest;
- mode `similar`: a Request of kind "similar" for the generation worker, like any answer (model, epoch, seed,
  deadline and fallback), whose candidates are library phrases (nearest_phrases).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musicbridge.bridge import priority
from musicbridge.bridge.mailbox import NewestWins
from musicbridge.scales import out_of_scale_onsets

log = logging.getLogger(__name__)

NO_INDEX = "no library index loaded: start serve with --index FILE.npz (made by musicbridge embed)"
SEARCH_ROWS = 256  # mode similar looks this far down the ranking for phrases it may play (not copies, in the scale)
HASH_CHUNK_BYTES = 1 << 20


class LibraryError(ValueError):
    """The library cannot answer this (another model's index, no phrase it may play); the message says why."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class IndexRef:
    """A loaded library index: what answers are made from and what the session log names (path and sha256)."""

    path: str  # the index file, resolved
    sha256: str  # of the file: `musicbridge replay` checks a similar answer against the same index by it
    index: object  # musicbridge.embeddings.EmbeddingIndex (read only)
    _refusals: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return Path(self.path).name

    def refusal(self, model) -> str | None:
        """Why this index cannot answer `model` (a runtime Model), as a sentence; None when it can."""
        with self._lock:
            if model in self._refusals:
                return self._refusals[model]
        refusal = self._refusal(model)  # reads and hashes the encoder: outside the lock
        with self._lock:
            self._refusals[model] = refusal
        return refusal

    def _refusal(self, model) -> str | None:
        from musicbridge.embeddings import MODEL_IDENTITY, model_identity

        ours, theirs = self.index.meta, model_identity(model)
        differing = [key for key in MODEL_IDENTITY if theirs[key] != ours.get(key)]
        if not differing:
            return None
        return (f"{self.name} was embedded with {ours.get('model')} (variant {ours.get('variant')}), not with "
                f"{theirs['model']} (variant {theirs['variant']}; they differ in {', '.join(differing)}); switch to "
                f"{ours.get('model')} or embed the library again with --model {theirs['model']}")


def load_index(path: str | Path) -> IndexRef:
    """The index file at `path`; an EmbeddingError (a ValueError) with the fix when it cannot be used."""
    from musicbridge.embeddings import EmbeddingError, EmbeddingIndex

    resolved = Path(path).expanduser().resolve()
    index = EmbeddingIndex.load(resolved)
    if not len(index):
        raise EmbeddingError(f"{path} holds no phrase; embed a library with at least one window")
    return IndexRef(str(resolved), file_sha256(resolved), index)


def nearest_phrases(model, library: IndexRef, tokens: np.ndarray, count: int, scale=None,
                    latents: list | None = None) -> tuple[np.ndarray, list]:
    """Mode similar: the `count` library phrases nearest to `tokens` (T,) (the window played) that it may play —
    not a copy of the window (an answer that only echoes the performer says nothing) and, under a scale lock,
    no note-on outside the scale — as (rows (K, T) int64, their embeddings.Match), nearest first. The query's μ
    is appended to `latents` (the session log records it). LibraryError when none of the SEARCH_ROWS nearest
    may be played."""
    refusal = library.refusal(model)
    if refusal:
        raise LibraryError(refusal)
    index = library.index
    tokens = np.asarray(tokens, dtype=np.int64)
    mu, _ = model.encode(tokens[None, :])  # (1, Z)
    if latents is not None:
        latents.append(np.asarray(mu, dtype=np.float32))
    rows, matches = [], []
    for match in index.nearest(mu[0], SEARCH_ROWS):
        row = index.tokens[match.row].astype(np.int64)
        if np.array_equal(row, tokens):
            continue
        if scale is not None and out_of_scale_onsets(model.codec, row, scale):
            continue
        rows.append(row)
        matches.append(match)
        if len(rows) == count:
            break
    if not rows:
        lock = f" inside the scale lock {scale.spec}" if scale is not None else ""
        raise LibraryError(f"none of the {min(SEARCH_ROWS, len(index))} library phrases nearest to what was played "
                           f"is one to answer with{lock} (each is a copy of it or leaves the scale)")
    return np.stack(rows), matches


# ---- /musicbridge/similar ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Query:
    """One /musicbridge/similar: the window played, the model to encode it with, the index, how many, who asked."""

    tokens: np.ndarray  # (T,): the model-length bars played up to the nearest bar line (engine.similar_input)
    model: object  # the runtime Model active when it was asked
    library: IndexRef
    k: int
    client: tuple[str, int] | None  # where the answer goes (bridge/replies.py)


def search(query: Query) -> list:
    """The query's k nearest library windows (embeddings.Match), nearest first; LibraryError for another model."""
    refusal = query.library.refusal(query.model)
    if refusal:
        raise LibraryError(refusal)
    mu, _ = query.model.encode(np.asarray(query.tokens, dtype=np.int64)[None, :])
    return query.library.index.nearest(mu[0], query.k)


class QueryWorker:
    """Runs /musicbridge/similar on a thread of its own, at ordinary priority — not in the generation worker, whose
    one-slot mailbox would let a query replace the answer to the next bar. One query at a time; a newer one
    replaces a query still waiting (on_superseded answers that one)."""

    def __init__(self, on_found: Callable[[Query, list], None], on_failed: Callable[[Query, Exception], None],
                 on_superseded: Callable[[Query], None]):
        self.on_found = on_found
        self.on_failed = on_failed
        self.on_superseded = on_superseded
        self.mailbox: NewestWins[Query] = NewestWins()
        self.thread: threading.Thread | None = None
        self.answered = 0

    def submit(self, query: Query) -> None:
        replaced = self.mailbox.put(query)
        if replaced is not None:
            self.on_superseded(replaced)

    def start(self) -> None:
        self.mailbox.reopen()
        self.thread = threading.Thread(target=self._run, name="similar", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.mailbox.close()
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None

    def _run(self) -> None:
        priority.become_normal()  # a search is asked for, not due on a beat: it must not crowd the real-time threads
        while (query := self.mailbox.take()) is not None:
            try:
                matches = search(query)
            except Exception as error:  # a failing query must not end the worker
                if not isinstance(error, LibraryError):
                    log.exception("similar query failed")
                self.on_failed(query, error)
                continue
            self.answered += 1
            self.on_found(query, matches)
