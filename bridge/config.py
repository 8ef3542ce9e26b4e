"""Settings of `musicbridge serve`: what the command line fixes (ServeConfig) and what OSC may change (Params)."""

from __future__ import annotations

from dataclasses import dataclass, field

from musicbridge.scales import Scale

MODES = ("continue", "call-response", "interpolate", "sample", "loop", "mutate", "off")
ENDINGS = ("hold", "loop", "pingpong")
CLOCKS = ("auto", "internal", "midi", "osc")
MIDI_APIS = ("auto", "alsa", "jack", "coremidi", "winmm")
SCHEDULERS = ("precise", "sleep")  # "sleep" is the naive baseline the benchmark compares against


@dataclass
class Params:
    """The musical parameters; OSC changes them while the daemon runs (ranges: docs/osc.md)."""

    mode: str = "continue"
    temperature: float = 1.0
    bars: int = 2  # length of each answer
    novelty: float = 1.0  # σ scale when drawing z around μ
    variations: int = 1
    silence: float = 0.5  # call-response: beats of silence before answering
    steps: int = 8  # interpolate: phrases from A to B, both included
    ending: str = "hold"  # interpolate: after B
    scale: Scale | None = None  # scale lock: no note-on outside it in any answer (None = every note)


@dataclass
class ServeConfig:
    models: list[str] = field(default_factory=list)  # --model, the first is active
    models_dirs: list[str] = field(default_factory=list)  # where /musicbridge/model/load may load from
    files_dirs: list[str] = field(default_factory=list)  # where /musicbridge/capture/file may read; [] = the cwd
    midi_api: str = "auto"
    midi_in: str | None = None  # substring of an existing input port; None = virtual "musicbridge in"
    midi_out: str | None = None  # substring of an existing output port; None = virtual "musicbridge out"
    in_channel: int = 0  # 0 = all, else 1..16
    out_channel: int = 0  # 0 = by representation (melody 1, drums 10), else 1..16
    thru: bool = False
    clock: str = "auto"
    bpm: float = 120.0
    output_offset_ms: float = 0.0  # >0 sends later, <0 earlier (latency compensation)
    scheduler: str = "precise"
    realtime: bool = True  # real-time priority for the daemon's threads where permitted (bridge/priority.py)
    osc_host: str = "127.0.0.1"
    osc_port: int = 9000
    osc_reply_port: int = 9001
    osc_reply_host: str = "127.0.0.1"  # the fixed reply address (with osc_reply_port); others must subscribe
    seed: int | None = None
    status_line: bool = True
    params: Params = field(default_factory=Params)
