"""`musicbridge data build`: pieces → N-bar token windows → train/valid/test arrays and a manifest.

Splits go by piece (a stable hash of its notes), never by window, so no piece leaks across splits; the same
tune found twice (in two corpora, say) lands in the same split.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from musicbridge.codecs import Codec, OutOfRangeError, get_codec
from musicbridge.data.sources import Piece, WorkUnit, default_cache_dir, parse_unit, work_units
from musicbridge.notes import Note

SPLITS = ("train", "valid", "test")
SPLIT_PERCENT = {"train": 90, "valid": 5}  # the rest is test
MANIFEST_FORMAT = 1
MAX_REASONS = 20


class BuildError(RuntimeError):
    """The build found nothing usable."""


@dataclass
class BuildReport:
    units: int = 0
    pieces: int = 0
    skipped: list[str] = field(default_factory=list)
    windows_dropped: dict[str, int] = field(default_factory=lambda: {"silent": 0, "out_of_range": 0, "duplicate": 0})


def build_dataset(
    sources: list[str],
    out: str | os.PathLike,
    representation: str = "melody",
    bars: int = 2,
    hop: int = 1,
    workers: int | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Build a dataset directory and return its manifest."""
    started = time.perf_counter()
    codec = get_codec(representation)
    units = [unit for source in sources for unit in work_units(source)]
    report = BuildReport(units=len(units))
    windows: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    pieces_per_split = dict.fromkeys(SPLITS, 0)
    for pieces, reason in _parse_all(units, workers, cache_dir or default_cache_dir(), progress):
        if reason:
            report.skipped.append(reason)
        for piece in pieces:
            piece_windows = list(piece_to_windows(piece, codec, bars, hop, report))
            if piece_windows:
                split = split_of(piece)
                windows[split] += piece_windows
                pieces_per_split[split] += 1
                report.pieces += 1
    arrays = {split: _deduplicated(windows[split], bars * codec.steps_per_bar, report) for split in SPLITS}
    if not len(arrays["train"]) + len(arrays["valid"]) + len(arrays["test"]):
        reasons = "; ".join(report.skipped[:3]) or "no notes long enough for one window"
        raise BuildError(f"nothing usable in {', '.join(sources)} ({len(units)} files/tunes read): {reasons}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split, array in arrays.items():
        np.save(out / f"{split}.npy", array)
    manifest = {
        "format": MANIFEST_FORMAT,
        "representation": codec.describe(),
        "bars": bars,
        "hop": hop,
        "steps": bars * codec.steps_per_bar,
        "sources": sources,
        "splits": {split: {"windows": int(len(arrays[split])), "pieces": pieces_per_split[split]} for split in SPLITS},
        "pieces": report.pieces,
        "units_read": report.units,
        "windows_dropped": report.windows_dropped,
        "skipped": {"count": len(report.skipped), "reasons": report.skipped[:MAX_REASONS]},
        "build_seconds": round(time.perf_counter() - started, 2),
        "hash": dataset_hash(codec, arrays),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _parse_all(units: list[WorkUnit], workers: int | None, cache_dir: Path, progress) -> Iterator[tuple[list[Piece], str | None]]:
    workers = workers or os.cpu_count() or 1
    parse = partial(parse_unit, cache_dir=cache_dir)
    done = 0
    if workers == 1 or len(units) < 4:
        results = map(parse, units)
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(parse, units, chunksize=max(1, min(32, len(units) // (workers * 8) or 1)))
    try:
        for result in results:
            done += 1
            if progress:
                progress(done, len(units))
            yield result
    finally:
        if workers != 1 and len(units) >= 4:
            pool.shutdown(cancel_futures=True)


def piece_to_windows(piece: Piece, codec: Codec, bars: int, hop: int, report: BuildReport) -> Iterator[np.ndarray]:
    """Token windows of `bars` 4-beat bars every `hop` bars, one instrument at a time.

    Melody: every pitched instrument (each chorale voice is one), drums skipped; a window out of range is moved
    by octaves, or dropped when its span is too wide. Drums: drum instruments only. Nearly silent windows
    (fewer than max(2, bars) note-ons / drum steps) are dropped.
    """
    beats_per_window, beats_per_hop = bars * 4.0, hop * 4.0
    steps = bars * codec.steps_per_bar
    want_drums = codec.name == "drums"
    sequence = piece.sequence.quantize()
    for (_, _, _, is_drum), notes in sequence.instruments().items():
        if is_drum != want_drums:
            continue
        end = max(n.end for n in notes)
        start = 0.0
        while start + beats_per_window <= end + 1e-9:
            window = _window_notes(notes, start, start + beats_per_window)
            start += beats_per_hop
            if not want_drums:
                window = codec.fit_octaves(window)
                if window is None:
                    report.windows_dropped["out_of_range"] += 1
                    continue
            try:
                tokens = codec.encode(window, steps)
            except OutOfRangeError:
                report.windows_dropped["out_of_range"] += 1
                continue
            if int(codec.onsets(tokens).sum()) < max(2, bars):
                report.windows_dropped["silent"] += 1
                continue
            yield tokens.astype(np.uint16)


def _window_notes(notes: list[Note], start: float, end: float) -> list[Note]:
    """Notes starting inside [start, end), shifted to the window (a note held into the window is not an onset)."""
    return [
        Note(n.pitch, n.velocity, n.start - start, min(n.end, end) - start, n.channel, n.program, n.is_drum, n.instrument)
        for n in notes
        if start <= n.start < end
    ]


def split_of(piece: Piece) -> str:
    """Stable split from the piece's content: the same notes always land in the same split."""
    content = ";".join(f"{n.pitch},{n.start:.4f},{n.end:.4f},{n.instrument}" for n in piece.sequence.notes)
    bucket = int(hashlib.sha256(content.encode()).hexdigest()[:8], 16) % 100
    if bucket < SPLIT_PERCENT["train"]:
        return "train"
    return "valid" if bucket < SPLIT_PERCENT["train"] + SPLIT_PERCENT["valid"] else "test"


def _deduplicated(windows: list[np.ndarray], steps: int, report: BuildReport) -> np.ndarray:
    if not windows:
        return np.zeros((0, steps), dtype=np.uint16)
    stacked = np.stack(windows)
    _, first = np.unique(stacked, axis=0, return_index=True)
    report.windows_dropped["duplicate"] += len(stacked) - len(first)
    return np.ascontiguousarray(stacked[np.sort(first)])  # keep the pieces' order


def dataset_hash(codec: Codec, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(json.dumps(codec.describe(), sort_keys=True).encode())
    for split in SPLITS:
        digest.update(split.encode())
        digest.update(np.ascontiguousarray(arrays[split]).tobytes())
    return digest.hexdigest()
