"""The scheduler: notes in beats → MIDI at precise wall-clock times, on its own thread.

Events are kept in beats, not seconds, and converted with the clock just before they are due, so tempo changes
and a MIDI clock's phase corrections move them. The thread waits until 0.5 ms before an event, then spins on
perf_counter for the rest (a plain sleep wakes up tens to hundreds of µs late), at real-time priority where the
system allows (bridge/priority.py). Sending happens under the scheduler's lock, so flush() can never be
overtaken by a note-on: after a flush nothing is left sounding. The "sleep" mode is the naive baseline the
benchmark compares against: time.sleep until due, then send.

A note is never sent late: a phrase that arrives after some of its notes were due loses those notes (counted in
late_dropped), and the rest play on time. A phrase's deadline (deadline()) is its start minus OUTPUT_LEAD_S (and
the output's lookahead): the engine plays its fallback for an answer that is not there by then (bridge/engine.py).

An output that places events itself (JACK's own backend, bridge/jack_midi.py: `lookahead_s` > 0) gets each
event that long before it is due, with its due time, and no spinning, while the clock follows a MIDI clock
(from that output's own backend: its ticks' times and the notes' frames come from one frame clock), and the
output writes it on the frame the clock's ticks say — also when the thread woke late and hands it over after
due − lookahead (it always carries its due time), as long as the cycle that frame falls in has not begun; past
that the output writes it at once and counts it (late_written). Until it is written it can be taken back
(output.cancel): a cut takes back what was handed over at or after the cut, a flush everything
(output.all_notes_off), so the rules above hold as with sends at the due time. Due times on the system clock
(internal, OSC, Link) are sent when due, as on other outputs: on a JACK server whose cycles fall behind the
system clock (the dummy driver on a busy machine) frames placed ahead drift from it by milliseconds
(measured: an internal clock's answers 2.6e-4 slow over 12 s), sends at the due time do not. The "sleep"
baseline always sends at the due time.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from musicbridge.bridge import priority
from musicbridge.bridge.midi_io import MidiOutput
from musicbridge.notes import Note

log = logging.getLogger(__name__)

SPIN_SECONDS = 0.0005  # measured: a longer spin on a busy machine gets the thread preempted mid-spin
MAX_WAIT_SECONDS = 0.02  # re-read the clock at least this often (tempo may change)
NOTE_OFF, NOTE_ON = 0, 1  # at the same beat a note-off goes first, so a repeated pitch re-sounds
# A phrase must be here this long before its first note: the spin before a send (SPIN_SECONDS), and room for the
# engine thread that adds it to wake a little late on a busy machine.
OUTPUT_LEAD_S = 0.005


@dataclass(eq=False)
class ScheduledNote:
    channel: int
    pitch: int
    velocity: int
    on_beat: float
    off_beat: float
    phrase_id: int
    state: str = "pending"  # pending → on → done, or cancelled / late
    on_ticket: int | None = None  # the output's tickets of the handed-over note-on / note-off (a timed output)
    off_ticket: int | None = None


class Scheduler:
    def __init__(self, clock, output: MidiOutput | None, offset_ms: float = 0.0, mode: str = "precise",
                 realtime: bool = True, now=time.perf_counter):
        if mode not in ("precise", "sleep"):
            raise ValueError(f"unknown scheduler {mode!r}")
        self.clock = clock
        self.output = output
        self.offset = offset_ms / 1000.0
        self.now = now  # what "already late" is measured against when a phrase is added (tests: a fake clock)
        self.mode = mode
        self.want_realtime = realtime and mode == "precise"  # the naive baseline stays naive
        self.timed = mode == "precise" and output is not None and output.lookahead_s > 0  # it can place events
        self.realtime = False
        self.cond = threading.Condition(threading.RLock())
        self.heap: list[tuple[float, int, int, ScheduledNote]] = []
        self.notes: list[ScheduledNote] = []  # not yet done
        self.seq = itertools.count()
        # note-on send time − due time, seconds; a timed output's own: written time − due time
        self.errors: deque[float] = output.errors if self.timed else deque(maxlen=200_000)
        self.sent = 0
        self.late_dropped = 0
        self.running = False
        self.thread: threading.Thread | None = None

    # ---- adding and removing ------------------------------------------------------------------
    def _push(self, beat: float, kind: int, note: ScheduledNote) -> None:
        heapq.heappush(self.heap, (beat, kind, next(self.seq), note))

    def add_phrase(self, notes: Iterable[Note], start_beat: float, phrase_id: int, channel: int,
                   replace: bool = True) -> tuple[int, int]:
        """Schedule notes (beats relative to start_beat). Notes already late are dropped, not shifted.

        With `replace`, what is pending from earlier phrases at or after start_beat is cancelled and notes still
        sounding then are cut there. Returns (scheduled, dropped_late).
        """
        now = self.now()
        scheduled = dropped = 0
        with self.cond:
            if replace:
                self._cut_at(start_beat)
            for note in notes:
                on, off = start_beat + note.start, start_beat + max(note.end, note.start + 1 / 64)
                due = self.clock.time_at(on)
                if due is not None and due + self.offset < now:
                    dropped += 1
                    continue
                item = ScheduledNote(channel, int(note.pitch), int(note.velocity), on, off, phrase_id)
                self.notes.append(item)
                self._push(on, NOTE_ON, item)
                self._push(off, NOTE_OFF, item)
                scheduled += 1
            self.late_dropped += dropped
            self.cond.notify()
        if dropped:
            log.warning("phrase %d: %d late note(s) dropped", phrase_id, dropped)
        return scheduled, dropped

    def deadline(self, beat: float) -> float | None:
        """The latest time (perf_counter seconds) a phrase starting at `beat` may arrive and play whole; None
        while the transport is stopped."""
        due = self.clock.time_at(beat)
        return None if due is None else due + self.offset - OUTPUT_LEAD_S - self._lookahead()

    def _lookahead(self) -> float:
        return self.output.lookahead_s if self._placed() else 0.0

    def _placed(self) -> bool:
        """Whether events go to the output ahead, to be placed on their frames: a timed output, while the clock
        follows a MIDI clock (its times are the input's)."""
        return self.timed and getattr(self.clock, "source", None) == "midi"

    def _placement(self, beat: float) -> dict:
        """How the output places a note due on a followed MIDI clock: by its time on the clock's timebase, where
        that is the output's own (JACK's frames, for a clock whose ticks are regular in them: its frame exactly),
        else by its due time on the line the input's ticks were stamped with."""
        timebase = getattr(self.output, "timebase", None)
        with getattr(self.clock, "lock", None) or contextlib.nullcontext():  # (the clock may change its timebase)
            if timebase is None or getattr(self.clock, "midi_timebase", None) is not timebase:
                return {"on_input_time": True}
            at = self.clock.clock_time_at(beat)
        return {"clock_time": None if at is None else at + self.offset}

    def _take_back(self, ticket: int | None) -> bool:
        """A handed-over event that is not written yet, taken back from the output."""
        return ticket is not None and self.output.cancel(ticket)

    def _handed(self, note: ScheduledNote) -> bool:
        """Whether an event of a note is still with the output, not written (a cut may take it back)."""
        return self.timed and any(t is not None and t in self.output.unwritten for t in (note.on_ticket,
                                                                                         note.off_ticket))

    def _tracked(self, note: ScheduledNote) -> bool:
        return note.state in ("pending", "on") or (note.state == "done" and self._handed(note))

    def cut(self, beat: float) -> None:
        """End every phrase at `beat`: what would start there is cancelled, what sounds then stops there."""
        with self.cond:
            self._cut_at(beat)
            self.cond.notify()

    def pending(self) -> list[ScheduledNote]:
        """The notes not yet started, in the order they start."""
        with self.cond:
            return sorted((n for n in self.notes if n.state == "pending"), key=lambda n: (n.on_beat, n.pitch))

    def _cut_at(self, beat: float) -> None:
        for note in self.notes:
            if note.state == "pending" and note.on_beat >= beat:
                note.state = "cancelled"
                continue
            if note.state in ("on", "done") and note.on_beat >= beat:  # handed over ahead: taken back if unwritten
                off_back = self._take_back(note.off_ticket)
                if self._take_back(note.on_ticket):
                    note.state = "cancelled"
                    continue
                if off_back:
                    note.state = "on"  # written and sounding: its note-off goes at the cut (below)
            elif note.state == "done" and note.off_beat > beat and self._take_back(note.off_ticket):
                note.state = "on"  # its note-off was handed over for later: it ends at the cut instead
            if note.state in ("pending", "on") and note.off_beat > beat:
                note.off_beat = beat
                self._push(beat, NOTE_OFF, note)
        self.notes = [n for n in self.notes if self._tracked(n)]

    def flush(self, channels: tuple[int, ...] = ()) -> int:
        """Drop everything pending and turn every sounding note off (stop, relocate, mode change, panic)."""
        with self.cond:
            for note in self.notes:
                note.state = "cancelled"
            self.notes.clear()
            self.heap.clear()
            closed = self.output.all_notes_off(channels) if self.output else 0
            self.cond.notify()
        return closed

    # ---- the thread ---------------------------------------------------------------------------
    def start(self) -> None:
        self.running = True
        self.thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        with self.cond:
            self.running = False
            self.cond.notify()
        if self.thread:
            self.thread.join(timeout=2)

    def _head(self) -> tuple[float, int, int, ScheduledNote] | None:
        """The next valid event (stale entries of cancelled or moved notes are discarded)."""
        while self.heap:
            beat, kind, _, note = self.heap[0]
            valid = (note.state == "pending" and beat == note.on_beat) if kind == NOTE_ON else (
                note.state in ("pending", "on") and beat == note.off_beat)
            if kind == NOTE_OFF and note.state == "pending" and valid:
                valid = False  # its note-on was never sent (cut before it started): nothing to close
                note.state = "cancelled"
            if valid:
                return self.heap[0]
            heapq.heappop(self.heap)
        return None

    def _run(self) -> None:
        if self.want_realtime:
            self.realtime = priority.become_realtime(priority.SCHEDULER, "scheduler")
            log.info("output scheduler at %s priority", "real-time" if self.realtime else
                     "normal (no permission for real-time: timing may suffer on a busy machine)"
                     if priority.current().realtime else "normal (never above the MIDI system's own threads)")
        while self.running:
            try:
                self._step()
            except Exception:  # a failing send must not stop the music: log it and go on with the next event
                log.exception("scheduler error")
                time.sleep(0.001)

    def _step(self) -> None:
        """Wait towards the next event, or send it when it is due."""
        with self.cond:
            entry = self._head()
            due = self.clock.time_at(entry[0]) if entry else None
            if due is None:  # nothing to play, or the transport is stopped
                self.cond.wait(0.05)
                return
            due += self.offset
            if self._placed():  # handed over `lookahead` early: the output writes it on its frame
                remaining = due - self._lookahead() - time.perf_counter()
                if remaining > 0:
                    self.cond.wait(min(remaining, MAX_WAIT_SECONDS))
                    return
                heapq.heappop(self.heap)
                self._fire(entry, due, placed=True)
                return
            remaining = due - time.perf_counter()
            if remaining > SPIN_SECONDS and (self.mode == "precise" or remaining > MAX_WAIT_SECONDS):
                self.cond.wait(min(remaining - SPIN_SECONDS, MAX_WAIT_SECONDS))
                return
        if self.mode == "precise":
            while time.perf_counter() < due:  # spin: the lock is free, the GIL switches every 0.25 ms
                pass
        elif remaining > 0:
            time.sleep(remaining)  # the naive baseline
        with self.cond:
            if self._head() is not entry:  # flushed, cut or preceded while we waited
                return
            heapq.heappop(self.heap)
            self._fire(entry, due)

    def _fire(self, entry, due: float, placed: bool = False) -> None:
        """Send an event, or with `placed` hand it to the output to be written on its frame."""
        _, kind, _, note = entry
        if self.output is None:
            note.state = "done" if kind == NOTE_OFF else "on"
            return
        if kind == NOTE_ON:
            if placed:  # a followed MIDI clock's time is the input's (on JACK its frames): placed on it exactly
                note.on_ticket = self.output.note_on(note.channel, note.pitch, note.velocity, at=due,
                                                     **self._placement(entry[0]))
            else:
                self.output.note_on(note.channel, note.pitch, note.velocity)
                self.errors.append(time.perf_counter() - due)
            note.state = "on"
            self.sent += 1
        else:
            if placed:
                note.off_ticket = self.output.note_off(note.channel, note.pitch, at=due, **self._placement(entry[0]))
            else:
                self.output.note_off(note.channel, note.pitch)
            note.state = "done"
            self.notes = [n for n in self.notes if self._tracked(n)] if len(self.notes) > 256 else self.notes
