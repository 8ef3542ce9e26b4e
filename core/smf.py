"""Standard MIDI File reading, streamed from the file's bytes: the events musicbridge.notes needs, per track.

mido builds one Message object per event before anything can use it: a 1,000,000-event file became ~450 MB of
objects and ~26 µs per event. This reader walks the bytes once and yields plain tuples
(tick, kind, channel, a, b) of the events that matter (notes, program changes, tempo, meter); everything else
is skipped by its length. It reads what mido reads with clip=True: running status, data bytes above 127 clipped,
sysex and unknown meta events skipped, a track without an end-of-track event ending with its chunk.
"""

from __future__ import annotations

from collections.abc import Iterator

NOTE_ON, NOTE_OFF, PROGRAM, TEMPO, TIME_SIGNATURE, END_OF_TRACK = range(6)
Event = tuple[int, int, int, int, int]  # (absolute tick, kind, channel, a, b)

_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
# System messages have no place in a file, but mido reads them by these lengths, and so does this reader.
_SYSTEM_DATA_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0, 0xFE: 0}
META, SYSEX, SYSEX_ESCAPE = 0xFF, 0xF0, 0xF7
META_TEMPO, META_TIME_SIGNATURE, META_END_OF_TRACK = 0x51, 0x58, 0x2F


class SmfError(ValueError):
    """Bytes that are not a readable Standard MIDI File."""


class MidiData:
    """A parsed header and the byte ranges of the track chunks; tracks() yields each one's events."""

    def __init__(self, data: bytes):
        if data[:4] != b"MThd" or len(data) < 14:
            raise SmfError("no MThd header")
        header_length = int.from_bytes(data[4:8], "big")
        self.type = int.from_bytes(data[8:10], "big")
        division = int.from_bytes(data[12:14], "big")
        self.ticks_per_beat = -1 if division & 0x8000 else division  # SMPTE time: unsupported (the caller says)
        self.data = data
        self.chunks: list[tuple[int, int]] = []  # (start, end) of each MTrk chunk's data
        position = 8 + header_length
        while position + 8 <= len(data):
            kind, length = data[position:position + 4], int.from_bytes(data[position + 4:position + 8], "big")
            position += 8
            if position + length > len(data):
                raise SmfError(f"a {kind!r} chunk of {length} bytes is cut short at {len(data) - position}")
            if kind == b"MTrk":
                self.chunks.append((position, position + length))
            position += length  # other chunk types are skipped, as the standard asks

    def tracks(self) -> Iterator[Iterator[Event]]:
        for start, end in self.chunks:
            yield _events(self.data, start, end)


def _events(data: bytes, position: int, end: int) -> Iterator[Event]:
    """One track's events in order, the last one END_OF_TRACK; SmfError when they run past the chunk."""
    tick = 0
    running = 0  # the last channel-message status (running status)
    try:
        while position < end:
            delta = 0
            while True:  # variable-length quantity
                byte = data[position]
                position += 1
                delta = (delta << 7) | (byte & 0x7F)
                if byte < 0x80:
                    break
            tick += delta
            status = data[position]
            if status >= 0x80:
                position += 1
            elif running:
                status = running
            else:
                raise SmfError(f"a data byte ({status}) where a status byte belongs")
            if status == META:
                meta = data[position]
                length, position = _quantity(data, position + 1)
                body = data[position:position + length]
                position += length
                if meta == META_TEMPO and length >= 3:
                    yield tick, TEMPO, 0, int.from_bytes(body[:3], "big"), 0
                elif meta == META_TIME_SIGNATURE and length >= 2:
                    yield tick, TIME_SIGNATURE, 0, body[0], 2 ** body[1]
                elif meta == META_END_OF_TRACK:
                    yield tick, END_OF_TRACK, 0, 0, 0
                    return
            elif status in (SYSEX, SYSEX_ESCAPE):
                length, position = _quantity(data, position)
                position += length
            elif status >= 0xF0:
                position += _SYSTEM_DATA_BYTES.get(status, 0)
            else:
                running = status
                kind, channel = status & 0xF0, status & 0x0F
                if _DATA_BYTES[kind] == 1:
                    a = min(data[position], 127)
                    position += 1
                    if kind == 0xC0:
                        yield tick, PROGRAM, channel, a, 0
                    continue
                a, b = min(data[position], 127), min(data[position + 1], 127)
                position += 2
                if kind == 0x90 and b > 0:
                    yield tick, NOTE_ON, channel, a, b
                elif kind == 0x80 or kind == 0x90:
                    yield tick, NOTE_OFF, channel, a, 0
        if position > end:
            raise SmfError("an event runs past the end of its track")
        yield tick, END_OF_TRACK, 0, 0, 0
    except IndexError:
        raise SmfError("the file ends inside a track") from None


def _quantity(data: bytes, position: int) -> tuple[int, int]:
    """(value, position after it) of a variable-length quantity."""
    value = 0
    while True:
        byte = data[position]
        position += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, position
