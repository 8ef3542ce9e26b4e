"""`musicbridge data build`: pieces → N-bar token windows → train/valid/test arrays and a manifest.

Splits go by piece (a stable hash of its notes), never by window, so no piece leaks across splits; the same
tune found twice (in two corpora, say) lands in the same split.

Two choices shape what the model learns (docs/data.md has the numbers behind them):
- Notated time is normalised: a score (a music21 source) whose median inter-onset interval is a quarter note
  or longer (chorales in quarters, Renaissance voices in halves and wholes) is read at double speed until it is
  shorter, so a bar of every source holds a phrase's worth of notes rather than two or three held ones. MIDI
  files keep their time (their tempo map says where the beat is) and drums are never touched, unless told
  (`time="normalize"` / `"keep"`). The split hash is taken before this, so splits never depend on it.
- Windows can be filtered by density (`min_onsets_per_bar`) and by empty bars (`max_empty_bars`): long
  windows of sparse voices (a 16-bar window with rests between a voice's entries) teach a model to hold.
"""

from __future__ import annotations

import bisect
import dataclasses
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
from musicbridge.notes import Note, NoteSequence

SPLITS = ("train", "valid", "test")
SPLIT_PERCENT = {"train": 90, "valid": 5}  # the rest is test
MANIFEST_FORMAT = 1
MAX_REASONS = 20
BEATS_PER_WINDOW_BAR = 4.0  # windows are cut in 4-beat bars whatever the piece's meter (codecs.STEPS_PER_BAR)
SLOWEST_MEDIAN_IOI = 1.0  # beats: a piece whose median inter-onset interval is this or longer is sped up
MAX_SPEED_UPS = 3  # at most 8× (a voice of Palestrina in breves)
TIME_RULES = ("auto", "normalize", "keep")
SCORE_SOURCE_PREFIX = "music21:"  # sources whose beat unit is a notation convention (time="auto" normalises them)
# <split>_origins.npy: where each window of <split>.npy comes from, one int32 row per window, these columns.
ORIGIN_COLUMNS = ("piece", "voice", "bar")
ORIGINS_SUFFIX = "_origins.npy"


class BuildError(RuntimeError):
    """The build found nothing usable."""


@dataclass
class BuildReport:
    units: int = 0
    pieces: int = 0
    skipped: list[str] = field(default_factory=list)
    windows_dropped: dict[str, int] = field(
        default_factory=lambda: {"silent": 0, "sparse": 0, "empty_bars": 0, "out_of_range": 0, "capped": 0,
                                 "duplicate": 0}
    )


@dataclass(frozen=True)
class Window:
    """One window of a piece and where it lies in it."""

    voice: int  # the piece's instrument it comes from, counted among those the representation reads (0 = first)
    bar: int  # the 4-beat bar it starts on, from the piece's start (after any time normalisation)
    tokens: np.ndarray  # (bars · steps_per_bar,) uint16


@dataclass(frozen=True)
class WindowRules:
    """How pieces are cut into windows and which windows are kept."""

    bars: int = 2  # 4-beat bars per window
    hop: int = 1  # bars between window starts
    time: str = "auto"  # auto: normalise scores (music21 sources), keep MIDI files; normalize; keep
    min_onsets_per_bar: float = 0.0  # drop windows with fewer note-ons per bar on average (0 = off)
    max_empty_bars: int | None = None  # drop windows with more bars without a note-on (None = off)
    # Keep at most this many windows of one piece, evenly spaced (0 = all): a long motet's five voices would
    # otherwise outweigh a folk tune a hundred to one.
    max_windows_per_piece: int = 0


def build_dataset(
    sources: list[str],
    out: str | os.PathLike,
    representation: str = "melody",
    bars: int = 2,
    hop: int = 1,
    workers: int | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    time_rule: str = "auto",
    min_onsets_per_bar: float = 0.0,
    max_empty_bars: int | None = None,
    max_windows_per_piece: int = 0,
) -> dict:
    """Build a dataset directory and return its manifest."""
    started = time.perf_counter()
    codec = get_codec(representation)
    if time_rule not in TIME_RULES:
        raise BuildError(f"unknown time rule {time_rule!r}; choose one of {', '.join(TIME_RULES)}")
    rules = WindowRules(bars, hop, time_rule, min_onsets_per_bar, max_empty_bars, max_windows_per_piece)
    normalize = [_normalizes_time(rules.time, source, codec) for source in sources]
    units, unit_sources = [], []
    for index, source in enumerate(sources):
        found = work_units(source)
        units += found
        unit_sources += [index] * len(found)
    report = BuildReport(units=len(units))
    windows: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    # Per window: its source's index, then ORIGIN_COLUMNS (the piece numbered across the whole build).
    window_labels: dict[str, list[tuple[int, int, int, int]]] = {split: [] for split in SPLITS}
    pieces_per_split = dict.fromkeys(SPLITS, 0)
    sped_up = [0] * len(sources)
    pieces_per_source = [0] * len(sources)
    parsed = _parse_all(units, workers, cache_dir or default_cache_dir(), progress)
    for source_index, (pieces, reason) in zip(unit_sources, parsed, strict=True):
        if reason:
            report.skipped.append(reason)
        for piece in pieces:
            split = split_of(piece)  # from the notes as read, before any time normalisation
            sequence, speed_ups = (normalized_time(piece.sequence) if normalize[source_index] else (piece.sequence, 0))
            piece_windows = _evenly_capped(list(sequence_windows(sequence, codec, rules, report)),
                                           rules.max_windows_per_piece, report)
            if piece_windows:
                windows[split] += [window.tokens for window in piece_windows]
                window_labels[split] += [(source_index, report.pieces, w.voice, w.bar) for w in piece_windows]
                pieces_per_split[split] += 1
                pieces_per_source[source_index] += 1
                sped_up[source_index] += bool(speed_ups)
                report.pieces += 1
    steps = bars * codec.steps_per_bar
    arrays, array_sources, origins = {}, {}, {}
    for split in SPLITS:
        arrays[split], labels = _deduplicated(windows[split], window_labels[split], steps, report)
        array_sources[split], origins[split] = labels[:, 0], labels[:, 1:].astype(np.int32)
    if not len(arrays["train"]) + len(arrays["valid"]) + len(arrays["test"]):
        reasons = "; ".join(report.skipped[:3]) or "no notes long enough for one window"
        raise BuildError(f"nothing usable in {', '.join(sources)} ({len(units)} files/tunes read): {reasons}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split, array in arrays.items():
        np.save(out / f"{split}.npy", array)
        np.save(out / f"{split}{ORIGINS_SUFFIX}", origins[split])
    manifest = {
        "format": MANIFEST_FORMAT,
        "representation": codec.describe(),
        "bars": bars,
        "hop": hop,
        "steps": steps,
        "origins": list(ORIGIN_COLUMNS),
        "rules": dataclasses.asdict(rules),
        "sources": sources,
        "splits": {split: {"windows": int(len(arrays[split])), "pieces": pieces_per_split[split]} for split in SPLITS},
        "pieces": report.pieces,
        "units_read": report.units,
        "windows_dropped": report.windows_dropped,
        "statistics": {
            "all": window_statistics(codec, np.concatenate([arrays[s] for s in SPLITS]), bars),
            "splits": {split: window_statistics(codec, arrays[split], bars) for split in SPLITS},
            "sources": {
                source: window_statistics(
                    codec, np.concatenate([arrays[s][array_sources[s] == index] for s in SPLITS]), bars
                ) | {"pieces": pieces_per_source[index], "pieces_sped_up": sped_up[index]}
                for index, source in enumerate(sources)
            },
        },
        "skipped": {"count": len(report.skipped), "reasons": report.skipped[:MAX_REASONS]},
        "build_seconds": round(time.perf_counter() - started, 2),
        "hash": dataset_hash(codec, arrays),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _evenly_capped(windows: list[Window], cap: int, report: BuildReport) -> list[Window]:
    if not cap or len(windows) <= cap:
        return windows
    report.windows_dropped["capped"] += len(windows) - cap
    return [windows[int(i)] for i in np.linspace(0, len(windows) - 1, cap).round()]


def window_statistics(codec: Codec, tokens: np.ndarray, bars: int) -> dict:
    """What a set of windows sounds like: how many, note-ons per bar, and the share of steps that hold (token 0:
    melody's "no event", drums' "no hit") — the numbers that tell a drone-teaching dataset from a melodic one."""
    if not len(tokens):
        return {"windows": 0, "onsets_per_bar": None, "hold_share": None}
    tokens = np.asarray(tokens)
    return {
        "windows": int(len(tokens)),
        "onsets_per_bar": round(float(codec.onsets(tokens).sum() / (len(tokens) * bars)), 3),
        "hold_share": round(float((tokens == 0).mean()), 4),
    }


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


def _normalizes_time(rule: str, source: str, codec: Codec) -> bool:
    if codec.name == "drums":  # drum patterns are played, not notated: their grid is the real one
        return False
    return rule == "normalize" or (rule == "auto" and source.startswith(SCORE_SOURCE_PREFIX))


def normalized_time(sequence: NoteSequence) -> tuple[NoteSequence, int]:
    """The sequence read at double speed until its median inter-onset interval is under a quarter note; returns
    it and how many times it was sped up. Onsets are taken per instrument (chords count once)."""
    intervals = []
    for (_, _, _, is_drum), notes in sequence.instruments().items():
        if not is_drum:
            starts = np.unique(np.round([n.start for n in notes], 4))
            intervals.append(np.diff(starts))
    if not intervals or not sum(len(i) for i in intervals):
        return sequence, 0
    median = float(np.median(np.concatenate(intervals)))
    speed_ups = 0
    while median >= SLOWEST_MEDIAN_IOI and speed_ups < MAX_SPEED_UPS:
        median /= 2
        speed_ups += 1
    if not speed_ups:
        return sequence, 0
    factor = 0.5**speed_ups
    notes = [dataclasses.replace(n, start=n.start * factor, end=n.end * factor) for n in sequence.notes]
    return dataclasses.replace(sequence, notes=notes, tempos=list(sequence.tempos)), speed_ups


def piece_to_windows(piece: Piece, codec: Codec, bars: int, hop: int, report: BuildReport) -> Iterator[np.ndarray]:
    """Windows of a piece as notated (no time normalisation, no density filter): see sequence_to_windows."""
    return sequence_to_windows(piece.sequence, codec, WindowRules(bars, hop, time="keep"), report)


def sequence_to_windows(sequence: NoteSequence, codec: Codec, rules: WindowRules,
                        report: BuildReport) -> Iterator[np.ndarray]:
    """The tokens of sequence_windows."""
    return (window.tokens for window in sequence_windows(sequence, codec, rules, report))


def sequence_windows(sequence: NoteSequence, codec: Codec, rules: WindowRules,
                     report: BuildReport) -> Iterator[Window]:
    """Windows of `rules.bars` 4-beat bars every `rules.hop` bars, one instrument at a time.

    Melody: every pitched instrument (each chorale voice is one), drums skipped; a window out of range is moved
    by octaves, or dropped when its span is too wide. Drums: drum instruments only. Dropped: nearly silent
    windows (fewer than max(2, bars) note-ons / drum steps), and those the density rules refuse.
    """
    bars = rules.bars
    beats_per_window, beats_per_hop = bars * BEATS_PER_WINDOW_BAR, rules.hop * BEATS_PER_WINDOW_BAR
    steps = bars * codec.steps_per_bar
    want_drums = codec.name == "drums"
    instruments = [notes for (_, _, _, is_drum), notes in sequence.quantize().instruments().items()
                   if is_drum == want_drums]
    for voice, notes in enumerate(instruments):
        starts = [n.start for n in notes]  # in time order: each window is found by bisection, not a scan
        end = max(n.end for n in notes)
        start = 0.0
        while start + beats_per_window <= end + 1e-9:
            first = bisect.bisect_left(starts, start - 1e-9)
            last = bisect.bisect_left(starts, start + beats_per_window - 1e-9)
            window = _window_notes(notes[first:last], start, start + beats_per_window)
            bar = round(start / BEATS_PER_WINDOW_BAR)
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
            onsets = codec.onsets(tokens)
            if int(onsets.sum()) < max(2, bars):
                report.windows_dropped["silent"] += 1
                continue
            if onsets.sum() < rules.min_onsets_per_bar * bars:
                report.windows_dropped["sparse"] += 1
                continue
            if rules.max_empty_bars is not None:
                empty_bars = int((~onsets.reshape(bars, -1).any(axis=1)).sum())
                if empty_bars > rules.max_empty_bars:
                    report.windows_dropped["empty_bars"] += 1
                    continue
            yield Window(voice, bar, tokens.astype(np.uint16))


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


def _deduplicated(windows: list[np.ndarray], labels: list[tuple[int, ...]], steps: int,
                  report: BuildReport) -> tuple[np.ndarray, np.ndarray]:
    """The unique windows in the pieces' order, and the labels (source, origin) of each: a window found more
    than once keeps its first occurrence's."""
    if not windows:
        return np.zeros((0, steps), dtype=np.uint16), np.zeros((0, 1 + len(ORIGIN_COLUMNS)), dtype=np.int64)
    stacked = np.stack(windows)
    _, first = np.unique(stacked, axis=0, return_index=True)
    report.windows_dropped["duplicate"] += len(stacked) - len(first)
    keep = np.sort(first)
    return np.ascontiguousarray(stacked[keep]), np.asarray(labels, dtype=np.int64)[keep]


HASH_CHUNK_ROWS = 65_536  # windows hashed at a time: memory-mapped splits are never copied whole


def dataset_hash(codec: Codec, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(json.dumps(codec.describe(), sort_keys=True).encode())
    for split in SPLITS:
        digest.update(split.encode())
        array = arrays[split]
        for start in range(0, len(array), HASH_CHUNK_ROWS):  # the same bytes in order: the same digest
            digest.update(np.ascontiguousarray(array[start:start + HASH_CHUNK_ROWS]).tobytes())
    return digest.hexdigest()
