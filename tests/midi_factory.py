"""MIDI files made by the tests: every shape the readers must handle, and the broken ones they must reject."""

from __future__ import annotations

from pathlib import Path

import mido


def _track(*messages, name=None):
    track = mido.MidiTrack()
    if name:
        track.append(mido.MetaMessage("track_name", name=name, time=0))
    track.extend(messages)
    return track


def scale(channel=0, start_pitch=60, steps=8, ticks=480, velocity=90):
    """Quarter notes up a major scale, as note_on / note_off pairs (delta times in ticks)."""
    intervals = [0, 2, 4, 5, 7, 9, 11, 12, 14, 16, 17, 19, 21, 23, 24]
    messages = []
    for i in range(steps):
        pitch = start_pitch + intervals[i % len(intervals)]
        messages.append(mido.Message("note_on", channel=channel, note=pitch, velocity=velocity, time=0))
        messages.append(mido.Message("note_off", channel=channel, note=pitch, velocity=0, time=ticks))
    return messages


def write_type0(path: Path, ppq=96) -> Path:
    midi = mido.MidiFile(type=0, ticks_per_beat=ppq)
    midi.tracks.append(_track(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100)), *scale(ticks=ppq, steps=16)))
    midi.save(path)
    return path


def write_type1_multitrack(path: Path, ppq=480) -> Path:
    """A conductor track with a tempo change, a melody, a bass line and a drum track."""
    midi = mido.MidiFile(type=1, ticks_per_beat=ppq)
    midi.tracks.append(
        _track(
            mido.MetaMessage("time_signature", numerator=4, denominator=4),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120)),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90), time=8 * ppq),
        )
    )
    midi.tracks.append(_track(mido.Message("program_change", channel=0, program=73), *scale(0, 72, 16, ppq), name="flute"))
    midi.tracks.append(_track(*scale(1, 40, 16, ppq), name="bass"))
    drums = []
    for beat in range(16):
        for pitch in (36, 42) if beat % 2 == 0 else (38, 42):
            drums.append(mido.Message("note_on", channel=9, note=pitch, velocity=100, time=0))
        drums.append(mido.Message("note_off", channel=9, note=42, velocity=0, time=ppq // 4))
        drums.append(mido.Message("note_off", channel=9, note=36 if beat % 2 == 0 else 38, velocity=0, time=ppq * 3 // 4))
    midi.tracks.append(_track(*drums, name="drums"))
    midi.save(path)
    return path


def write_overlapping(path: Path, ppq=480) -> Path:
    """The same pitch struck twice before its first note-off, plus a chord (polyphony for the melody reduction)."""
    messages = [
        mido.Message("note_on", note=60, velocity=80, time=0),
        mido.Message("note_on", note=60, velocity=90, time=ppq),  # second strike while the first still sounds
        mido.Message("note_off", note=60, velocity=0, time=ppq),  # ends the first (oldest) note
        mido.Message("note_off", note=60, velocity=0, time=ppq),  # ends the second
        mido.Message("note_on", note=64, velocity=80, time=0),
        mido.Message("note_on", note=67, velocity=80, time=0),
        mido.Message("note_off", note=64, velocity=0, time=ppq * 2),
        mido.Message("note_off", note=67, velocity=0, time=0),
        *scale(0, 62, 12, ppq),
    ]
    midi = mido.MidiFile(type=1, ticks_per_beat=ppq)
    midi.tracks.append(_track(*messages))
    midi.save(path)
    return path


def write_truncated(path: Path) -> Path:
    """A real MIDI file cut in the middle of its track chunk."""
    write_type1_multitrack(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_not_midi(path: Path) -> Path:
    path.write_text("this is a text file, not a MIDI file\n")
    return path


def write_corpus(folder: Path) -> dict[str, Path]:
    """A folder of good and bad files, some nested, for the dataset builder."""
    (folder / "nested").mkdir(parents=True, exist_ok=True)
    return {
        "type0": write_type0(folder / "type0.mid"),
        "type1": write_type1_multitrack(folder / "nested" / "type1.midi"),
        "overlapping": write_overlapping(folder / "overlapping.mid"),
        "truncated": write_truncated(folder / "truncated.mid"),
        "not_midi": write_not_midi(folder / "notes.mid"),
    }
