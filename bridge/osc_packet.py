"""A bounded OSC 1.0 datagram parser: every packet, however hostile, is parsed or refused in time linear in its size.

The daemon parses datagrams here rather than with python-osc, whose parser loops forever on a bundle element
size of −4, recurses until RecursionError on deep bundles, lets UnicodeDecodeError escape on non-UTF-8 strings and
logs one warning per unknown type tag. Here every read is bounds-checked, every loop advances, bundles nest at
most MAX_BUNDLE_DEPTH deep, and the first problem ends the packet with one PacketError (one error reply).
python-osc still builds the replies.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_DATAGRAM = 65536  # receive buffer: the largest UDP payload (65,507 bytes over IPv4) is never cut
MAX_BUNDLE_DEPTH = 8  # a controller app nests bundles 1–2 deep; 8 leaves room and bounds the recursion
BUNDLE_PREFIX = b"#bundle\x00"
TIMETAG_BYTES = 8
SHOWN_CHARS = 40  # at most this much of a sender's text is quoted back in an error


class PacketError(ValueError):
    """A datagram that is not well-formed OSC; the message says what, in one short sentence."""


@dataclass(frozen=True)
class Message:
    address: str
    args: tuple


def show(value) -> str:
    """A sender's value as quoted in an error: repr, cut to SHOWN_CHARS (an 8 KB string must not come back)."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}…({len(text)} chars)"


def _padded(length: int) -> int:
    return (length + 3) & ~3


def _string(data: bytes, index: int, end: int, what: str) -> tuple[str, int]:
    """A NUL-terminated, 4-byte padded UTF-8 string at data[index:end]; (text, index after its padding)."""
    stop = data.find(b"\x00", index, end)
    if stop < 0:
        raise PacketError(f"{what} has no terminating NUL byte")
    try:
        text = data[index:stop].decode("utf-8")
    except UnicodeDecodeError:
        raise PacketError(f"{what} is not valid UTF-8") from None
    return text, min(index + _padded(stop - index + 1), end)


def _fixed(data: bytes, index: int, end: int, size: int, tag: str) -> int:
    if index + size > end:
        raise PacketError(f"argument of type {tag!r} runs past the end of the message")
    return index + size


# Numeric type tags: their struct format (big-endian, as OSC sends them) and so their size.
NUMBERS = {"i": struct.Struct(">i"), "f": struct.Struct(">f"), "d": struct.Struct(">d"), "h": struct.Struct(">q")}


def _arguments(data: bytes, index: int, end: int, tags: str) -> tuple:
    args = []
    for tag in tags:
        if tag in NUMBERS:
            number = NUMBERS[tag]
            start, index = index, _fixed(data, index, end, number.size, tag)
            args.append(number.unpack_from(data, start)[0])
        elif tag in "sS":
            text, index = _string(data, index, end, "a string argument")
            args.append(text)
        elif tag == "b":
            start, index = index, _fixed(data, index, end, 4, tag)
            size = struct.unpack_from(">i", data, start)[0]
            if not 0 <= size <= end - index:
                raise PacketError(f"blob size {size} is outside 0..{end - index} (the bytes left)")
            args.append(bytes(data[index : index + size]))
            index = min(index + _padded(size), end)
        elif tag in "crmt":  # char, RGBA colour, MIDI message, time tag: read, then refused by the routes
            start, index = index, _fixed(data, index, end, 8 if tag == "t" else 4, tag)
            args.append(bytes(data[start:index]))
        elif tag in "TF":
            args.append(tag == "T")
        elif tag == "N":
            args.append(None)
        elif tag == "I":
            args.append(float("inf"))
        elif tag in "[]":
            raise PacketError("arrays are not accepted (flat int, float and string arguments only)")
        else:
            raise PacketError(f"unknown type tag {show(tag)}")
    return tuple(args)


def _message(data: bytes, index: int, end: int) -> Message:
    address, index = _string(data, index, end, "the address")
    if not address.startswith("/"):
        raise PacketError(f"address {show(address)} does not start with '/'")
    if index >= end:  # no type tag string: old OSC senders; no arguments
        return Message(address, ())
    if data[index : index + 1] != b",":
        raise PacketError("the type tag string does not start with ','")
    tags, index = _string(data, index, end, "the type tag string")
    return Message(address, _arguments(data, index, end, tags[1:]))


def _bundle(data: bytes, index: int, end: int, depth: int, out: list[Message]) -> None:
    if depth > MAX_BUNDLE_DEPTH:
        raise PacketError(f"bundles nested more than {MAX_BUNDLE_DEPTH} deep")
    index += len(BUNDLE_PREFIX) + TIMETAG_BYTES  # the time tag is not waited for (the daemon plays in beats)
    if index > end:
        raise PacketError("bundle shorter than its header")
    while index < end:
        if end - index < 4:
            raise PacketError("bundle element size cut off")
        size = struct.unpack_from(">i", data, index)[0]
        index += 4
        if not 0 < size <= end - index:  # −4 made python-osc step backwards forever
            raise PacketError(f"bundle element size {size} is outside 1..{end - index} (the bytes left)")
        _element(data, index, index + size, depth, out)
        index += size


def _element(data: bytes, index: int, end: int, depth: int, out: list[Message]) -> None:
    if data.startswith(BUNDLE_PREFIX, index, end):
        _bundle(data, index, end, depth + 1, out)
    elif data.startswith(b"/", index, end):
        out.append(_message(data, index, end))
    else:
        raise PacketError("not an OSC message or bundle")


def parse_packet(data: bytes) -> list[Message]:
    """The messages of one datagram, bundles flattened in order; PacketError for anything malformed."""
    if not data:
        raise PacketError("empty datagram")
    messages: list[Message] = []
    _element(bytes(data), 0, len(data), 0, messages)
    return messages
