"""`data build` grows linearly with a file's length: a long type-0 file of short notes, at two sizes.

Measured in CPU time of this process (time.process_time: the machine's other load does not count) and in
memory traced by tracemalloc, with factors loose enough for any machine and tight enough to tell linear growth
from quadratic. The issue's file: 1,000,000 events took 305 s and 456 MB; now ≈ 12 s
and 260 MB peak RSS on the 2-core development machine.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import mido

from musicbridge.data.build import build_dataset

SMALL, LARGE = 50_000, 200_000  # MIDI events (note-on + note-off) of the timed builds
MAX_TIME_GROWTH = 8.0  # four times the events: linear ≈ 4×, quadratic ≈ 16× (CPU time wobbles on a busy machine)
TRACED_SMALL, TRACED_LARGE = 20_000, 40_000  # of the builds under tracemalloc (it slows Python down ~3×)
MAX_MEMORY_GROWTH = 3.0  # twice the events: linear ≈ 2×, quadratic ≈ 4× (traced bytes do not wobble)
MAX_CPU_S = 10.0  # LARGE: measured 2–3 s
MAX_BYTES_PER_EVENT = 300  # peak traced memory; measured ≈ 200 (mido's message objects alone took ≈ 370)


def write_long_file(path: Path, events: int, ppq: int = 96) -> Path:
    """A type-0 file of `events` messages: short notes (an 8th each, a dotted 8th apart), pitches wandering."""
    track = mido.MidiTrack()
    for index in range(events // 2):
        pitch = 48 + (index * 7) % 37
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0 if index == 0 else ppq // 4))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=ppq // 8))
    midi = mido.MidiFile(type=0, ticks_per_beat=ppq)
    midi.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(path)
    return path


def build(tmp_path: Path, events: int, traced: bool = False) -> tuple[float, dict]:
    """(CPU seconds — or peak traced bytes — of building a dataset from one file of `events` events, manifest)."""
    source = write_long_file(tmp_path / f"src{events}" / "long.mid", events).parent
    if traced:
        tracemalloc.start()
    started = time.process_time()
    try:
        manifest = build_dataset([str(source)], tmp_path / f"out{events}", workers=1)
        cost = tracemalloc.get_traced_memory()[1] if traced else time.process_time() - started
    finally:
        tracemalloc.stop()
    windows = sum(split["windows"] for split in manifest["splits"].values())
    assert manifest["units_read"] == 1 and windows > 0  # the file was read and windowed, not skipped
    return cost, manifest


def test_build_time_grows_linearly_with_the_file(tmp_path):
    small, _ = build(tmp_path, SMALL)
    large, _ = build(tmp_path, LARGE)
    print(f"\n{SMALL:,} events: {small:.2f} s CPU; {LARGE:,}: {large:.2f} s")
    assert large < MAX_TIME_GROWTH * small, (small, large)
    assert large < MAX_CPU_S


def test_build_memory_grows_linearly_with_the_file(tmp_path):
    small, _ = build(tmp_path, TRACED_SMALL, traced=True)
    large, _ = build(tmp_path, TRACED_LARGE, traced=True)
    print(f"\n{TRACED_SMALL:,} events: {small / 2**20:.1f} MB traced; {TRACED_LARGE:,}: {large / 2**20:.1f} MB")
    assert large < MAX_MEMORY_GROWTH * small, (small, large)
    assert large < MAX_BYTES_PER_EVENT * TRACED_LARGE
