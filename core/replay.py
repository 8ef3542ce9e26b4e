"""`musicbridge replay DIR`: every answer of a session log (`serve --log-session DIR`) made again, offline, and
compared with what the daemon made — its tokens, its candidates, its interpolation path and every z, bit for bit.

An answer is decided by its request (input window, seed, temperature, variations, novelty, scale, …; read back
with musicbridge.bridge.session_log.decode_request) and by its model's files. Each model is found by the sha256 the
log names (in a --model folder, else where the daemon loaded it) and loaded as the daemon loaded it (variant,
device, threads); a log whose hash no folder has is refused with the model it needs. The worker's own make_phrase
runs again, so every batch has the daemon's shape: int8 ONNX on the CPU then gives the same tokens. A line that is
not a record is reported and skipped; the others replay all the same.

A `similar` answer (serve --index) is made again from the library index the log names, found by its file's sha256
(in an --index file, else where the daemon loaded it), and its library windows are compared too. An index that is
no longer there, or was embedded again since, cannot say what the daemon found: that answer is skipped with the
reason (and plays in replay.mid as logged), and the others replay all the same — the index is the performer's
library, which changes, not the model.

Writes (beside the log, or in --out): replay.mid — the input and the replayed output on one timeline, laid out as
session.mid (equal to it when every answer is); replay.png — its piano roll, one colour per answer; replay.json —
the report, one entry per answer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from musicbridge.bridge.generator import ModelRef, Phrase, Request, make_phrase
from musicbridge.bridge.library import IndexRef, file_sha256, load_index
from musicbridge.bridge.session_log import (
    SessionLogError,
    Timeline,
    decode_request,
    match_record,
    model_files_hash,
    read_log,
    write_atomically,
)

MIDI_FILE = "replay.mid"
PIANOROLL_FILE = "replay.png"
REPORT_FILE = "replay.json"
CUDA = "CUDAExecutionProvider"


class ReplayError(ValueError):
    """A session that cannot be replayed (no log, a model not found or changed); the message says what to do."""


@dataclass
class AnswerCheck:
    line: int  # of session.jsonl
    seq: int  # the engine's request number
    kind: str
    start_beat: float
    outcome: str  # what the daemon did with it: played, stale, stale_model, overtaken
    differs: list[str]  # what the replay made differently: tokens, candidates, path, z ([]: bit-identical)

    @property
    def equal(self) -> bool:
        return not self.differs


@dataclass
class Replay:
    folder: Path
    checks: list[AnswerCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # lines that are not records, or answers without their fields
    dropped: int = 0  # events the daemon's log lost (its "dropped" records)
    models: dict[str, str] = field(default_factory=dict)  # sha256 → the folder that has it
    indexes: dict[str, str] = field(default_factory=dict)  # similar: index sha256 → the file that has it
    timeline: Timeline = field(default_factory=Timeline)  # input and the replayed output

    @property
    def different(self) -> list[AnswerCheck]:
        return [check for check in self.checks if not check.equal]


# ---- the models -----------------------------------------------------------------------------------
def _describe(identity: dict) -> str:
    return f"model {identity['name']!r} (variant {identity['variant']}, files sha256 {identity['sha256'][:12]}…)"


class Models:
    """The models a log names, found by their files' hash and loaded once each, as the daemon ran them."""

    def __init__(self, folders: list[str]):
        from musicbridge.runtime import ModelLoadError, resolve_model_path

        self.candidates: list[Path] = []
        for folder in folders:
            try:
                self.candidates.append(resolve_model_path(folder))
            except ModelLoadError as error:
                raise ReplayError(f"--model {folder}: {error}") from None
        self.hashes: dict[Path, str] = {}  # folder → its files' sha256
        self.loaded: dict[tuple, object] = {}  # (sha256, variant, device, threads) → runtime Model
        self.found: dict[str, str] = {}  # sha256 → folder

    def _hash(self, folder: Path) -> str:
        if folder not in self.hashes:
            self.hashes[folder] = model_files_hash(folder)
        return self.hashes[folder]

    def folder(self, identity: dict) -> Path:
        """The folder whose files have the hash the log names: a --model folder, else the daemon's."""
        logged = Path(identity["path"])
        for folder in [*self.candidates, logged]:
            if folder.is_dir() and self._hash(folder) == identity["sha256"]:
                self.found[identity["sha256"]] = str(folder)
                return folder
        given = f"; none of the --model folders ({', '.join(map(str, self.candidates))}) has it" if self.candidates \
            else ""
        if logged.is_dir():
            where = f"the files at {logged} are not those (sha256 {self._hash(logged)[:12]}…){given}"
        else:
            where = f"it is no longer at {logged}{given}"
        raise ReplayError(f"this session was played with {_describe(identity)}, but {where}; pass --model DIR with "
                          f"the model it was played with")

    def model(self, identity: dict):
        """The runtime Model of a record's `model`, loaded on the device and threads the daemon used."""
        from musicbridge.runtime import ModelLoadError, load_model

        device = "cuda" if identity["providers"][:1] == [CUDA] else "cpu"
        key = (identity["sha256"], identity["variant"], device, identity["threads"])
        if key not in self.loaded:
            folder = self.folder(identity)
            try:
                self.loaded[key] = load_model(folder, variant=identity["variant"], device=device,
                                              threads=identity["threads"])
            except ModelLoadError as error:
                raise ReplayError(f"cannot load {_describe(identity)} from {folder}: {error}") from None
        return self.loaded[key]


class Indexes:
    """The library indexes a log names (similar answers), found by their file's sha256 and loaded once each."""

    def __init__(self, files: list[str]):
        self.candidates = [Path(file).expanduser().resolve() for file in files]
        self.hashes: dict[Path, str | None] = {}  # file → its sha256 (None: unreadable)
        self.loaded: dict[str, IndexRef | str] = {}  # sha256 → the index, or why there is none
        self.found: dict[str, str] = {}  # sha256 → file

    def _hash(self, file: Path) -> str | None:
        if file not in self.hashes:
            try:
                self.hashes[file] = file_sha256(file) if file.is_file() else None
            except OSError:
                self.hashes[file] = None
        return self.hashes[file]

    def index(self, logged: dict) -> IndexRef | str:
        """The index whose file has the logged sha256, or why there is none (a sentence)."""
        sha256 = logged["sha256"]
        if sha256 not in self.loaded:
            self.loaded[sha256] = self._find(Path(logged["path"]), sha256)
        return self.loaded[sha256]

    def _find(self, logged: Path, sha256: str) -> IndexRef | str:
        for file in [*self.candidates, logged]:
            if self._hash(file) == sha256:
                try:
                    library = load_index(file)
                except ValueError as error:
                    return f"the index {file} cannot be read ({error})"
                self.found[sha256] = str(file)
                return library
        where = "is no longer there" if self._hash(logged) is None else "has changed since (embedded again?)"
        return (f"the library index it was found in ({logged}, sha256 {sha256[:12]}…) {where}; pass --index FILE "
                f"with that index to check it")


# ---- one answer -------------------------------------------------------------------------------------
def _same(made: np.ndarray, logged, dtype) -> bool:
    logged = np.asarray(logged, dtype=dtype)
    return made.shape == logged.shape and bool(np.array_equal(made, logged, equal_nan=dtype != np.int64))


def _same_rows(made: list[np.ndarray], logged: list, dtype) -> bool:
    return len(made) == len(logged) and all(_same(np.asarray(m), g, dtype) for m, g in zip(made, logged,
                                                                                              strict=True))


def replay_answer(record: dict, models: Models, library: IndexRef | None = None) -> tuple[Phrase | None, list[str]]:
    """The answer of an "answer" record made again (a similar one from `library`), and what differs from the
    logged one ([]: nothing); no phrase when the model refuses the request now (that is a difference too)."""
    identity = record["model"]
    model = models.model(identity)
    request = Request(**decode_request(record["request"], record.get("types", {})),
                      model=ModelRef.of(identity["name"], model), seq=record["seq"], index=library)
    try:
        phrase = make_phrase(request)
    except Exception as error:  # onnxruntime raises its own types
        return None, [f"not made: {type(error).__name__}: {error}"]
    differs = [name for name, same in (
        ("tokens", _same(phrase.tokens, record["tokens"], np.int64)),
        ("candidates", _same_rows(phrase.candidates, record["candidates"], np.int64)),
        ("path", _same_rows(phrase.path, record["path"], np.int64)),
        ("z", _same_rows(phrase.latents, record["z"], np.float32)),
        ("matches", [match_record(m) for m in phrase.matches] == record.get("matches", [])),
    ) if not same]
    return phrase, differs


def logged_notes(record: dict, models: Models) -> list:
    """The notes of a logged answer as the daemon played them (an answer that cannot be made again)."""
    codec = models.model(record["model"]).codec
    return codec.decode(np.asarray(record["tokens"], dtype=np.int64), velocity=record["request"]["velocity"])


# ---- the session ------------------------------------------------------------------------------------
def replay_session(folder: str | Path, model_folders: list[str] = (), index_files: list[str] = ()) -> Replay:
    """Every answer of the log in `folder` made again and checked; the timeline rebuilt with the replayed output.
    A ReplayError, before any answer is made, when the log is missing or a model it names is not found; a
    similar answer whose index is not found is skipped with the reason."""
    folder = Path(folder)
    try:
        contents = read_log(folder)
    except SessionLogError as error:
        raise ReplayError(str(error)) from None
    replay = Replay(folder, skipped=list(contents.skipped))
    models = Models(list(model_folders))
    indexes = Indexes(list(index_files))
    answers: set[int] = set()  # the lines of the answers to make again
    for line, record in contents.records:
        if record["type"] == "answer":
            identity = record.get("model")
            if not isinstance(identity, dict) or not {"name", "path", "variant", "sha256"} <= identity.keys():
                replay.skipped.append(f"line {line}: an answer record without its model")
                continue
            models.folder(identity)  # every model checked before the first answer is made
            answers.add(line)
    for line, record in contents.records:
        try:
            if record["type"] == "answer" and line in answers:
                library = indexes.index(record["index"]) if record.get("index") is not None else None
                if isinstance(library, str):
                    replay.skipped.append(f"line {line}: similar answer {record['seq']} not checked: {library}")
                    replay.timeline.add_answer(record["seq"], logged_notes(record, models))
                    continue
                phrase, differs = replay_answer(record, models, library)
                if phrase is not None:
                    replay.timeline.add_answer(record["seq"], phrase.notes)
                replay.checks.append(AnswerCheck(line, record["seq"], record["kind"], record["request"]["start_beat"],
                                                 record["outcome"], differs))
            elif record["type"] == "dropped":
                replay.dropped = max(replay.dropped, int(record["count"]))
            else:
                replay.timeline.add(record)
        except ReplayError:
            raise
        except SessionLogError as error:
            raise ReplayError(str(error)) from None
        except (KeyError, TypeError, ValueError) as error:  # a line that parses but lacks what its type needs
            replay.skipped.append(f"line {line}: cannot read this {record['type']} record "
                                  f"({type(error).__name__}: {error})")
    replay.models = dict(models.found)
    replay.indexes = dict(indexes.found)
    return replay


def write_outputs(replay: Replay, out: Path, png: bool) -> list[Path]:
    """replay.mid, replay.json and (png) replay.png in `out`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / MIDI_FILE, out / REPORT_FILE]
    write_atomically(replay.timeline.sequence(), out / MIDI_FILE)
    report = {"folder": str(replay.folder), "answers": len(replay.checks),
              "equal": sum(check.equal for check in replay.checks), "different": len(replay.different),
              "skipped": replay.skipped, "dropped": replay.dropped, "models": replay.models,
              "indexes": replay.indexes,
              "checks": [asdict(check) | {"equal": check.equal} for check in replay.checks]}
    (out / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")
    if png:
        from musicbridge.pianoroll import save_pianoroll

        title = f"{replay.folder.name}: input and {len(replay.checks)} answers, replayed"
        written.append(save_pianoroll(replay.timeline.sequence(instrument_per_answer=True), out / PIANOROLL_FILE,
                                      title))
    return written


def check_line(check: AnswerCheck) -> str:
    verdict = "equal" if check.equal else f"DIFFERENT ({', '.join(check.differs)})"
    return (f"answer {check.seq:>5}  {check.kind:<11} beat {check.start_beat:>8g}  {check.outcome:<11} "
            f"{verdict}")
