"""Settings of `musicbridge serve`: what the command line fixes (ServeConfig) and what OSC may change (Params)."""

from __future__ import annotations

from dataclasses import dataclass, field

from musicbridge.attributes import ATTRIBUTES
from musicbridge.scales import Scale

MODES = ("continue", "call-response", "interpolate", "sample", "loop", "mutate", "similar", "off")
ENDINGS = ("hold", "loop", "pingpong")
FALLBACKS = ("repeat", "hold")  # what plays when an answer misses its deadline (bridge/engine.py)
CLOCKS = ("auto", "internal", "midi", "osc", "link")
CLOCK_TIMES = ("auto", "frames", "wall")  # the time a MIDI clock is followed in (ServeConfig.clock_time)
SCHEDULERS = ("precise", "sleep")  # "sleep" is the naive baseline the benchmark compares against

# The ranges of the numeric musical parameters, in one place: the OSC routes (bridge/osc.py), the `serve`
# options (bridge/commands.py) and Params itself read them; docs/osc.md shows them (tests keep it equal).
# A param is an integer where its default in Params is.
PARAM_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "bars": (1, 16),
    "novelty": (0.0, 4.0),
    "variations": (1, 16),
    "silence": (0.0, 16.0),
    "steps": (2, 64),
}
PARAM_CHOICES: dict[str, tuple[str, ...]] = {"mode": MODES, "ending": ENDINGS, "fallback": FALLBACKS}
BPM_RANGE = (20, 300)  # the internal/OSC clock (--bpm, /musicbridge/transport/tempo)
LINK_QUANTUM_RANGE = (1, 16)  # --link-quantum, in bars
SIMILAR_K_RANGE = (1, 50)  # /musicbridge/similar k: library phrases in one answer
DEFAULT_SIMILAR_K = 5
# The attribute knobs (musicbridge.attributes): a Params field per attribute, α along its vector (calibrated vectors:
# up to about one training-data standard deviation of the attribute per unit), at /musicbridge/param/attr/<attribute>. Kept out of PARAM_RANGES: they have no `serve` option.
ATTRIBUTE_RANGE = (-3.0, 3.0)
ATTRIBUTE_PARAMS: dict[str, str] = {f"attr_{attribute}": attribute for attribute in ATTRIBUTES}  # field → attribute


def check_param(name: str, value) -> None:
    """ValueError when `value` is outside the range (or choices) of param `name`; other names pass."""
    if name in PARAM_RANGES or name in ATTRIBUTE_PARAMS:
        low, high = PARAM_RANGES.get(name, ATTRIBUTE_RANGE)
        if not low <= value <= high:  # NaN fails too
            raise ValueError(f"{name} {value:g} is outside {low:g}..{high:g}")
    elif name in PARAM_CHOICES and value not in PARAM_CHOICES[name]:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(PARAM_CHOICES[name])}")


@dataclass
class Params:
    """The musical parameters; OSC changes them while the daemon runs (ranges: PARAM_RANGES, PARAM_CHOICES)."""

    mode: str = "continue"
    temperature: float = 1.0
    bars: int = 2  # length of each answer
    novelty: float = 1.0  # σ scale when drawing z around μ
    variations: int = 1
    silence: float = 0.5  # call-response: beats of silence before answering
    steps: int = 8  # interpolate: phrases from A to B, both included
    ending: str = "hold"  # interpolate: after B
    scale: Scale | None = None  # scale lock: no note-on outside it in any answer (None = every note)
    fallback: str = "repeat"  # an answer not ready by its deadline: repeat the last answer, or hold (nothing new)
    # Attribute knobs (ATTRIBUTE_PARAMS): continue, sample and mutate decode z + Σ α·v; 0 = the knob does nothing.
    attr_density: float = 0.0  # more (+) or fewer (−) notes
    attr_register: float = 0.0  # higher or lower
    attr_range: float = 0.0  # wider or narrower
    attr_stepwise: float = 0.0  # more steps (+) or more leaps (−)

    def __setattr__(self, name: str, value) -> None:
        check_param(name, value)  # every change (command line, OSC, code) stays inside the table's ranges
        super().__setattr__(name, value)

    def attributes(self) -> dict[str, float]:
        """The attribute knobs that move z now: {attribute: α} of those not at 0 (runtime `attributes=`)."""
        return {attribute: value for param, attribute in ATTRIBUTE_PARAMS.items() if (value := getattr(self, param))}

    @classmethod
    def is_integer(cls, name: str) -> bool:
        """Whether param `name` takes whole numbers (OSC type i, an int option) rather than floats."""
        return isinstance(getattr(cls(), name), int)


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
    startup_notes_off: bool = True  # CC 123 on the output channels at start: a killed predecessor's notes end
    clock: str = "auto"
    bpm: float = 120.0
    link_quantum: int = 1  # --clock link: bars whose phase is shared with the Link session (Live's quantum)
    # On JACK, the time a MIDI clock is followed in: "frames" (the server's, bridge/jack_midi.py JackTimebase) is
    # exact for a clock the server's own graph writes (a DAW, jack_midi_clock); "wall" (perf_counter: the input's
    # stamps) for a sender timed by the wall clock; "auto" fits the ticks in both and follows the one they are
    # regular in (bridge/clock.py Clock.offer_timebase).
    clock_time: str = "auto"
    output_offset_ms: float = 0.0  # >0 sends later, <0 earlier (latency compensation)
    scheduler: str = "precise"
    realtime: bool = True  # real-time priority for the daemon's threads where permitted (bridge/priority.py)
    osc_host: str = "127.0.0.1"
    osc_port: int = 9000
    osc_reply_port: int = 9001
    osc_reply_host: str = "127.0.0.1"  # the fixed reply address (with osc_reply_port); others must subscribe
    oscquery_host: str = "127.0.0.1"  # where the OSCQuery HTTP server listens (and zeroconf advertises it)
    oscquery_port: int | None = None  # None: 9002, or any free port when that is taken; 0: no OSCQuery
    mappings: str | None = None  # MIDI learn's mappings file (TOML); None: mappings last until the daemon stops
    seed: int | None = None
    log_session: str | None = None  # --log-session: the folder of the session log (bridge/session_log.py)
    index: str | None = None  # --index: a library index (musicbridge embed) for /musicbridge/similar and mode similar
    status_line: bool = True
    params: Params = field(default_factory=Params)
