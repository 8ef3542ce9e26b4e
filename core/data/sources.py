"""Where pieces come from: MIDI files on disk and the corpora that ship inside the music21 package.

A *work unit* is the smallest piece of parsing that can run in a worker process: one MIDI file, one music21
file, or one tune of a multi-tune ABC file (Essen's files hold hundreds of tunes each, so splitting them keeps
both cores busy). Parsed music21 units are cached on disk, because parsing ABC/MusicXML is slow.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from musicbridge.notes import MidiFileError, Note, NoteSequence

# The music21 collections a build may name (issue 11 fixed this list): folk tunes, fiddle tunes, the Bach
# chorales, and the early-music collections whose voices are long vocal lines.
MUSIC21_CORPORA = ("essenFolksong", "ryansMammoth", "bach", "nottingham-dataset", "palestrina", "monteverdi", "trecento")
# Files in those folders that are not scores: Monteverdi's .rntxt are roman-numeral analyses, not melodies.
MUSIC21_NOT_SCORES = (".rntxt",)
MIDI_SUFFIXES = (".mid", ".midi")
CACHE_FORMAT = "1"


@dataclass(frozen=True)
class WorkUnit:
    kind: str  # "midi" | "music21"
    path: str
    tune: int | None = None  # index of the tune inside a multi-tune ABC file
    header: str = ""  # ABC file header lines that every tune of the file inherits
    text: str = ""  # the tune's own ABC text

    @property
    def label(self) -> str:
        return self.path if self.tune is None else f"{self.path}#{self.tune}"


@dataclass
class Piece:
    piece_id: str
    sequence: NoteSequence


class SourceError(ValueError):
    """A SOURCE argument that names nothing usable."""


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "musicbridge" / "parsed"


# ---- discovering work -----------------------------------------------------------------------------
def work_units(source: str) -> list[WorkUnit]:
    """The work units a SOURCE argument names: `music21:NAME`, a directory (recursive) or a glob."""
    if source.startswith("music21:"):
        return _music21_units(source.split(":", 1)[1])
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
        if not files:
            raise SourceError(f"{source!r} is neither a directory, a file, a glob that matches files, nor music21:NAME")
    return [WorkUnit("midi", str(f)) for f in files]


def _music21_units(name: str) -> list[WorkUnit]:
    if name not in MUSIC21_CORPORA:
        raise SourceError(f"unknown music21 corpus {name!r}; musicbridge builds from: {', '.join(MUSIC21_CORPORA)}")
    try:
        from music21 import corpus
    except ImportError as error:
        raise SourceError("music21 corpora need the corpus extra: pip install 'musicbridge[corpus]'") from error
    if name == "bach":  # the chorales (four voices each), not the rest of the bach folder
        paths = [_chorale_path(corpus, work) for work in corpus.chorales.Iterator(returnType="filename")]
    else:
        paths = sorted(
            str(p) for p in corpus.getPaths()
            if f"/{name}/" in str(p).replace(os.sep, "/") and not str(p).endswith(MUSIC21_NOT_SCORES)
        )
    units = []
    for path in paths:
        if path.endswith(".abc"):
            units += _abc_tunes(path)
        else:
            units.append(WorkUnit("music21", path))
    return units


def _chorale_path(corpus, work: str) -> str:
    """getWork("bach/bwv245.3") also matches bwv245.37 and bwv245.3.krn: take the exact name, MusicXML first."""
    found = corpus.getWork(work)
    candidates = found if isinstance(found, list) else [found]
    stem = work.rsplit("/", 1)[-1]
    exact = sorted((Path(p) for p in candidates if Path(p).stem == stem), key=lambda p: p.suffix != ".mxl")
    return str(exact[0] if exact else candidates[0])


def _abc_tunes(path: str) -> list[WorkUnit]:
    """One unit per tune ('X:' line) of an ABC file; lines before the first tune are the shared header."""
    text = Path(path).read_text(encoding="latin-1")
    header, tunes, current = [], [], None
    for line in text.splitlines():
        if line.startswith("X:"):
            current = [line]
            tunes.append(current)
        elif current is None:
            header.append(line)
        else:
            current.append(line)
    header_text = "\n".join(header)
    return [WorkUnit("music21", path, index, header_text, "\n".join(lines)) for index, lines in enumerate(tunes)]


# ---- parsing (runs in worker processes) -----------------------------------------------------------
def parse_unit(unit: WorkUnit, cache_dir: Path | None) -> tuple[list[Piece], str | None]:
    """The pieces in one unit, or an empty list and the reason it was skipped."""
    try:
        if unit.kind == "midi":
            return [Piece(unit.label, NoteSequence.from_midi(unit.path))], None
        return _parse_music21_cached(unit, cache_dir), None
    except MidiFileError as error:
        return [], str(error)
    except Exception as error:  # a parser bug in one file must not end a build of thousands
        return [], f"{unit.label}: {type(error).__name__}: {error}"


def _parse_music21_cached(unit: WorkUnit, cache_dir: Path | None) -> list[Piece]:
    cache_file = _cache_file(unit, cache_dir) if cache_dir else None
    if cache_file and cache_file.exists():
        parts = json.loads(cache_file.read_text())
    else:
        parts = _music21_parts(unit)
        if cache_file:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            temporary = cache_file.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(parts))
            os.replace(temporary, cache_file)  # atomic: a crashed build never leaves half a cache entry
    notes = [Note(p, 100, s, e, 0, 0, False, index) for index, part in enumerate(parts) for p, s, e in part]
    return [Piece(unit.label, NoteSequence(sorted(notes, key=lambda n: (n.start, -n.pitch))))] if notes else []


def _cache_file(unit: WorkUnit, cache_dir: Path) -> Path:
    import music21

    stat = os.stat(unit.path)
    key = f"{CACHE_FORMAT}|{music21.__version__}|{unit.path}|{stat.st_size}|{stat.st_mtime_ns}|{unit.tune}"
    return cache_dir / hashlib.sha1(key.encode()).hexdigest()[:2] / f"{hashlib.sha1(key.encode()).hexdigest()}.json"


def _music21_parts(unit: WorkUnit) -> list[list[tuple[int, float, float]]]:
    """Each part's notes as (pitch, start beat, end beat); chords keep all their pitches, ties are merged."""
    from music21 import converter

    if unit.tune is None:
        # forceSource/storePickle off: musicbridge caches parsed notes itself (JSON), and music21's own cache
        # pickles every score into the temp folder (slower than parsing, for the Palestrina files) and would
        # unpickle whatever sits there on the next build.
        score = converter.parse(unit.path, forceSource=True, storePickle=False)
    else:
        score = converter.parse(f"{unit.header}\n{unit.text}\n", format="abc")
    scores = getattr(score, "scores", None) or [score]
    parts = []
    for each in scores:
        shift = _pickup_shift(each)
        for part in each.parts or [each]:
            notes: list[list] = []
            tied: dict[int, list] = {}  # pitch -> the note a tie continues (merged here: stripTies is slow)
            for element in part.flatten().notes:
                length = float(element.duration.quarterLength)
                if length <= 0:  # grace notes
                    continue
                start = float(element.offset) + shift
                continues = element.tie is not None and element.tie.type in ("continue", "stop")
                for pitch in element.pitches:
                    midi = int(pitch.midi)
                    if continues and midi in tied and abs(tied[midi][2] - start) < 1e-6:
                        tied[midi][2] = start + length
                    else:
                        notes.append([midi, start, start + length])
                        tied[midi] = notes[-1]
            if notes:
                parts.append([tuple(n) for n in notes])
    return parts


def _pickup_shift(score) -> float:
    """Beats to delay a piece so that its first full bar starts on a bar line (a pickup bar is partial)."""
    try:
        first = score.parts[0].getElementsByClass("Measure")[0] if score.parts else None
        if first is None or first.timeSignature is None and first.paddingLeft == 0:
            return 0.0
        full = float(first.barDuration.quarterLength)
        actual = float(first.duration.quarterLength)
        return full - actual if 0 < actual < full else 0.0
    except (IndexError, AttributeError):
        return 0.0
