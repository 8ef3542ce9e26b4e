"""Build musicbridge.amxd, the Max for Live MIDI effect, from musicbridge.maxpat (the one source of the patch).

An .amxd is a run of chunks: a 4-byte tag, the payload size as a little-endian uint32, the payload.

    ampf  b"mmmm"        the device type: MIDI effect (b"aaaa" audio effect, b"iiii" instrument)
    meta  4 zero bytes
    ptch  the patcher JSON, NUL-terminated, carrying the device's "project" block

A frozen device carries an "mx@c" container (the patch and copies of its files) in ptch instead; this device
is not frozen, so musicbridge_clip.js must be in Max's search path (README.md: install as a Max package).
The project block's dates are fixed, so the same .maxpat always builds the same bytes (a test checks that the
committed .amxd is this script's output).

    python max_patches/build_amxd.py           # rewrite musicbridge.amxd
    python max_patches/build_amxd.py --check   # exit 1 if musicbridge.amxd is not up to date
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAXPAT = HERE / "musicbridge.maxpat"
AMXD = HERE / "musicbridge.amxd"

DEVICE_TYPES = {b"aaaa": "audio effect", b"iiii": "instrument", b"mmmm": "MIDI effect"}
MIDI_EFFECT = b"mmmm"
MAX_EPOCH_DATE = 3_790_000_000  # seconds since 1904-01-01 (Max's epoch), fixed for a reproducible build


def project_block(device_type: bytes = MIDI_EFFECT) -> dict:
    """The "project" block Max for Live wants inside a device's patcher (a self-contained, unfrozen project)."""
    return {
        "version": 1,
        "creationdate": MAX_EPOCH_DATE,
        "modificationdate": MAX_EPOCH_DATE,
        "viewrect": [0.0, 0.0, 300.0, 500.0],
        "autoorganize": 1,
        "hideprojectwindow": 1,
        "showdependencies": 1,
        "autolocalize": 0,
        "contents": {"patchers": {}},
        "layout": {},
        "searchpath": {},
        "detailsvisible": 0,
        "amxdtype": struct.unpack(">I", device_type)[0],  # the type tag read as a big-endian integer
        "readonly": 0,
        "devpathtype": 0,
        "devpath": ".",
        "sortmode": 0,
        "viewmode": 0,
        "includepackages": 0,
    }


def device_patch(patch: dict, device_type: bytes = MIDI_EFFECT) -> dict:
    """The .maxpat's patcher with the device's project block added."""
    device = json.loads(json.dumps(patch))  # a deep copy
    device["patcher"]["project"] = project_block(device_type)
    return device


def chunk(tag: bytes, payload: bytes) -> bytes:
    assert len(tag) == 4, tag
    return tag + struct.pack("<I", len(payload)) + payload


def pack_amxd(device: dict, device_type: bytes = MIDI_EFFECT) -> bytes:
    text = json.dumps(device, indent="\t", ensure_ascii=True) + "\n"
    return (chunk(b"ampf", device_type) + chunk(b"meta", bytes(4))
            + chunk(b"ptch", text.encode("ascii") + b"\0"))


def read_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """[(tag, payload)] of an .amxd; raises ValueError when a chunk runs past the end of the file."""
    chunks, offset = [], 0
    while offset < len(data):
        if offset + 8 > len(data):
            raise ValueError(f"truncated chunk header at byte {offset}")
        tag, size = data[offset:offset + 4], struct.unpack("<I", data[offset + 4:offset + 8])[0]
        if offset + 8 + size > len(data):
            raise ValueError(f"chunk {tag!r} at byte {offset} claims {size} bytes, the file has {len(data) - offset - 8}")
        chunks.append((tag, data[offset + 8:offset + 8 + size]))
        offset += 8 + size
    return chunks


def patch_of(data: bytes) -> dict:
    """The patcher JSON inside an .amxd (refuses a frozen mx@c device, whose JSON is not plain text)."""
    payload = dict(read_chunks(data))[b"ptch"]
    if payload.startswith(b"mx@c"):
        raise ValueError("frozen device (mx@c): its patch is not stored as plain JSON")
    return json.loads(payload.rstrip(b"\0"))


def build(maxpat: Path = MAXPAT) -> bytes:
    return pack_amxd(device_patch(json.loads(maxpat.read_text())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build musicbridge.amxd from musicbridge.maxpat.")
    parser.add_argument("--check", action="store_true", help="only check that the .amxd is up to date")
    args = parser.parse_args(argv)
    data = build()
    if args.check:
        if not AMXD.exists() or AMXD.read_bytes() != data:
            print(f"{AMXD.name} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{AMXD.name} is up to date")
        return 0
    AMXD.write_bytes(data)
    print(f"wrote {AMXD} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
