"""The session log (`serve --log-session DIR`): every answer with everything that made it, and the session's input
and output on one timeline — written on a thread of its own, so the music never waits for the disk.

In DIR (format: docs/session_log.md):
- session.jsonl: JSON Lines, one record a line, each flushed when written, so a crash loses at most the record
  being written. "session" (the first line), "input" (a note played in), "answer" (one per answer the engine took
  from the worker: the request with its input window, seed and temperature, the params, every z decoded, the
  tokens, the model files' hash, timing, and whether it was played; a similar answer also its index file and
  the library window of each candidate), "played" (an answer scheduled to play, or
  played again as the fallback), "cut" (what was pending was dropped from then on) and "dropped" (events lost).
- session.mid: the input (instrument 0) and what was played (instrument 1) on one timeline, seconds since the
  daemon started at the tempo of the first phrase played. Written to a temp file and renamed over the old one,
  every MIDI_EVERY_S while the session changes and at shutdown (SIGINT/SIGTERM and errors end there too): a
  killed daemon leaves the last whole file, and `musicbridge replay` rebuilds it from session.jsonl anyway.

Threads: the engine (the one owner of the musical state) posts the events below to post(), which never blocks —
the queue is bounded and what does not fit is counted, written as a "dropped" record and shown in the summary.
The writer thread turns events into records; big arrays are encoded row by row, so no single call holds the GIL
for long while the scheduler waits for it.

Everything an answer depends on is in its record: `musicbridge replay` (musicbridge.replay) decodes the request
(decode_request), runs the worker's own make_phrase on the model whose files have the logged hash, and compares.
The Timeline here turns records into the MIDI file, for the daemon and for replay alike.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

import musicbridge
from musicbridge.bridge.generator import Phrase, Request
from musicbridge.codecs import BEATS_PER_BAR
from musicbridge.notes import DEFAULT_BPM, DRUM_CHANNEL, Note, NoteSequence, TempoChange
from musicbridge.scales import Scale, parse_scale

log = logging.getLogger(__name__)

FORMAT = 1  # the records' format (the "session" record says it)
LOG_FILE = "session.jsonl"
RECORD_TYPES = ("session", "input", "answer", "played", "cut", "dropped")
MIDI_FILE = "session.mid"
QUEUE_SIZE = 4096  # events waiting for the writer; more are dropped (counted), never waited for
MIDI_EVERY_S = 5.0  # session.mid is rewritten this often while the session changes
WAKE_S = 0.25  # the writer looks at the clock at least this often (the MIDI file's period, dropped events)
CLOSE_WAIT_S = 10.0  # at shutdown, the longest wait for the writer to finish
REQUEST_IDENTITY = ("model", "epoch", "seq", "created", "params", "index")  # Request fields logged elsewhere
SKIPPED_MODEL_FILES = (".md",)  # documentation: editing a model card does not change what the model plays
SKIPPED_MODEL_NAMES = ("evaluate.json",)  # evaluation reports: likewise
MIN_NOTE_BEATS = 1 / 64  # the scheduler's shortest note (bridge/scheduler.py)
INPUT, OUTPUT = 0, 1  # the MIDI file's instruments


class SessionLogError(ValueError):
    """A session folder that cannot be written or read; the message says what to do."""


# ---- events: what the engine posts --------------------------------------------------------------
@dataclass(frozen=True)
class NoteHeard:
    """A note-on (velocity > 0) or note-off (0) the engine captured."""

    t: float  # arrival (perf_counter seconds)
    beat: float  # its song position
    channel: int
    pitch: int
    velocity: int


@dataclass(frozen=True)
class AnswerTaken:
    """An answer the engine took from the worker (or made itself: replay), played or not."""

    t: float  # when the engine took it (perf_counter seconds)
    phrase: Phrase
    outcome: str  # played | stale | stale_model | overtaken (the engine's counts)
    late: bool  # its deadline had passed: the fallback played first


@dataclass(frozen=True)
class PhrasePlayed:
    """Notes handed to the scheduler: an answer, or the last answer again (the `repeat` fallback)."""

    t: float  # when (perf_counter seconds): notes due before then are dropped, as the scheduler does
    answer: int  # the seq of the answer whose notes play
    request: int  # the seq of the request they play for (a fallback: the one that missed its deadline)
    start_beat: float
    start_t: float | None  # perf_counter time of start_beat at the tempo of the moment; None while stopped
    bpm: float  # that tempo: note times are start_t + beats · 60 / bpm
    channel: int
    replace: bool  # cuts what earlier phrases have pending from its start


@dataclass(frozen=True)
class OutputCut:
    """From `at` on nothing of the phrases played before sounds (a flush: stop, relocation, mode change, panic;
    a model switch at a bar line)."""

    t: float  # when the engine did it
    at: float  # perf_counter seconds
    why: str


_CLOSE = object()


# ---- values → JSON and back ---------------------------------------------------------------------
def plain(value):
    """A value as JSON can hold it: arrays → lists, scales → their spec, dataclasses → dicts, sets → sorted lists."""
    if isinstance(value, Scale):
        return value.spec
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _type_of(value) -> str | None:
    """How a logged request field is read back: "ndarray:<dtype>", "scale", "tuple"; None when JSON keeps it."""
    if isinstance(value, np.ndarray):
        return f"ndarray:{value.dtype}"
    if isinstance(value, Scale):
        return "scale"
    if isinstance(value, tuple):
        return "tuple"
    return None


def encode_request(request: Request) -> tuple[dict, dict]:
    """(fields, types): every Request field but its identity (REQUEST_IDENTITY), as JSON values, and how to read
    back those JSON does not keep. Generic, so fields added to Request are logged (and replayed) unchanged."""
    fields, types = {}, {}
    for field in dataclasses.fields(Request):
        if field.name in REQUEST_IDENTITY:
            continue
        value = getattr(request, field.name)
        fields[field.name] = plain(value)
        if (kind := _type_of(value)) is not None:
            types[field.name] = kind
    return fields, types


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def decode_request(fields: dict, types: dict) -> dict:
    """The Request keyword arguments of encode_request's (fields, types); a SessionLogError for a field this
    musicbridge's Request does not have (a log written by a newer version)."""
    known = {f.name for f in dataclasses.fields(Request)} - set(REQUEST_IDENTITY)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise SessionLogError(f"the log's requests have field(s) {', '.join(unknown)} that this musicbridge "
                              f"({musicbridge.__version__}) does not know; replay it with the version that wrote it")
    kwargs = {}
    for name, value in fields.items():
        kind = types.get(name)
        if kind is not None and kind.startswith("ndarray:"):
            value = np.asarray(value, dtype=kind.partition(":")[2])
        elif kind == "scale":
            value = parse_scale(value)
        elif kind == "tuple":
            value = _tuples(value)
        kwargs[name] = value
    return kwargs


def float32_list(array: np.ndarray) -> list:
    """A float32 array as nested lists of the shortest decimals that read back to the same float32 values."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 0:
        return float(str(array))
    return [float32_list(row) for row in array] if array.ndim > 1 else [float(str(v)) for v in array]


def dumps(value) -> str:
    """json.dumps, one row at a time: no single call holds the GIL over a whole record of arrays."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list) and value and isinstance(value[0], (list, dict)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


def match_record(match) -> dict:
    """A library window (embeddings.Match) as an answer record holds it: file, bar, voice, row, distance."""
    return {"file": match.file, "bar": match.bar, "voice": match.voice, "row": match.row, "distance": match.distance}


# ---- the model a record names -------------------------------------------------------------------
def model_files_hash(path: str | os.PathLike) -> str:
    """sha256 over the model folder's files (their paths and contents, sub-models and extra files included;
    documentation and evaluation reports left out): equal hashes, equal answers."""
    root = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                          p.relative_to(root).parts))
    for file in files:
        if file.suffix in SKIPPED_MODEL_FILES or file.name in SKIPPED_MODEL_NAMES:
            continue
        relative = file.relative_to(root).as_posix().encode()
        digest.update(len(relative).to_bytes(4, "big") + relative)
        data = file.read_bytes()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def model_identity(name: str, model) -> dict:
    """What a record says of the model that answered: enough to find it again and run it the same way."""
    return {"name": name, "path": str(Path(model.path).resolve()), "variant": model.variant,
            "providers": list(model.providers), "threads": model.threads, "sha256": model_files_hash(model.path)}


# ---- records → one timeline ---------------------------------------------------------------------
class Timeline:
    """A session's input and output notes on one clock (seconds since the daemon started), from its records, as
    the scheduler played them: a phrase with `replace` cuts what earlier phrases have pending from its start, a
    cut ends everything there, and notes due before their phrase was scheduled are dropped (never sent late).
    A cut made at time `now` never reaches back before it: what had sounded by then stays as it sounded."""

    def __init__(self):
        self.inputs: list[list] = []  # [on, off, channel, pitch, velocity]
        self.ended: list[list] = []  # output notes over before the latest record: no cut can reach them
        self.outputs: list[list] = []  # [on, off, channel, pitch, velocity, answer]: the others
        self.phrases: dict[int, list[Note]] = {}  # answer seq → its notes (beats from its start)
        self.bpm: float | None = None  # the tempo of the first phrase played: the MIDI file's
        self.first_start: float | None = None  # where that phrase started: a bar line of the MIDI file

    def add_answer(self, seq: int, notes: list[Note]) -> None:
        self.phrases[seq] = notes

    def add(self, record: dict) -> None:
        kind = record.get("type")
        if kind == "input":
            self.inputs.append([record["on"], record["off"], record["channel"], record["pitch"], record["velocity"]])
        elif kind == "played":
            self._played(record)
        elif kind == "cut":
            self._cut(record["at"], record["t"])

    def _played(self, record: dict) -> None:
        notes, start = self.phrases.get(record["answer"]), record["start_s"]
        if notes is None or start is None:
            return  # its answer was lost (a corrupt line, a dropped event), or the transport was stopped
        if self.bpm is None:
            self.bpm, self.first_start = record["bpm"], start
        if record["replace"]:
            self._cut(start, record["t"])
        seconds_per_beat = 60.0 / record["bpm"]
        for note in notes:
            on = start + note.start * seconds_per_beat
            off = start + max(note.end, note.start + MIN_NOTE_BEATS) * seconds_per_beat
            if on >= record["t"]:
                self.outputs.append([on, off, record["channel"], note.pitch, note.velocity, record["answer"]])

    def _cut(self, at: float, now: float) -> None:
        """At `now`, end every output note at `at`: later ones are cancelled, sounding ones stop there (a late
        phrase's `at` lies in the past: what sounded until now stays)."""
        at = max(at, now)
        self.ended += [note for note in self.outputs if note[1] <= now]
        self.outputs = [note for note in self.outputs if note[1] > now and note[0] < at]
        for note in self.outputs:
            note[1] = min(note[1], at)

    def sequence(self, instrument_per_answer: bool = False) -> NoteSequence:
        """The notes in beats at the first phrase's tempo, bar lines where that phrase's were: the input as
        instrument 0, the output as 1 (or as its answer's seq, for a piano roll that colours each answer)."""
        bpm = self.bpm or DEFAULT_BPM
        outputs = self.ended + self.outputs
        times = [note[0] for note in self.inputs + outputs]
        if not times:
            return NoteSequence([], [TempoChange(0.0, bpm)])
        bar_s = BEATS_PER_BAR * 60.0 / bpm
        first = self.first_start if self.first_start is not None else min(times)
        anchor = first - math.ceil((first - min(times)) / bar_s - 1e-9) * bar_s  # a bar line before every note

        def beat(t: float) -> float:
            return (t - anchor) * bpm / 60.0

        notes = [Note(pitch, velocity, beat(on), beat(off), channel, is_drum=channel == DRUM_CHANNEL,
                      instrument=INPUT) for on, off, channel, pitch, velocity in self.inputs if off > on]
        for on, off, channel, pitch, velocity, answer in outputs:
            if off > on:  # seqs count from 1: never the input's instrument
                notes.append(Note(pitch, velocity, beat(on), beat(off), channel, is_drum=channel == DRUM_CHANNEL,
                                  instrument=answer if instrument_per_answer else OUTPUT))
        notes.sort(key=lambda n: (n.start, n.instrument, n.pitch))
        return NoteSequence(notes, [TempoChange(0.0, bpm)])


def write_atomically(sequence: NoteSequence, path: Path) -> None:
    """The MIDI file written beside `path` and renamed over it: a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    sequence.save(temporary)
    os.replace(temporary, path)


# ---- reading ------------------------------------------------------------------------------------
@dataclass
class LogContents:
    records: list[tuple[int, dict]]  # (line number, record), in the order written
    skipped: list[str]  # one sentence per line that is not a record


def read_log(folder: str | os.PathLike) -> LogContents:
    """The records of DIR/session.jsonl; a line that is not a JSON object with a known type is reported in
    `skipped` and the rest are kept (a last line cut short is the record in flight when the daemon stopped)."""
    path = Path(folder) / LOG_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SessionLogError(f"{path} does not exist: give the folder `musicbridge serve --log-session DIR` "
                              f"wrote") from None
    except OSError as error:
        raise SessionLogError(f"cannot read {path} ({error.strerror or error})") from None
    lines = data.split(b"\n")
    cut_short = lines[-1] != b""  # a complete log ends with a newline
    records, skipped = [], []
    for number, line in enumerate(lines if cut_short else lines[:-1], 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            if cut_short and number == len(lines):
                skipped.append(f"line {number}: cut short (the record being written when the daemon stopped)")
            else:
                skipped.append(f"line {number}: not JSON ({error})")
            continue
        if not isinstance(record, dict) or record.get("type") not in RECORD_TYPES:
            skipped.append(f"line {number}: not a session record (no known \"type\")")
            continue
        records.append((number, record))
    return LogContents(records, skipped)


# ---- the writer ---------------------------------------------------------------------------------
class SessionLog:
    """`serve --log-session DIR`: made at startup (a folder that holds a log already is refused), start() with the
    session's facts, post() from the engine, close() at shutdown (idempotent)."""

    def __init__(self, folder: str | os.PathLike, queue_size: int = QUEUE_SIZE, now=time.perf_counter):
        self.folder = Path(folder)
        self.now = now
        self.t0 = now()  # session seconds count from here
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.dropped = 0  # events that found the queue full (written by the engine thread only)
        self.dropped_written = 0
        self.answers = 0
        self.records = 0
        self.write_errors = 0
        self.timeline = Timeline()
        self.held: dict[tuple[int, int], tuple[float, float, int]] = {}  # (channel, pitch) → (on, beat, velocity)
        self.models: dict[tuple[str, str], dict] = {}  # (path, variant) → model_identity
        self.midi_changed = False
        self.midi_written_at = self.t0
        self.thread: threading.Thread | None = None
        self.closed = False
        self.file = self._open()

    def _open(self):
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            return open(self.folder / LOG_FILE, "x", encoding="utf-8")  # never appends to another session's log
        except FileExistsError:
            raise SessionLogError(f"{self.folder} holds a session log already ({LOG_FILE}); give --log-session a "
                                  f"new folder (or move that one away)") from None
        except OSError as error:
            raise SessionLogError(f"cannot write the session log in {self.folder} ({error.strerror or error}); "
                                  f"give --log-session a folder you can write") from None

    def start(self, seed: int, **facts) -> None:
        """Write the "session" record (the engine's seed and `facts`: tempo, clock, models, params) and start."""
        header = {"type": "session", "format": FORMAT, "musicbridge": musicbridge.__version__,
                  "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "seed": seed, **{key: plain(value) for key, value in facts.items()}}
        self._write(header)
        self.thread = threading.Thread(target=self._run, name="session-log", daemon=True)
        self.thread.start()

    def post(self, event) -> None:
        """From the engine thread: never blocks (a full queue drops the event and counts it)."""
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Write what is queued, end the notes still held, write session.mid; then no more (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self.thread is None:  # never started (the daemon did not come up): no empty log left to refuse a rerun
            self.file.close()
            (self.folder / LOG_FILE).unlink(missing_ok=True)
            return
        try:
            self.queue.put(_CLOSE, timeout=CLOSE_WAIT_S)  # the writer empties the queue: there is room soon
        except queue.Full:
            log.warning("the session log's writer does not answer; %s may lack its last records", self.folder)
            return
        self.thread.join(timeout=CLOSE_WAIT_S)

    def summary(self) -> dict:
        return {"dir": str(self.folder), "answers": self.answers, "records": self.records, "dropped": self.dropped,
                "write_errors": self.write_errors}

    # ---- the writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                event = self.queue.get(timeout=WAKE_S)
            except queue.Empty:
                event = None
            if event is _CLOSE:
                break
            try:
                self._note_drops()
                if event is not None:
                    self._handle(event)
                if self.midi_changed and self.now() - self.midi_written_at >= MIDI_EVERY_S:
                    self._write_midi()
            except Exception:  # the log must never take the daemon down
                self.write_errors += 1
                log.exception("session log: cannot record %s", type(event).__name__)
        self._finish()

    def _note_drops(self) -> None:
        """A "dropped" record when events were lost since the last one: the log says where it has gaps."""
        if self.dropped != self.dropped_written:
            self.dropped_written = self.dropped
            self._write({"type": "dropped", "t": self._s(self.now()), "count": self.dropped_written})

    def _finish(self) -> None:
        try:
            self._note_drops()
            for key in list(self.held):  # notes still held: they end now
                self._note_off(key, self.now(), None)
            self._write_midi()
            self.file.flush()
            os.fsync(self.file.fileno())
        except Exception:
            self.write_errors += 1
            log.exception("session log: cannot finish %s", self.folder)
        finally:
            self.file.close()

    def _handle(self, event) -> None:
        if isinstance(event, NoteHeard):
            key = (event.channel, event.pitch)
            if key in self.held:  # a note-on again, or its note-off
                self._note_off(key, event.t, event.beat)
            if event.velocity > 0:
                self.held[key] = (event.t, event.beat, event.velocity)
        elif isinstance(event, AnswerTaken):
            self._answer(event)
        elif isinstance(event, PhrasePlayed):
            self._record({"type": "played", "t": self._s(event.t), "answer": event.answer, "request": event.request,
                          "start_beat": event.start_beat,
                          "start_s": self._s(event.start_t) if event.start_t is not None else None,
                          "bpm": event.bpm, "channel": event.channel, "replace": event.replace})
        elif isinstance(event, OutputCut):
            self._record({"type": "cut", "t": self._s(event.t), "at": self._s(event.at), "why": event.why})
        else:
            raise TypeError(f"not a session log event: {event!r}")

    def _note_off(self, key: tuple[int, int], t: float, beat: float | None) -> None:
        on, on_beat, velocity = self.held.pop(key)
        self._record({"type": "input", "on": self._s(on), "off": self._s(t), "on_beat": on_beat, "off_beat": beat,
                      "channel": key[0], "pitch": key[1], "velocity": velocity})

    def _answer(self, event: AnswerTaken) -> None:
        phrase, request = event.phrase, event.phrase.request
        fields, types = encode_request(request)
        record = {"type": "answer", "t": self._s(event.t), "seq": request.seq, "kind": request.kind,
                  "outcome": event.outcome, "late": event.late, "model": self._model(request.model),
                  "request": fields, "types": types, "params": plain(request.params),
                  "tokens": phrase.tokens.tolist(), "candidates": [row.tolist() for row in phrase.candidates],
                  "path": [row.tolist() for row in phrase.path], "z": [float32_list(z) for z in phrase.latents],
                  "timing": {"requested": self._s(request.created), "model_ms": round(phrase.model_ms, 3),
                             "latency_ms": round(phrase.latency_ms, 3)}}
        if request.index is not None:  # similar: the library it came from, and the window of each candidate
            record["index"] = {"path": request.index.path, "sha256": request.index.sha256}
            record["matches"] = [match_record(match) for match in phrase.matches]
        self.timeline.add_answer(request.seq, phrase.notes)
        self._write(record)
        self.answers += 1

    def _model(self, ref) -> dict | None:
        if ref is None or ref.model is None:
            return None
        key = (str(ref.model.path), ref.model.variant)
        if key not in self.models:  # hashed once per model, here, off the music's threads
            self.models[key] = model_identity(ref.name, ref.model)
        return {**self.models[key], "name": ref.name}

    def _record(self, record: dict) -> None:
        self._write(record)
        self.timeline.add(record)
        self.midi_changed = True

    def _write(self, record: dict) -> None:
        try:
            self.file.write(dumps(record) + "\n")
            self.file.flush()  # a crash loses at most the record being written
        except OSError as error:
            self.write_errors += 1
            if self.write_errors == 1:
                log.warning("the session log in %s cannot be written (%s); the music goes on without it",
                            self.folder, error.strerror or error)
            return
        self.records += 1

    def _write_midi(self) -> None:
        self.midi_written_at = self.now()
        self.midi_changed = False
        try:
            write_atomically(self.timeline.sequence(), self.folder / MIDI_FILE)
            os.fsync(self.file.fileno())  # the log is on disk as far as the MIDI file goes
        except OSError as error:
            self.write_errors += 1
            log.warning("cannot write %s (%s)", self.folder / MIDI_FILE, error.strerror or error)

    def _s(self, t: float) -> float:
        """perf_counter seconds → session seconds (µs are plenty, and keep the lines short)."""
        return round(t - self.t0, 6)
