"""The note model every stage speaks: notes in beats (quarter notes), a tempo map, MIDI file round-trips.

Beats come from MIDI ticks (tick / ppq), so they do not depend on tempo; seconds come from the tempo map.
"""

from __future__ import annotations

import bisect
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import mido

from musicbridge import smf

DRUM_CHANNEL = 9
DEFAULT_BPM = 120.0


class MidiFileError(ValueError):
    """A MIDI file that cannot be read (corrupt, truncated, not MIDI, or unsupported)."""


@dataclass(frozen=True, slots=True)
class Note:
    pitch: int
    velocity: int
    start: float  # beats
    end: float  # beats
    channel: int = 0
    program: int = 0
    is_drum: bool = False
    instrument: int = 0  # source track / part index, so voices stay apart

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class TempoChange:
    beat: float
    bpm: float


def _default_tempos() -> list[TempoChange]:
    return [TempoChange(0.0, DEFAULT_BPM)]


@dataclass
class NoteSequence:
    notes: list[Note] = field(default_factory=list)
    tempos: list[TempoChange] = field(default_factory=_default_tempos)
    time_signature: tuple[int, int] = (4, 4)
    ppq: int = 480

    # ---- musical time -------------------------------------------------------------------------
    @property
    def duration(self) -> float:
        """End of the last note, in beats."""
        return max((n.end for n in self.notes), default=0.0)

    @property
    def beats_per_bar(self) -> float:
        numerator, denominator = self.time_signature
        return numerator * 4.0 / denominator

    def seconds_at(self, beat: float) -> float:
        """Wall-clock seconds from the start of the sequence to `beat`, following the tempo map."""
        seconds, last_beat, bpm = 0.0, 0.0, self.tempos[0].bpm if self.tempos else DEFAULT_BPM
        for change in self.tempos:
            if change.beat >= beat:
                break
            seconds += (change.beat - last_beat) * 60.0 / bpm
            last_beat, bpm = change.beat, change.bpm
        return seconds + (beat - last_beat) * 60.0 / bpm

    # ---- transformations (each returns a new sequence) ----------------------------------------
    def _with_notes(self, notes: Iterable[Note]) -> NoteSequence:
        return replace(self, notes=sorted(notes, key=_note_order), tempos=list(self.tempos))

    def quantize(self, steps_per_quarter: int = 4) -> NoteSequence:
        """Snap starts and ends to the grid; a note keeps at least one step."""

        def snap(beat: float) -> float:
            return round(beat * steps_per_quarter) / steps_per_quarter

        step = 1.0 / steps_per_quarter
        # Note(...) rather than dataclasses.replace: a quarter of the time, and a long file has 500,000 notes.
        return self._with_notes(
            Note(n.pitch, n.velocity, snap(n.start), max(snap(n.end), snap(n.start) + step), n.channel, n.program,
                 n.is_drum, n.instrument)
            for n in self.notes
        )

    def slice(self, start: float, end: float) -> NoteSequence:
        """Notes sounding in [start, end), clipped to it and shifted so that `start` becomes beat 0."""
        clipped = (
            replace(n, start=max(n.start, start) - start, end=min(n.end, end) - start)
            for n in self.notes
            if n.start < end and n.end > start
        )
        sliced = self._with_notes(n for n in clipped if n.end > n.start)
        sliced.tempos = [TempoChange(max(t.beat - start, 0.0), t.bpm) for t in self._tempos_from(start)]
        return sliced

    def bars(self, beats_per_bar: float | None = None) -> list[NoteSequence]:
        """The sequence cut into consecutive bars (the last one may be partly empty)."""
        length = beats_per_bar or self.beats_per_bar
        count = int(-(-self.duration // length))  # ceil
        return [self.slice(i * length, (i + 1) * length) for i in range(count)]

    def transpose(self, semitones: int) -> NoteSequence:
        """Pitched notes move; drums stay where they are."""
        return self._with_notes(n if n.is_drum else replace(n, pitch=n.pitch + semitones) for n in self.notes)

    def instruments(self) -> dict[tuple[int, int, int, bool], list[Note]]:
        """Notes grouped by (instrument, channel, program, is_drum), in time order."""
        groups: dict[tuple[int, int, int, bool], list[Note]] = {}
        for note in self.notes:
            groups.setdefault((note.instrument, note.channel, note.program, note.is_drum), []).append(note)
        return groups

    def _tempos_from(self, beat: float) -> list[TempoChange]:
        index = bisect.bisect_right([t.beat for t in self.tempos], beat)
        return self.tempos[max(index - 1, 0) :]

    # ---- MIDI files --------------------------------------------------------------------------
    @classmethod
    def from_midi(cls, source: str | os.PathLike | mido.MidiFile) -> NoteSequence:
        """Read a type 0 or type 1 MIDI file (any PPQ, tempo changes, several tracks, drums on channel 10).

        A path is streamed from its bytes (musicbridge.smf: time and memory linear in the file's length); a
        mido.MidiFile already in memory is read from its messages. Both give the same events."""
        if isinstance(source, mido.MidiFile):
            midi_type, ppq, tracks = source.type, source.ticks_per_beat, [_mido_events(t) for t in source.tracks]
            name = "MIDI data"
        else:
            midi = _read_midi_file(source)
            midi_type, ppq, tracks, name = midi.type, midi.ticks_per_beat, midi.tracks(), Path(source).name
        if midi_type == 2:
            raise MidiFileError("type 2 MIDI files (independent sequences) are not supported")
        if ppq <= 0:
            raise MidiFileError(f"unsupported time division (ticks per beat {ppq})")
        try:
            return cls._from_events(tracks, ppq)
        except smf.SmfError as error:
            raise MidiFileError(f"{name}: not a readable MIDI file ({error})") from None

    @classmethod
    def _from_events(cls, tracks: Iterable[Iterator[smf.Event]], ppq: int) -> NoteSequence:
        """Notes from each track's events: a note-off ends the oldest sounding note of its key (first in, first
        out, O(1) each); notes never switched off end with their track."""
        notes: list[Note] = []
        tempos: dict[float, float] = {}
        time_signature = None
        for track_index, events in enumerate(tracks):
            programs = [0] * 16
            sounding: dict[tuple[int, int], deque[tuple[float, int]]] = {}  # (channel, pitch) -> (start, velocity)
            tick = 0
            for tick, kind, channel, a, b in events:
                if kind == smf.NOTE_ON:
                    sounding.setdefault((channel, a), deque()).append((tick / ppq, b))
                elif kind == smf.NOTE_OFF:
                    starts = sounding.get((channel, a))
                    if starts:
                        start, velocity = starts.popleft()
                        notes.append(_make_note(channel, a, velocity, start, tick / ppq, programs, track_index))
                elif kind == smf.PROGRAM:
                    programs[channel] = a
                elif kind == smf.TEMPO:
                    tempos[tick / ppq] = mido.tempo2bpm(a)
                elif kind == smf.TIME_SIGNATURE and time_signature is None:
                    time_signature = (a, b)
            end_of_track = tick / ppq
            for (channel, pitch), starts in sounding.items():
                for start, velocity in starts:
                    notes.append(_make_note(channel, pitch, velocity, start, end_of_track, programs, track_index))
        tempo_map = [TempoChange(beat, bpm) for beat, bpm in sorted(tempos.items())]
        if not tempo_map or tempo_map[0].beat > 0:
            tempo_map.insert(0, TempoChange(0.0, DEFAULT_BPM))
        return cls(
            notes=sorted((n for n in notes if n.end > n.start), key=_note_order),
            tempos=tempo_map,
            time_signature=time_signature or (4, 4),
            ppq=ppq,
        )

    def to_midi(self) -> mido.MidiFile:
        """A type 1 file: a conductor track (tempo, time signature), then one track per instrument."""
        midi = mido.MidiFile(type=1, ticks_per_beat=self.ppq)
        conductor = [mido.MetaMessage("track_name", name="musicbridge", time=0)]
        numerator, denominator = self.time_signature
        timed: list[tuple[int, int, mido.Message | mido.MetaMessage]] = [
            (0, 0, mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator))
        ]
        timed += [(self._tick(t.beat), 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(t.bpm))) for t in self.tempos]
        midi.tracks.append(mido.MidiTrack(conductor + _delta_times(timed)))
        for (_, channel, program, is_drum), notes in sorted(self.instruments().items()):
            channel = DRUM_CHANNEL if is_drum else channel
            events: list[tuple[int, int, mido.Message]] = []
            if not is_drum:
                events.append((0, 0, mido.Message("program_change", channel=channel, program=program)))
            for n in notes:
                # At equal ticks note-offs (order 1) come before note-ons (order 2), so repeated notes re-attack.
                events.append((self._tick(n.start), 2, mido.Message("note_on", channel=channel, note=n.pitch, velocity=n.velocity)))
                events.append((self._tick(n.end), 1, mido.Message("note_off", channel=channel, note=n.pitch, velocity=0)))
            midi.tracks.append(mido.MidiTrack(_delta_times(events)))
        return midi

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        self.to_midi().save(path)
        return path

    def _tick(self, beat: float) -> int:
        return max(0, round(beat * self.ppq))


def _note_order(note: Note) -> tuple:
    return (note.start, -note.pitch, note.end, note.instrument, note.channel)


def _make_note(channel: int, pitch: int, velocity: int, start: float, end: float, programs: list[int], track: int) -> Note:
    return Note(pitch, velocity, start, end, channel, programs[channel], channel == DRUM_CHANNEL, track)


def _delta_times(events: list[tuple]) -> list:
    events.sort(key=lambda event: (event[0], event[1]))
    messages, last_tick = [], 0
    for tick, _, message in events:
        messages.append(message.copy(time=tick - last_tick))
        last_tick = tick
    return messages


def _mido_events(track: mido.MidiTrack) -> Iterator[smf.Event]:
    """A mido track as musicbridge.smf events (absolute ticks), ending with END_OF_TRACK."""
    tick = 0
    for message in track:
        tick += message.time
        kind = message.type
        if kind == "note_on" and message.velocity > 0:
            yield tick, smf.NOTE_ON, message.channel, message.note, message.velocity
        elif kind in ("note_off", "note_on"):
            yield tick, smf.NOTE_OFF, message.channel, message.note, 0
        elif kind == "program_change":
            yield tick, smf.PROGRAM, message.channel, message.program, 0
        elif kind == "set_tempo":
            yield tick, smf.TEMPO, 0, message.tempo, 0
        elif kind == "time_signature":
            yield tick, smf.TIME_SIGNATURE, 0, message.numerator, message.denominator
    yield tick, smf.END_OF_TRACK, 0, 0, 0


def _read_midi_file(path: str | os.PathLike) -> smf.MidiData:
    try:
        return smf.MidiData(Path(path).read_bytes())
    except FileNotFoundError:
        raise
    except (OSError, smf.SmfError) as error:
        raise MidiFileError(f"{Path(path).name}: not a readable MIDI file ({type(error).__name__}: {error})") from error
