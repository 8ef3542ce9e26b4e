"""MIDI learn: a controller's CC or a note bound to a param or an action, and the mappings file that keeps them.

`/musicbridge/learn <target>` arms learning; the next CC, or note-on, on the input (MIDI, or /musicbridge/note) is
bound to the target, and from then on that control drives it. The engine owns the table (bridge/engine.py): the
MIDI input thread posts every CC and note that learning wants (engine.ControlIn), and only the engine thread
reads or changes a Learn. A bound control is consumed: it never reaches the capture buffer nor --thru.

Targets come from the OSC route table (learn_targets): every route that sets a param (osc.Route.param) with a
numeric range or a list of choices is learnable under the param's name — a param added with its route is
learnable at once — plus `model` and the actions in ACTIONS. What a control does is what the route's OSC message
would do: the engine hands (address, arguments) to the daemon, which runs them through the dispatcher's checks
and handler.

How a control's value (CC value, or a note-on's velocity; 0..127) moves its target:
- range (temperature, bars, novelty, …): 0..127 spans the param's range linearly; integer params round.
- choice (mode, ending, fallback) and model: a CC picks by zone (0..127 cut into as many equal zones as there are
  choices: a knob or fader sweeps them; a message only when the zone changes); a note-on steps to the next
  choice, wrapping around (a pad cycles them).
- action (generate, panic, capture_a, capture_b, play, stop): a note-on, or a CC rising to TRIGGER_CC or above
  (a button's press; its release, 0, does nothing).

The mappings file (`serve --mappings FILE`) is TOML, one [[mapping]] table per control, hand-editable:

    [[mapping]]
    target = "temperature"
    channel = 1     # 1-16
    cc = 21         # or: note = 36

It is read at startup (a file that does not exist yet is an empty table; anything wrong in it is an error naming
the line, and the daemon does not start: see MappingsError) and rewritten whole after every change, atomically
(a temporary file in the same folder, then a rename), so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

MIDI_MAX = 127
TRIGGER_CC = 64  # a CC at or above it is "pressed" (the MIDI convention for switch controllers such as the sustain pedal)
LEARN_WINDOW_S = 30.0  # an armed learn that nothing answers is forgotten: a stray knob touched later is not bound
CONTROL_KINDS = ("cc", "note")
# Actions a control can fire: name -> (route address under the prefix, its fixed arguments).
ACTIONS: dict[str, tuple[str, tuple]] = {
    "generate": ("generate", ()),
    "panic": ("panic", ()),
    "capture_a": ("capture", ("a",)),
    "capture_b": ("capture", ("b",)),
    "play": ("transport/play", ()),
    "stop": ("transport/stop", ()),
}
MODEL = "model"  # the target that picks among the --model models (their names come from the daemon at run time)
FILE_HEADER = """\
# musicbridge MIDI mappings: written by /musicbridge/learn, read by `musicbridge serve --mappings FILE`.
# One [[mapping]] per control: target (a name /musicbridge/learn accepts, docs/osc.md), channel (1-16) and either
# cc = <controller 0-127> or note = <pitch 0-127>. Edit it while the daemon is stopped: it is rewritten whole
# whenever a mapping is learned or cleared (comments other than these lines are not kept).
"""


class MappingsError(ValueError):
    """A mappings file the daemon cannot use; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Control:
    """Where a message came from: a controller number or a pitch, on a channel."""

    kind: str  # "cc" or "note"
    channel: int  # 0..15
    number: int  # 0..127

    def describe(self) -> str:
        return f"{'CC' if self.kind == 'cc' else 'note'} {self.number} on channel {self.channel + 1}"


def control_of(message: list[int]) -> tuple[Control, int] | None:
    """(control, value) of a CC or note message (a note-off has value 0), else None."""
    if len(message) < 3:
        return None
    status, channel = message[0] & 0xF0, message[0] & 0x0F
    if status == 0xB0:
        return Control("cc", channel, message[1]), message[2]
    if status in (0x80, 0x90):
        return Control("note", channel, message[1]), message[2] if status == 0x90 else 0
    return None


@dataclass(frozen=True)
class Target:
    name: str
    address: str  # the OSC route it drives
    kind: str  # "range", "choice", "model" or "action"
    param: str | None = None  # range/choice: the Params field (its current value decides the next choice)
    low: float = 0.0  # range
    high: float = 0.0
    integer: bool = False
    choices: tuple[str, ...] = ()  # choice
    args: tuple = ()  # action: the route's fixed arguments

    def arguments(self, control: Control, value: int, previous: int | None, current, choices: tuple[str, ...]):
        """The route's arguments for `value` (previous: this control's last value, None for the first), or None
        when it does nothing. `current` is the target's value now; `choices` the choices (model: the daemon's)."""
        if self.kind == "action":
            pressed = value > 0 if control.kind == "note" else value >= TRIGGER_CC
            was_pressed = control.kind == "cc" and previous is not None and previous >= TRIGGER_CC
            return self.args if pressed and not was_pressed else None
        if control.kind == "note" and value == 0:
            return None  # a release changes nothing
        if self.kind == "range":
            x = self.low + (self.high - self.low) * value / MIDI_MAX
            return (round(x),) if self.integer else (x,)
        choices = self.choices if self.kind == "choice" else choices
        if not choices:
            return None
        if control.kind == "note":  # the next one, wrapping around
            index = (choices.index(current) + 1) % len(choices) if current in choices else 0
            return (choices[index],)
        zone = zone_of(value, len(choices))
        if previous is not None and zone_of(previous, len(choices)) == zone:
            return None  # still in the same zone: nothing new to pick
        return (choices[zone],)


def zone_of(value: int, count: int) -> int:
    """Which of `count` equal zones of 0..127 `value` falls in."""
    return min(value * count // (MIDI_MAX + 1), count - 1)


def learn_targets(routes, prefix: str) -> dict[str, Target]:
    """Every learnable target, by name, read from the OSC route table: the param routes with a range or choices
    (osc.Route.param), `model`, then the actions."""
    by_address = {route.address: route for route in routes}
    targets: dict[str, Target] = {}
    for route in routes:
        if route.param is None or len(route.args) != 1:
            continue
        (arg,) = route.args
        if arg.choices:
            targets[route.param] = Target(route.param, route.address, "choice", route.param, choices=arg.choices)
        elif arg.low is not None and arg.type in ("i", "f"):
            targets[route.param] = Target(route.param, route.address, "range", route.param, arg.low, arg.high,
                                          integer=arg.type == "i")
    targets[MODEL] = Target(MODEL, f"{prefix}/model/load", "model")
    for name, (suffix, args) in ACTIONS.items():
        route = by_address[f"{prefix}/{suffix}"]  # KeyError: an action whose route was renamed
        route.parse(args)  # raises if the route no longer takes these arguments
        targets[name] = Target(name, route.address, "action", args=args)
    return targets


@dataclass(frozen=True)
class Learned:
    """A control was just bound to a target."""

    target: str
    control: Control


@dataclass(frozen=True)
class Move:
    """A bound control moved: run `target` with this value."""

    target: Target
    control: Control
    value: int
    previous: int | None


class Learn:
    """The mappings (control -> target name), the armed target and each control's last value.

    Owned by the engine: no lock, one thread. `path` (None: kept in memory only) is rewritten after each change."""

    def __init__(self, targets: dict[str, Target], path: str | os.PathLike | None = None,
                 bindings: dict[Control, str] | None = None):
        self.targets = targets
        self.path = Path(path) if path is not None else None
        self.bindings: dict[Control, str] = dict(bindings or {})  # in the order they were learned
        self.armed: str | None = None
        self.armed_at = 0.0
        self.last: dict[Control, int] = {}  # the last value of each bound control (CC edges, zones)

    @classmethod
    def open(cls, targets: dict[str, Target], path: str | os.PathLike | None) -> Learn:
        """A table with the mappings of `path` (MappingsError when it cannot be used)."""
        return cls(targets, path, load_mappings(path, targets) if path is not None else None)

    def arm(self, name: str, now: float) -> None:
        if name not in self.targets:
            raise ValueError(f"nothing called {name!r} can be learned; one of: {', '.join(self.targets)}")
        self.armed, self.armed_at = name, now

    def expire(self, now: float) -> bool:
        """Forget an armed learn older than LEARN_WINDOW_S; True when it did."""
        if self.armed is not None and now - self.armed_at > LEARN_WINDOW_S:
            log.info("MIDI learn of %s: no control moved in %g s; not learning any more", self.armed, LEARN_WINDOW_S)
            self.armed = None
            return True
        return False

    def on_control(self, control: Control, value: int, now: float) -> Learned | Move | None:
        """A CC or note from the input: bound when learning (a note-off never binds), a Move when bound, else None
        (the input is an ordinary one)."""
        self.expire(now)
        if self.armed is not None and (control.kind == "cc" or value > 0):
            name, self.armed = self.armed, None
            self.bindings.pop(control, None)  # a control drives one target: learned again, it moves to the end
            self.bindings[control] = name
            self.last.pop(control, None)
            return Learned(name, control)
        name = self.bindings.get(control)
        if name is None:
            return None
        previous = self.last.get(control)
        self.last[control] = value
        return Move(self.targets[name], control, value, previous)

    def clear(self, name: str | None = None) -> int:
        """Forget the mappings of target `name` (None: every mapping, and an armed learn); returns how many."""
        if name is None:
            self.armed = None
            gone = list(self.bindings)
        else:
            if self.armed == name:
                self.armed = None
            gone = [control for control, target in self.bindings.items() if target == name]
        for control in gone:
            del self.bindings[control]
            self.last.pop(control, None)
        return len(gone)

    def listing(self) -> tuple[tuple[str, Control], ...]:
        return tuple((target, control) for control, target in self.bindings.items())

    def save(self) -> None:
        """Write the mappings to `path` (nothing without one); OSError when the file cannot be written."""
        if self.path is not None:
            write_atomically(self.path, dumps(self.bindings))


# ---- the file -----------------------------------------------------------------------------------------
def dumps(bindings: dict[Control, str]) -> str:
    parts = [FILE_HEADER]
    for control, target in bindings.items():
        parts.append(f"\n[[mapping]]\ntarget = {json.dumps(target)}\nchannel = {control.channel + 1}\n"
                     f"{control.kind} = {control.number}\n")
    return "".join(parts)


def write_atomically(path: Path, text: str) -> None:
    """`text` into `path` through a temporary file in the same folder and a rename: readers see the old file
    or the new one, never a part."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


MAPPING_HEADER = re.compile(r"^\s*\[\[\s*mapping\s*\]\]")
FIX = "fix or remove it (or start without --mappings)"


def load_mappings(path: str | os.PathLike, targets: dict[str, Target]) -> dict[Control, str]:
    """The mappings in `path` ({} when it does not exist yet). MappingsError, naming the line, for anything the
    daemon cannot use: a TOML error, an unknown target, a channel or number out of range, a control mapped twice."""
    path = Path(path)
    if not path.parent.is_dir():
        raise MappingsError(f"--mappings {path}: the folder {path.parent} does not exist; create it or pick "
                            "another file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise MappingsError(f"--mappings {path} cannot be read ({error}); {FIX}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:  # its message names the line and column
        raise MappingsError(f"{path}: not valid TOML: {error}; {FIX}") from None
    header_lines = [n for n, line in enumerate(text.splitlines(), 1) if MAPPING_HEADER.match(line)]
    for key in data:
        if key != "mapping":
            line = next((n for n, text_line in enumerate(text.splitlines(), 1)
                         if re.match(rf"^\s*\[?\s*{re.escape(key)}\b", text_line)), None)
            where = f"line {line}" if line else "the file"
            raise MappingsError(f"{path}, {where}: unknown key {key!r} (only [[mapping]] tables); {FIX}")
    entries = data.get("mapping", [])
    if not isinstance(entries, list):
        raise MappingsError(f"{path}: `mapping` must be [[mapping]] tables; {FIX}")
    bindings: dict[Control, str] = {}
    for index, entry in enumerate(entries):
        line = header_lines[index] if index < len(header_lines) else None
        where = f"{path}, line {line}" if line else f"{path}, mapping {index + 1}"
        control, target = _mapping(entry, targets, where)
        if control in bindings:
            raise MappingsError(f"{where}: {control.describe()} is mapped twice (to {bindings[control]} before); "
                                f"{FIX}")
        bindings[control] = target
    return bindings


def _mapping(entry, targets: dict[str, Target], where: str) -> tuple[Control, str]:
    if not isinstance(entry, dict):
        raise MappingsError(f"{where}: a mapping must be a table; {FIX}")
    unknown = set(entry) - {"target", "channel", *CONTROL_KINDS}
    if unknown:
        raise MappingsError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; {FIX}")
    target = entry.get("target")
    if target not in targets:
        raise MappingsError(f"{where}: target {target!r} is not one of {', '.join(targets)}; {FIX}")
    channel = entry.get("channel")
    if not _integer_in(channel, 1, 16):
        raise MappingsError(f"{where}: channel must be an integer 1-16, not {channel!r}; {FIX}")
    kinds = [kind for kind in CONTROL_KINDS if kind in entry]
    if len(kinds) != 1:
        raise MappingsError(f"{where}: give exactly one of cc = N or note = N; {FIX}")
    number = entry[kinds[0]]
    if not _integer_in(number, 0, MIDI_MAX):
        raise MappingsError(f"{where}: {kinds[0]} must be an integer 0-127, not {number!r}; {FIX}")
    return Control(kinds[0], channel - 1, number), target


def _integer_in(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
