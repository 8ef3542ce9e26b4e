"""Paths named over OSC, confined to the directories the command line allows.

A path from the network is resolved with every symlink and `..` followed (os.path.realpath) and accepted only
when the result lies strictly inside one of the allowed directories (themselves resolved the same way). Every
refusal is the same Refused error whatever the reason (outside, missing, not a regular file, too long, too
big), so a sender learns nothing about what exists, and messages never show a resolved absolute path.
"""

from __future__ import annotations

import os
import stat

MAX_PATH_CHARS = 1024  # beyond this a path is refused before the file system sees it (ENAMETOOLONG is 4096)
MAX_MIDI_FILE_BYTES = 1 << 20  # a song-length MIDI file is tens of KB; only the first bars are read anyway
MAX_FOLDER_ENTRIES = 256  # a model folder holds a handful of files; checking more would stall the OSC thread


class Refused(ValueError):
    """A path the daemon will not use; the message quotes only what the sender sent."""


def resolve_dirs(dirs) -> list[str]:
    return [os.path.realpath(os.fspath(d)) for d in dirs]


def inside(path: str, dirs: list[str]) -> bool:
    """path (already real) lies strictly inside one of dirs (already real)."""
    return any(path.startswith(d.rstrip(os.sep) + os.sep) for d in dirs)


def confine(text: str, dirs: list[str], refusal: str) -> str:
    """The real path of `text` (absolute, or relative to each of dirs in turn) inside dirs; else Refused(refusal).

    A relative path is tried against each directory and the first that exists wins, so `song.mid` finds the
    file in whichever allowed folder holds it."""
    if not text or len(text) > MAX_PATH_CHARS or "\x00" in text:
        raise Refused(refusal)
    try:
        expanded = os.path.expanduser(text) if text.startswith("~") else text
        candidates = [expanded] if os.path.isabs(expanded) else [os.path.join(d, expanded) for d in dirs]
        for candidate in candidates:
            real = os.path.realpath(candidate)
            if inside(real, dirs) and os.path.lexists(real):
                return real
    except (OSError, ValueError):  # a name too long for the file system, undecodable bytes, ...
        pass
    raise Refused(refusal)


def read_regular_file(path: str, max_bytes: int, refusal: str) -> bytes:
    """The bytes of a regular file, never blocking: O_NONBLOCK so a FIFO or device cannot stall the open, a
    fstat check that it is a regular file before anything is read, O_NOFOLLOW against a symlink swapped in
    after `confine`, and a size cap."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError):
        raise Refused(refusal) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            raise Refused(refusal)
        chunks, total = [], 0
        while total <= max_bytes:  # a file growing while read is cut at the cap, never read without end
            chunk = os.read(fd, min(1 << 16, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise Refused(refusal)
        return b"".join(chunks)
    except OSError:
        raise Refused(refusal) from None
    finally:
        os.close(fd)


def folder_confined(folder: str, dirs: list[str]) -> bool:
    """Every entry of a (real) folder, recursively, resolves inside dirs: no file-level symlink leads out."""
    seen = 0
    try:
        for root, subdirs, files in os.walk(folder, followlinks=False):
            for name in (*subdirs, *files):
                seen += 1
                if seen > MAX_FOLDER_ENTRIES or not inside(os.path.realpath(os.path.join(root, name)), dirs):
                    return False
    except OSError:
        return False
    return True
