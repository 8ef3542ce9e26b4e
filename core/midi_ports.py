"""MIDI systems and ports through python-rtmidi: choosing an API, opening clients, listing ports.

Shared by `musicbridge ports` and the live bridge, so both name APIs and report failures the same way.
"""

from __future__ import annotations

import contextlib
import os
import sys

import rtmidi

API_NAMES = {
    "alsa": rtmidi.API_LINUX_ALSA,
    "jack": rtmidi.API_UNIX_JACK,
    "coremidi": rtmidi.API_MACOSX_CORE,
    "winmm": rtmidi.API_WINDOWS_MM,
}
API_CHOICES = ("auto", *API_NAMES)
API_HELP = f"MIDI system: {', '.join(API_CHOICES[:-1])} or {API_CHOICES[-1]}."  # --midi-api


class MidiUnavailableError(RuntimeError):
    """No MIDI system could be opened (or the one asked for could not)."""


def enable_hint() -> str:
    if sys.platform.startswith("linux"):
        return (
            "start a JACK server (e.g. `jackd -d alsa` or `jackd --no-realtime -d dummy`; under PipeWire run the "
            "command through `pw-jack`) and use --midi-api jack, or load ALSA's sequencer (`sudo modprobe snd-seq`, "
            "/dev/snd/seq must exist) and use --midi-api alsa"
        )
    if sys.platform == "darwin":
        return "CoreMIDI should always be there; check the IAC driver in Audio MIDI Setup"
    return "install a loopback MIDI driver (e.g. loopMIDI) and name its port with --midi-in/--midi-out"


def _preference() -> list[str]:
    if sys.platform.startswith("linux"):
        return ["jack", "alsa"]  # a running JACK server is what a Linux musician's rig listens to
    if sys.platform == "darwin":
        return ["coremidi", "jack"]
    return ["winmm"]


@contextlib.contextmanager
def quiet_stderr(enabled: bool = True):
    """Silence the C libraries' own complaints (libjack's "Cannot connect to server socket", ALSA's "open
    /dev/snd/seq failed") while probing APIs that may not exist: the error that follows says it in one sentence."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_client(direction: str, api: str = "auto", client_name: str = "musicbridge"):
    """An rtmidi.MidiIn or MidiOut on `api` ("auto" picks the first system that opens), and the API's name.

    Probing for `auto` is quiet; an API asked for by name keeps its library's own messages (they may help)."""
    if api not in API_CHOICES:
        raise MidiUnavailableError(f"unknown MIDI API {api!r}; choose one of {', '.join(API_CHOICES)}")
    # rtmidi's JACK client would otherwise try to launch a JACK server of its own.
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    compiled = {rtmidi.get_api_name(a) for a in rtmidi.get_compiled_api()}
    candidates = _preference() if api == "auto" else [api]
    cls = rtmidi.MidiIn if direction == "in" else rtmidi.MidiOut
    reasons = []
    for name in candidates:
        if rtmidi.get_api_name(API_NAMES[name]) not in compiled:
            reasons.append(f"{name}: not compiled into this python-rtmidi")
            continue
        try:
            with quiet_stderr(api == "auto"):
                return cls(API_NAMES[name], name=client_name), name
        except rtmidi.SystemError as error:
            reasons.append(f"{name}: {error}")
    what = "no usable MIDI system" if api == "auto" else f"MIDI API {api!r} cannot be opened"
    raise MidiUnavailableError(f"{what} ({'; '.join(reasons)}). To enable MIDI: {enable_hint()}")


def list_ports(api: str = "auto") -> dict[str, list[str]]:
    """{"api": [name], "inputs": [...], "outputs": [...]} for one MIDI system."""
    midi_in, name = open_client("in", api, "musicbridge-ports")
    midi_out, _ = open_client("out", name, "musicbridge-ports")
    try:
        return {"api": [name], "inputs": midi_in.get_ports(), "outputs": midi_out.get_ports()}
    finally:
        midi_in.delete()
        midi_out.delete()


def port_matches(port: str, wanted: str) -> bool:
    """Whether a port is the one named: its name contains `wanted` (case-insensitive)."""
    return wanted.lower() in port.lower()


def find_port(ports: list[str], wanted: str) -> int:
    """Index of the first port that matches `wanted` (port_matches)."""
    for index, port in enumerate(ports):
        if port_matches(port, wanted):
            return index
    raise MidiUnavailableError(f"no MIDI port matches {wanted!r}; ports: {', '.join(ports) or '(none)'}")
