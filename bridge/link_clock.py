"""Ableton Link as the daemon's clock (`serve --clock link`): the session's tempo, its beat phase within a
quantum of bars, and its start/stop, shared with every Link peer on the network (Live, Bitwig, phone apps, …).

Same reading interface as bridge/clock.py's Clock — beat_at(t), time_at(beat), tempo(), state(t) with t in
perf_counter seconds, and on_event(kind, beat) for "start", "stop", "tempo" and "relocate" — so the trigger loop
and the scheduler do not know which clock they read.

One owner of the Link session: aalink (the Python binding, an optional extra: GPL-3.0) is asyncio-based, so the
session lives on a thread of its own running an event loop. Only that thread touches the Link object. Every
POLL_S (and at once when Link reports a tempo, start/stop or peer change) it reads the session and publishes a
LinkState, an immutable snapshot that other threads read without a lock; OSC transport commands (tempo, play,
stop) reach it as calls queued onto its loop, and change the session for every peer.

A snapshot is a straight line beat(t) = anchor_beat + (t − anchor_time) · bpm / 60, anchored on a reading of
Link's beat taken between two perf_counter stamps: Link's clock (CLOCK_MONOTONIC_RAW) and perf_counter
(CLOCK_MONOTONIC) differ by at most a slew of a few hundred ppm, which re-anchoring every POLL_S makes
microseconds. The beat is read with the quantum, so beat mod quantum is the session's phase: with a quantum of
whole bars, the daemon's bar lines are the session's. When the session starts playing, the start is mapped to
beat 0 (aalink's request_beat_at_start_playing_time, as Link's docs ask of apps): alone, the music starts at
once; with peers, at the session's next quantum boundary (the beats before it are negative: a count-in).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from musicbridge.codecs import BEATS_PER_BAR, STEP_BEATS

log = logging.getLogger(__name__)

POLL_S = 0.01  # how often the session is read when it reports nothing (tempo drift between readings: µs)
READ_TRIES = 5  # a reading interrupted for longer than READ_MAX_S (preempted, GIL handed over) is taken again
READ_MAX_S = 0.0005
RELOCATE_BEATS = STEP_BEATS / 2  # a phase jump at least this big (a peer moved the timeline) relocates the music
OPEN_TIMEOUT_S = 10.0  # the session thread has this long to create the Link object
CLOSE_TIMEOUT_S = 2.0
MIDI_CLOCK_STATUSES = (0xF8, 0xFA, 0xFB, 0xFC, 0xF2)  # clock, Start, Continue, Stop, Song Position: ignored here


@dataclass(frozen=True)
class LinkState:
    """What the session thread last read from Link. Replaced whole, never changed: readers need no lock."""

    playing: bool
    anchor_time: float  # perf_counter seconds at which the beat was anchor_beat
    anchor_beat: float  # Link's beat at anchor_time (phase shared within the quantum); stopped: where it stopped
    bpm: float
    peers: int  # other peers in the session

    def beat_at(self, t: float) -> float:
        if not self.playing:
            return self.anchor_beat
        return self.anchor_beat + (t - self.anchor_time) * self.bpm / 60.0

    def time_at(self, beat: float) -> float | None:
        if not self.playing:
            return None
        return self.anchor_time + (beat - self.anchor_beat) * 60.0 / self.bpm


class LinkClock:
    """beat_at(t) / time_at(beat) locked to an Ableton Link session. Thread-safe; open it with start_internal()."""

    def __init__(self, bpm: float = 120.0, quantum_bars: int = 1,
                 on_event: Callable[[str, float], None] | None = None):
        self.quantum = quantum_bars * BEATS_PER_BAR  # beats whose phase is shared with the session
        self.initial_bpm = bpm  # the session's tempo when this peer starts it; joining one, the session's wins
        self.on_event = on_event or (lambda kind, beat: None)
        self.snapshot = LinkState(playing=False, anchor_time=time.perf_counter(), anchor_beat=0.0, bpm=bpm, peers=0)
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.link = None  # the aalink.Link object: touched on the session thread only
        self.ready = threading.Event()
        self.closing = threading.Event()
        self.open_error: BaseException | None = None

    # ---- reading the time (any thread) ----------------------------------------------------------
    def beat_at(self, t: float) -> float:
        return self.snapshot.beat_at(t)

    def time_at(self, beat: float) -> float | None:
        """Wall-clock time of `beat` at the current tempo, or None while stopped."""
        return self.snapshot.time_at(beat)

    def tempo(self) -> float:
        return self.snapshot.bpm

    def state(self, t: float) -> tuple[bool, float, float]:
        """(playing, beat, bpm) at time t, from one snapshot."""
        snapshot = self.snapshot
        return snapshot.playing, snapshot.beat_at(t), snapshot.bpm

    @property
    def playing(self) -> bool:
        return self.snapshot.playing

    @property
    def peers(self) -> int:
        return self.snapshot.peers

    def link_status(self) -> dict:
        """{"peers", "bpm", "playing", "quantum_bars"}: for the status line and the exit summary."""
        snapshot = self.snapshot
        return {"peers": snapshot.peers, "bpm": round(snapshot.bpm, 3), "playing": snapshot.playing,
                "quantum_bars": self.quantum // BEATS_PER_BAR}

    # ---- the daemon's transport calls (any thread) ----------------------------------------------
    def start_internal(self, t: float) -> None:
        """The daemon starts serving: join (or start) the Link session. Plays when the session plays."""
        self.open()

    def open(self) -> None:
        if self.thread is not None:
            return
        import aalink  # noqa: F401  (the CLI checked it is there: a missing one fails here, loudly)

        self.thread = threading.Thread(target=self._run, name="link", daemon=True)
        self.thread.start()
        if not self.ready.wait(OPEN_TIMEOUT_S):
            raise RuntimeError(f"the Link session did not open within {OPEN_TIMEOUT_S:g} s")
        if self.open_error is not None:
            raise RuntimeError(f"cannot open the Link session: {self.open_error}") from self.open_error

    def close(self) -> None:
        """Leave the session (peers see this one go at once). Idempotent."""
        thread, self.thread = self.thread, None
        if thread is None:
            return
        self.closing.set()
        thread.join(CLOSE_TIMEOUT_S)

    def set_tempo(self, bpm: float, t: float) -> None:
        """Change the session's tempo (every peer follows)."""
        self._command(lambda link: setattr(link, "tempo", bpm))

    def play(self, t: float) -> None:
        """Start the session's transport (peers with Start Stop Sync on start too)."""
        self._command(lambda link: setattr(link, "playing", True))

    def stop(self, t: float) -> None:
        self._command(lambda link: setattr(link, "playing", False))

    def set_position(self, beat: float, t: float) -> None:
        log.debug("ignoring a song position: the Link session owns the phase")

    def handle_midi(self, message: list[int], t: float) -> bool:
        """MIDI clock messages are consumed and ignored (Link is the clock); True when it was one."""
        return message[0] in MIDI_CLOCK_STATUSES

    def _command(self, change: Callable) -> None:
        """Run change(link) on the session thread, then read the session again."""
        loop = self.loop
        if loop is None or self.closing.is_set():
            log.warning("the Link session is not open: transport command ignored")
            return

        def apply() -> None:
            if self.link is not None:  # not closed meanwhile
                change(self.link)
                self._step()

        try:
            loop.call_soon_threadsafe(apply)
        except RuntimeError:  # the loop closed meanwhile
            log.warning("the Link session closed: transport command ignored")

    # ---- the session thread -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            if self.ready.is_set():
                raise  # a running session failed: the daemon's thread hook stops it, loudly
            self.open_error = error
            self.ready.set()

    async def _serve(self) -> None:
        from aalink import Link

        link = Link(self.initial_bpm)  # needs the running loop: Link hands its callbacks to it
        link.quantum = self.quantum
        link.start_stop_sync_enabled = True
        link.enabled = True
        self.link, self.loop = link, asyncio.get_running_loop()
        for register in (link.set_tempo_callback, link.set_start_stop_callback, link.set_num_peers_callback):
            register(lambda _value: self._step())  # called on this loop: read the change at once
        self._step()
        self.ready.set()
        try:
            while not self.closing.is_set():
                await asyncio.sleep(POLL_S)
                self._step()
        finally:
            link.enabled = False  # a bye to the peers: they drop this one at once
            self.link = None

    def _read(self, link) -> tuple[float, float] | None:
        """(perf_counter time, Link beat at it), or None when every try was interrupted."""
        for _ in range(READ_TRIES):
            before = time.perf_counter()
            beat = link.beat
            after = time.perf_counter()
            if after - before <= READ_MAX_S:
                return (before + after) / 2, beat
        return None

    def _step(self) -> None:
        """Read the session, publish the new snapshot, then tell the daemon what changed (on this thread)."""
        link = self.link
        if link is None:
            return
        playing, bpm, peers = link.playing, link.tempo, link.num_peers
        before = self.snapshot
        if playing and not before.playing:
            link.request_beat_at_start_playing_time(0.0)  # the session's start is beat 0 (Link's advice)
        reading = self._read(link)
        if reading is None:
            self.snapshot = replace(before, peers=peers)
            return
        t, beat = reading
        if playing:
            self.snapshot = LinkState(True, t, beat, bpm, peers)
        else:  # the music stays where it stopped (Link's own beat runs on)
            self.snapshot = LinkState(False, t, before.beat_at(t), bpm, peers)
        events = []
        if playing != before.playing:
            events.append(("start" if playing else "stop", self.snapshot.anchor_beat))
        elif playing and abs(beat - before.beat_at(t)) >= RELOCATE_BEATS:
            events.append(("relocate", beat))  # a peer moved the timeline, or this one joined a session
        if bpm != before.bpm:
            events.append(("tempo", self.snapshot.anchor_beat))
        if peers != before.peers:
            log.info("Link: %d other peer%s in the session, %.1f bpm", peers, "" if peers == 1 else "s", bpm)
        for kind, event_beat in events:
            log.debug("Link %s at beat %.3f (%.1f bpm)", kind, event_beat, bpm)
            self._emit(kind, event_beat)

    def _emit(self, kind: str, beat: float) -> None:
        try:
            self.on_event(kind, beat)
        except Exception:
            log.exception("error in clock %s handler", kind)
