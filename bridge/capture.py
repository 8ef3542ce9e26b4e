"""What the performer played, in beats: note-ons and note-offs from MIDI or OSC become Notes.

Owned by the engine (bridge/engine.py): only its thread writes and reads it, so it has no lock. Bounded in time
and count, so a flood of input cannot grow it: notes that ended more than KEEP_BEATS ago are forgotten, and at
most MAX_NOTES are kept.
"""

from __future__ import annotations

from collections import deque

from musicbridge.codecs import BEATS_PER_BAR
from musicbridge.notes import Note

KEEP_BEATS = 2 * 16 * BEATS_PER_BAR  # twice the longest model window (16 bars)
# A request reads every kept note in its window (a flood's notes all fall in it), in Python, on the engine's
# thread: measured under a 9k messages/s note flood at 180 bpm on 2 cores, building one took 24–44 ms with 4096
# (its deadline comes 50 ms after the trigger: missed in 1–3 bars of 4), 7–14 ms with 1024 (none missed).
# 1024 notes in the last model window is 32 notes a second for 16 bars at 120 bpm: more than anyone plays.
MAX_NOTES = 1024


class CaptureBuffer:
    def __init__(self):
        self.notes: deque[Note] = deque(maxlen=MAX_NOTES)
        self.held: dict[tuple[int, int], tuple[float, int]] = {}  # (channel, pitch) -> (start beat, velocity)
        self.last_activity = float("-inf")  # beat of the last onset or release

    def note_on(self, channel: int, pitch: int, velocity: int, beat: float) -> None:
        if (channel, pitch) in self.held:  # a repeated note-on without its off: close the first
            self._close(channel, pitch, beat)
        self.held[(channel, pitch)] = (beat, velocity)
        self.last_activity = max(self.last_activity, beat)

    def note_off(self, channel: int, pitch: int, beat: float) -> None:
        if (channel, pitch) in self.held:
            self._close(channel, pitch, beat)
            self.last_activity = max(self.last_activity, beat)

    def _close(self, channel: int, pitch: int, beat: float) -> None:
        start, velocity = self.held.pop((channel, pitch))
        self.notes.append(Note(pitch, velocity, start, max(beat, start), channel))
        while self.notes and self.notes[0].end < beat - KEEP_BEATS:
            self.notes.popleft()

    def window(self, start: float, end: float) -> list[Note]:
        """Notes sounding in [start, end), shifted so that `start` is beat 0; held notes last until `end`."""
        notes = list(self.notes) + [Note(p, v, s, end, c) for (c, p), (s, v) in self.held.items()]
        return [
            Note(n.pitch, n.velocity, max(n.start, start) - start, min(n.end, end) - start, n.channel)
            for n in notes
            if n.start < end and n.end > start and n.start >= start - 1 / 8  # notes begun before the window are not its onsets
        ]

    def onsets_between(self, start: float, end: float) -> int:
        starts = [n.start for n in self.notes] + [s for s, _ in self.held.values()]
        return sum(1 for s in starts if start <= s < end)

    def silent_since(self) -> float | None:
        """Beat of the last activity when nothing is held, else None (the performer is still playing)."""
        return None if self.held else self.last_activity

    def clear(self) -> None:
        self.notes.clear()
        self.held.clear()
        self.last_activity = float("-inf")
