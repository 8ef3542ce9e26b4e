"""max_patches/musicbridge.pd: parsed and checked, then played by a real Pure Data against the real daemon.

- A small parser of the Pd file format (#N canvas / #X obj, msg, text, atoms / #X restore / #X connect), the
  vanilla objects' port counts in PD_PORTS, that table checked against Pd itself (it reports every impossible
  connection), every connection within its objects' ports, and Pd loading and re-saving the file unchanged.
- Protocol: every [oscformat] that reaches [netsend] has an address the daemon's dispatcher handles (with OSC
  types and literal values it accepts), every reply is routed, and the ports are `musicbridge serve`'s defaults.
- End to end: `pd -nogui -noaudio -nomidi -noprefs -stderr -open <harness> -open max_patches/musicbridge.pd`
  (real time, not -batch) against `musicbridge serve` with a tiny exported model. The harness (written by the
  test) sets the patch's ports, plays a phrase into the patch's controls in four bars (continue mode: answers
  overlap), asks for a variation and quits; a subscriber records the daemon's answers. The patch must play
  exactly the newest answer on each 16th, never two notes at once, get every answer before its start step, play
  the variation from the next bar line, leave nothing sounding, and Pd must print no error.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_patches import DEVICE_SENDS, atom, serve_defaults

from musicbridge.bridge.config import ServeConfig
from musicbridge.bridge.osc import REPLIES, ROUTES

PATCHES = Path(__file__).resolve().parents[1] / "max_patches"
PD_PATCH = PATCHES / "musicbridge.pd"
PD = shutil.which("pd") or "pd"
PD_FLAGS = ["-nogui", "-noaudio", "-nomidi", "-noprefs", "-stderr"]
ROUTE = {r.address: r for r in ROUTES}

# Port counts (inlets, outlets) of the Pd 0.53 vanilla objects the patch uses. Source: the Pd 0.53 reference
# (doc/5.reference/<object>-help.pd); test_pd_port_table_matches_pd checks every entry against Pd itself.
PD_FIXED = {
    "loadbang": (0, 1), "r": (0, 1), "receive": (0, 1), "v": (1, 1), "value": (1, 1),
    "oscformat": (1, 1), "oscparse": (1, 1),
    "netsend": (1, 2),  # -u -b: data in; connection state and (unused for UDP) replies out
    "netreceive": (1, 1),  # -u -b: UDP has no connection-count outlet
    "f": (2, 1), "float": (2, 1), "symbol": (2, 1), "+": (2, 1), "-": (2, 1), "*": (2, 1), "/": (2, 1),
    "moses": (2, 2), "makenote": (3, 2), "noteout": (3, 0), "notein": (0, 3), "metro": (2, 1), "delay": (2, 1),
    "timer": (2, 1), "print": (1, 0), "change": (1, 1), "qlist": (1, 2), "tgl": (1, 1),
    "until": (2, 1), "spigot": (2, 1),
}
PD_LIST = {"trim": (1, 1), "prepend": (2, 1), "append": (2, 1), "split": (2, 3)}
# [text <function> name ...]: (inlets, outlets) by function (the last inlet of most takes a pointer); [array define]
PD_TEXT = {"define": (1, 2), "search": (2, 1), "get": (4, 2), "set": (4, 0), "delete": (2, 0)}
PD_ARRAY = {"define": (1, 1)}
MAX_ONLY = {"udpsend", "udpreceive", "midiparse", "midiformat", "coll", "zl", "js", "prepend", "gate", "transport",
            "live.dial", "live.menu", "live.text", "live.numbox", "live.toggle", "live.thisdevice", "p", "i"}


@dataclass
class Box:
    canvas: int  # index of its canvas in PdPatch.canvases
    index: int  # its number in the canvas, as #X connect counts
    kind: str  # obj, msg, text, floatatom, symbolatom, subpatch
    atoms: list[str]
    record: str = ""

    @property
    def name(self) -> str:
        return self.atoms[0] if self.kind == "obj" and self.atoms else self.kind

    @property
    def args(self) -> list[str]:
        return self.atoms[1:] if self.kind == "obj" else self.atoms

    @property
    def text(self) -> str:
        return " ".join(self.atoms)


@dataclass
class Canvas:
    name: str
    boxes: list[Box] = field(default_factory=list)
    connects: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass
class PdPatch:
    canvases: list[Canvas]

    def boxes(self):
        return [b for c in self.canvases for b in c.boxes]


def records(text: str) -> list[str]:
    """The file's messages: split at unescaped semicolons; Pd wraps long ones over several lines."""
    return [" ".join(r.split()) for r in re.split(r"(?<!\\);\s*(?:\n|$)", text) if r.strip()]


def parse_pd(text: str) -> PdPatch:
    canvases: list[Canvas] = []
    stack: list[int] = []
    for record in records(text):
        words = record.split(" ")
        if words[:2] == ["#N", "canvas"]:
            canvases.append(Canvas(words[6] if stack else "main"))
            stack.append(len(canvases) - 1)
            continue
        if words[0] != "#X":
            raise ValueError(f"unexpected record {record[:60]!r}")
        current = canvases[stack[-1]]
        kind = words[1]
        if kind == "connect":
            current.connects.append(tuple(int(w) for w in words[2:6]))
        elif kind == "restore":
            sub = stack.pop()
            parent = canvases[stack[-1]]
            parent.boxes.append(Box(stack[-1], len(parent.boxes), "subpatch", words[4:], record))
            canvases[sub].name = " ".join(words[5:])
        elif kind in ("obj", "msg", "text", "floatatom", "symbolatom"):
            current.boxes.append(Box(stack[-1], len(current.boxes), kind, words[4:], record))
        elif kind != "coords":
            raise ValueError(f"unexpected record {record[:60]!r}")
    if stack != [0]:
        raise ValueError("unbalanced #N canvas / #X restore")
    return PdPatch(canvases)


def pd_ports(box: Box, patch: PdPatch | None = None) -> tuple[int, int]:
    """(inlets, outlets) of a box in Pd 0.53; KeyError for an object not in the table (not vanilla, or new)."""
    args = box.args
    if box.kind == "msg":
        return 1, 1
    if box.kind == "text":
        return 0, 0
    if box.kind in ("floatatom", "symbolatom"):  # a receive name hides the inlet, a send name the outlet
        receive, send = args[5], args[6]
        return int(receive in ("-", "empty")), int(send in ("-", "empty"))
    if box.kind == "subpatch":
        inner = next(c for c in patch.canvases if c.name == " ".join(box.atoms[1:]))
        return (sum(b.name == "inlet" for b in inner.boxes), sum(b.name == "outlet" for b in inner.boxes))
    name = box.name
    if name in ("s", "send"):
        return (1 if args else 2), 0
    if name == "list":
        return PD_LIST[args[0] if args and args[0] in PD_LIST else "append"]
    if name == "text":
        return PD_TEXT[args[0]]
    if name == "array":
        return PD_ARRAY[args[0]]
    if name in ("route", "sel", "select"):
        return (2, 2) if len(args) == 1 else (1, len(args) + 1)
    if name in ("t", "trigger"):
        return 1, len(args)
    if name == "pack":
        return len(args), 1
    if name == "unpack":
        return 1, len(args)
    if name == "expr":  # one inlet per highest $f/$i/$s index, one outlet per expression (separated by \;)
        return max([1] + [int(n) for n in re.findall(r"\$[fis](\d+)", box.text)]), box.text.count("\\;") + 1
    if name == "pipe":
        data = max(len(args) - 1, 1)
        return data + 1, data
    if name == "tgl":
        return int(args[3] in ("empty", "-")), int(args[2] in ("empty", "-"))
    return PD_FIXED[name]


@pytest.fixture(scope="module")
def patch() -> PdPatch:
    return parse_pd(PD_PATCH.read_text())


def run_pd(*opens: Path, sends: tuple[str, ...] = (), timeout: float = 30.0) -> subprocess.CompletedProcess:
    args = [PD, *PD_FLAGS]
    for path in opens:
        args += ["-open", str(path)]
    for message in sends:
        args += ["-send", message]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def port_setter(osc_port: int, reply_port: int) -> str:
    """A patch that sets [value mb_osc_port] / [value mb_reply_port]; opened before musicbridge.pd."""
    return "\n".join([
        "#N canvas 0 50 300 200 12;", "#X obj 10 10 loadbang;", "#X obj 10 40 t b b;",
        f"#X msg 10 70 {osc_port};", "#X obj 10 100 v mb_osc_port;",
        f"#X msg 120 70 {reply_port};", "#X obj 120 100 v mb_reply_port;",
        "#X connect 0 0 1 0;", "#X connect 1 1 2 0;", "#X connect 2 0 3 0;", "#X connect 1 0 4 0;",
        "#X connect 4 0 5 0;",
    ]) + "\n"


def pd_problems(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "couldn't create" in line or "error" in line.lower() or "connection failed" in line]


# ---------------------------------------------------------------------------------------------- structure
def test_parser_reads_every_record(patch):
    text = PD_PATCH.read_text()
    boxes = patch.boxes()
    assert len(boxes) == len(re.findall(r"^#X (?:obj|msg|text|floatatom|symbolatom|restore) ", text, re.M))
    assert sum(len(c.connects) for c in patch.canvases) == text.count("#X connect")
    assert [c.name for c in patch.canvases] == ["main", "network", "osc-out", "transport", "answers", "status"]


def connection_problems(patch: PdPatch) -> list[str]:
    problems = []
    for canvas in patch.canvases:
        for src, outlet, dst, inlet in canvas.connects:
            if not (src < len(canvas.boxes) and dst < len(canvas.boxes)):
                problems.append(f"{canvas.name}: connect {src} {outlet} {dst} {inlet}: no such object")
                continue
            a, b = canvas.boxes[src], canvas.boxes[dst]
            if outlet >= pd_ports(a, patch)[1]:
                problems.append(f"{canvas.name}: [{a.text}] has no outlet {outlet}")
            if inlet >= pd_ports(b, patch)[0]:
                problems.append(f"{canvas.name}: [{b.text}] has no inlet {inlet}")
    return problems


def test_connections_within_ports(patch):
    assert connection_problems(patch) == []


def test_only_vanilla_objects(patch):
    for box in patch.boxes():
        assert box.name not in MAX_ONLY, box.text
        pd_ports(box, patch)  # KeyError: an object outside the vanilla table


def test_structure_check_catches_broken_connections():
    broken = parse_pd(PD_PATCH.read_text())
    network = broken.canvases[1]
    oscparse = next(b for b in network.boxes if b.name == "oscparse")
    netsend = next(b for b in network.boxes if b.name == "netsend")
    network.connects += [(oscparse.index, 1, netsend.index, 0), (oscparse.index, 0, netsend.index, 1),
                         (oscparse.index, 0, len(network.boxes), 0)]
    assert connection_problems(broken) == [
        "network: [oscparse] has no outlet 1", "network: [netsend -u -b] has no inlet 1",
        f"network: connect {oscparse.index} 0 {len(network.boxes)} 0: no such object"]


def _probe(records_: list[str], tmp_path: Path) -> list[tuple[int, int]]:
    """(inlets, outlets) of each record's object as Pd itself has them: try every port, read the failures."""
    tries = 10
    lines = ["#N canvas 0 50 400 300 12;", "#X obj 10 200 print probe;", "#X msg 10 100 bang;"]
    lines += [r + ";" for r in records_]
    for k in range(len(records_)):
        for port in range(tries):
            lines += [f"#X connect {k + 2} {port} 0 0;", f"#X connect 1 0 {k + 2} {port};"]
    path = tmp_path / "probe.pd"
    path.write_text("\n".join(lines) + "\n")
    result = run_pd(path, sends=("pd quit",))
    failed_out, failed_in = defaultdict(set), defaultdict(set)
    for a, outlet, b, inlet in re.findall(r"probe\.pd (\d+) (\d+) (\d+) (\d+) \(.*?\) connection failed", result.stderr):
        a, outlet, b, inlet = int(a), int(outlet), int(b), int(inlet)
        if b == 0:
            failed_out[a - 2].add(outlet)
        else:
            failed_in[b - 2].add(inlet)
    return [(min(failed_in[k] | {tries}), min(failed_out[k] | {tries})) for k in range(len(records_))]


def test_pd_port_table_matches_pd(patch, tmp_path):
    """PD_PORTS and the argument rules against Pd 0.53 for every distinct object in the patch (and a few more)."""
    distinct = {}
    for box in patch.boxes():
        if box.kind != "subpatch" and box.kind != "text":
            distinct.setdefault(box.record.split(" ", 4)[1] + " " + " ".join(box.atoms), box)
    extra = ["s", "pipe 100", "route a", "sel 1 2 3", "list split 1", "expr $f1 + $f2 + $f3", "notein", "netsend -u -b"]
    for text in extra:
        distinct.setdefault("obj " + text, Box(0, 0, "obj", text.split(), f"#X obj 10 10 {text}"))
    boxes = list(distinct.values())
    measured = _probe([" ".join(b.record.split(" ")[:2] + ["10", "10"] + b.atoms) for b in boxes], tmp_path)
    expected = [pd_ports(b, patch) for b in boxes]
    mismatches = [(b.text, e, m) for b, e, m in zip(boxes, expected, measured, strict=True) if e != m]
    assert len(boxes) > 40
    assert mismatches == []


def test_pd_loads_and_resaves_the_file_unchanged(tmp_path):
    """Headless Pd creates every object (stderr clean) and writes the file back byte for byte."""
    copy = tmp_path / "musicbridge.pd"
    shutil.copy(PD_PATCH, copy)
    ports = tmp_path / "ports.pd"
    ports.write_text(port_setter(*_free_ports(2)))
    result = run_pd(ports, copy, sends=("pd-musicbridge.pd menusave", "pd quit"))
    assert pd_problems(result.stderr) == []
    assert "saved to:" in result.stderr
    assert copy.read_text() == PD_PATCH.read_text()


# ---------------------------------------------------------------------------------------------- protocol
class PdGraph:
    """Boxes across canvases and the paths between them: connects, and send names → receive names."""

    def __init__(self, patch: PdPatch):
        self.patch = patch
        self.edges: dict[tuple, list[tuple[int, tuple, int]]] = defaultdict(list)
        self.into: dict[tuple, list[tuple[tuple, int]]] = defaultdict(list)
        self.box = {(b.canvas, b.index): b for b in patch.boxes()}
        for ci, canvas in enumerate(patch.canvases):
            for src, outlet, dst, inlet in canvas.connects:
                self._link((ci, src), outlet, (ci, dst), inlet)
        senders, receivers = defaultdict(list), defaultdict(list)
        for key, b in self.box.items():
            if b.name in ("s", "send") and b.args:
                senders[b.args[0]].append(key)
            elif b.name in ("r", "receive"):
                receivers[b.args[0]].append(key)
            elif b.kind in ("floatatom", "symbolatom"):
                if b.args[5] not in ("-", "empty"):
                    receivers[b.args[5]].append(key)
                if b.args[6] not in ("-", "empty"):
                    senders[b.args[6]].append(key)
        for name, keys in senders.items():
            for s in keys:
                for r in receivers[name]:
                    self._link(s, 0, r, 0)

    def _link(self, src, outlet, dst, inlet):
        self.edges[src].append((outlet, dst, inlet))
        self.into[dst].append((src, inlet))

    def named(self, name: str) -> list[tuple]:
        return [k for k, b in self.box.items() if b.name == name]

    def reaching(self, targets: list[tuple]) -> set[tuple]:
        seen, queue = set(targets), deque(targets)
        while queue:
            for src, _ in self.into[queue.popleft()]:
                if src not in seen:
                    seen.add(src)
                    queue.append(src)
        return seen


def oscformats(graph: PdGraph) -> list[tuple[tuple, str, str | None]]:
    """(key, address, -f types or None) of the [oscformat]s whose packets reach [netsend]."""
    found = []
    for key in graph.reaching(graph.named("netsend")):
        box = graph.box[key]
        if box.name != "oscformat":
            continue
        args, types = box.args, None
        if args[:1] == ["-f"]:
            types, args = args[1], args[2:]
        found.append((key, "/" + "/".join(args), types))
    return found


def value_sources(graph: PdGraph, key: tuple) -> list[Box]:
    """Controls and literals that feed `key` through send/receive, [t], [f] and [symbol] only."""
    passthrough = {"r", "receive", "s", "send", "t", "trigger", "f", "float", "symbol"}
    found, seen, queue = [], {key}, deque([key])
    while queue:
        for src, _ in graph.into[queue.popleft()]:
            if src in seen:
                continue
            seen.add(src)
            box = graph.box[src]
            if box.kind in ("msg", "floatatom") or box.name in ("f", "float", "symbol") and box.args:
                found.append(box)
            if box.kind == "obj" and box.name in passthrough:
                queue.append(src)
    return found


def test_every_address_sent_is_handled_by_the_daemon(patch):
    graph = PdGraph(patch)
    formats = oscformats(graph)
    sent = {address for _, address, _ in formats}
    assert sent - set(ROUTE) == set(), "addresses the daemon's dispatcher does not know"
    assert DEVICE_SENDS - sent == set(), "the Max device sends these, the Pd patch does not"
    for _, address, types in formats:
        route_types = [a.type for a in ROUTE[address].args]
        if types is None:
            assert "s" not in route_types, f"{address}: Pd numbers go out as floats, symbols need -f s"
        else:
            assert list(types) == route_types[:len(types)], f"{address}: -f {types} for {route_types}"


def test_controls_and_literals_are_accepted_by_the_daemon(patch):
    """Every value that can reach an [oscformat] unchanged is one its address accepts."""
    graph = PdGraph(patch)
    checked = Counter()
    for key, address, _ in oscformats(graph):
        route = ROUTE[address]
        for box in value_sources(graph, key):
            if box.kind == "floatatom":
                low, high = float(box.args[1]), float(box.args[2])
                assert (low, high) != (0, 0), f"{address}: an unbounded number box"
                route.parse((low,)), route.parse((high,))
            elif box.kind == "msg":
                if box.atoms in (["bang"],) or box.atoms[0] == "set" or any("$" in a for a in box.atoms):
                    continue
                atoms = box.atoms[1:] if box.atoms[0] in ("list", "symbol") else box.atoms
                route.parse(tuple(atom(a) for a in atoms))
            else:  # a stored control's initial value: [f 1], [symbol continue]
                route.parse((atom(box.args[0]),))
            checked[address] += 1
    assert checked["/musicbridge/mode"] == 8  # seven mode buttons and the stored default
    assert checked["/musicbridge/note"] == 4
    for address in ("temperature", "bars", "novelty", "variations"):
        assert checked[f"/musicbridge/param/{address}"] == 2  # the number box and the stored default
    assert checked["/musicbridge/transport/tempo"] == 2  # the bpm box, and [f 120] sent again at Play
    assert checked["/musicbridge/capture"] == 2 and checked["/musicbridge/variation"] == 1


def routed_addresses(graph: PdGraph) -> set[str]:
    """Follow netreceive → oscparse → [list trim] → nested [route]s; where a route's outlet leads elsewhere, the
    symbols matched on the way are an address the patch reacts to."""
    leaves = set()

    def follow(key, prefix):
        box = graph.box[key]
        if box.name == "route":
            for outlet, nxt, _ in graph.edges[key]:
                if outlet < len(box.args):
                    follow(nxt, prefix + [box.args[outlet]])
        elif box.name in ("netreceive", "oscparse") or box.text == "list trim":
            for _, nxt, _ in graph.edges[key]:
                follow(nxt, prefix)
        elif prefix:
            leaves.add("/" + "/".join(prefix))

    for key in graph.named("netreceive"):
        follow(key, [])
    return leaves


def test_every_reply_is_routed(patch):
    assert routed_addresses(PdGraph(patch)) == {r.address for r in REPLIES}


def test_ports_are_the_daemons_defaults(patch):
    graph = PdGraph(patch)
    defaults, config = serve_defaults(), ServeConfig()
    assert (defaults["osc_port"], defaults["osc_reply_port"]) == (config.osc_port, config.osc_reply_port)
    found = {}
    for key, box in graph.box.items():
        for _, dst, _ in graph.edges[key]:
            target = graph.box[dst]
            if box.kind == "msg" and target.kind == "msg" and box.atoms[0].isdigit():
                found[target.atoms[0]] = int(box.atoms[0])
                if target.atoms[0] == "disconnect":
                    assert target.atoms[3] in ("localhost", config.osc_host)
    assert found == {"disconnect": config.osc_port, "listen": config.osc_reply_port}


# ---------------------------------------------------------------------------------------------- end to end
def _free_ports(n: int) -> list[int]:
    from bridge_harness import free_udp_port

    ports = set()
    while len(ports) < n:
        ports.add(free_udp_port())
    return sorted(ports)


PHRASE = [60, 64, 67, 72]  # a bar of quarter notes, each starting on an off-beat 8th
PLAYED_BARS = 4  # the phrase is played in bars 1-4: continue mode answers after each, so answers overlap
VARIATION_STEP = 104  # bar 7.5: /musicbridge/variation 1, of the last answer (bars 5-6), which is over by then
STOP_STEP = 146


def driver_patch(osc_port: int, reply_port: int, bpm: float) -> str:
    """Sets the ports, then (after 1 s: loaded, connected) plays the phrase into musicbridge.pd's controls for
    PLAYED_BARS bars with a [qlist], lets the answers play, asks for a variation, stops and quits."""
    q = 60000.0 / bpm
    step = q / 4
    events = [(0.0, f"mb-tempo {bpm:g}"), (0.0, "mb-mode continue"), (0.0, "mb-variations 3"), (0.0, "mb-play 1")]
    for bar in range(PLAYED_BARS):
        for k, pitch in enumerate(PHRASE):
            on = (bar * 4 + k + 0.5) * q
            events += [(on, f"mb-note {pitch + bar} 100"), (on + 0.4 * q, f"mb-note {pitch + bar} 0")]
    events += [(VARIATION_STEP * step, "mb-variation 1"), (STOP_STEP * step + step / 2, "mb-play 0"),
               ((STOP_STEP + 2) * step, "pd quit")]
    adds, last = [], 0.0
    for t, message in sorted(events, key=lambda e: e[0]):
        adds.append(f"add {t - last:g} {message}")
        last = t
    setter = port_setter(osc_port, reply_port).splitlines()
    lines = setter[:7] + [
        "#X msg 230 80 clear \\, " + " \\, ".join(adds) + ";",
        "#X obj 230 140 qlist;",
        "#X obj 400 80 delay 1000;",
        "#X msg 400 110 rewind \\, bang;",
        "#X obj 10 160 delay 40000;",  # a safety net: quit even if the qlist never finishes
        "#X msg 10 190 \\; pd quit;",
    ] + setter[7:] + ["#X connect 0 0 6 0;", "#X connect 6 0 7 0;", "#X connect 0 0 8 0;", "#X connect 8 0 9 0;",
                      "#X connect 9 0 7 0;", "#X connect 0 0 10 0;", "#X connect 10 0 11 0;"]
    return "\n".join(lines) + "\n"


def sounding_notes(played: list[tuple[int, int, int]]) -> tuple[list[tuple[int, int, int | None]], int]:
    """(pitch, on step, off step or None) of each note as a synth hears `played` (step, pitch, velocity), and how
    many note-ons came while another note was sounding."""
    notes, sounding, overlapping = [], {}, 0
    for step, pitch, velocity in played:
        if velocity > 0:
            overlapping += bool(sounding)
            sounding[pitch] = len(notes)
            notes.append([pitch, step, None])
        elif pitch in sounding:
            notes[sounding.pop(pitch)][2] = step
    return [tuple(n) for n in notes], overlapping


@pytest.mark.timeout(150)
def test_pd_plays_the_newest_answer_with_the_real_daemon(bridge_models, tmp_path):
    """Real Pd, real daemon (--clock osc, a dense tiny melody model), continue mode: the phrase is played in four
    bars in a row, so each two-bar answer overlaps the next by a bar. The patch must play exactly what owns each
    16th (the newest answer from its start, test_device_playback.owner_reference), never two notes at once (the
    answers are monophonic: two sounding together is two answers overlapping), every answer must come before its
    start step (the daemon's clock started at Pd's position at Play: it is not behind), the variation of an answer
    that is over plays whole from the next bar line, and nothing sounds after stop."""
    from bridge_harness import Daemon, OscPeer
    from test_device_playback import Phrase, owner_reference

    osc_port, reply_port, watch_port = _free_ports(3)
    stats = tmp_path / "stats.json"
    daemon = Daemon(["--model", str(bridge_models / "melody_a"), "--clock", "osc", "--seed", "3",
                     "--stats-json", str(stats)], osc_port=osc_port, reply_port=reply_port,
                    log_path=tmp_path / "daemon.log").start()
    watcher = None
    try:
        peer = OscPeer(osc_port, reply_port)
        try:
            daemon.wait_ready(peer)
        finally:
            peer.close()  # frees the reply port for the patch
        watcher = OscPeer(osc_port, watch_port)  # a subscriber: it gets every gen/* phrase the patch gets
        watcher.send("/musicbridge/subscribe", watch_port, 120.0)  # handled long before the first answer
        driver = tmp_path / "driver.pd"
        driver.write_text(driver_patch(osc_port, reply_port, bpm=120))  # a 16th = 125 ms of slack on a busy machine
        result = run_pd(driver, PD_PATCH, timeout=90)
    finally:
        daemon.stop()
        if watcher is not None:
            watcher.close()
    log = daemon.output()
    summary = json.loads(stats.read_text())
    printed = result.stderr

    assert result.returncode == 0, printed
    assert pd_problems(printed) == [], f"Pd printed errors:\n{printed}\n--- daemon:\n{log}"
    assert summary["osc_errors"] == 0, log
    assert summary["osc_in"] >= 2 * len(PHRASE) * PLAYED_BARS + STOP_STEP // 2
    # what the patch received: (id, n_notes, start step, the step it came at); the daemon's answers by id
    received = [tuple(int(float(v)) for v in m)
                for m in re.findall(r"musicbridge-answer: ([-\d.e+]+) ([-\d.e+]+) ([-\d.e+]+) ([-\d.e+]+)", printed)]
    phrases = {k: v for k, v in watcher.phrases().items() if v["end"]}  # the variation goes to every target too
    assert [r[0] for r in received] == sorted(phrases), printed
    answers = [r for r in received if r[3] < VARIATION_STEP - 1]
    (variation,) = [r for r in received if r[3] >= VARIATION_STEP - 1]
    assert len(answers) >= PLAYED_BARS - 1, printed
    for phrase_id, n_notes, _, _ in received:
        assert n_notes == len(phrases[phrase_id]["notes"]) > 0
    for phrase_id, _, start, came_at in answers:
        assert round(phrases[phrase_id]["begin"][2] * 4) == start  # a continue answer starts where the daemon said
        assert came_at < start, f"answer {phrase_id} came at step {came_at}, after its start {start}: the clock lags"
    # the variation is of the last answer, whose window was over when it came: it starts on the next bar line
    variation_id, variation_notes, variation_start, variation_came_at = variation
    _, bars, start_beat = phrases[variation_id]["begin"]
    assert round(start_beat * 4) + bars * 16 <= variation_came_at and variation_start == (variation_came_at // 16 + 1) * 16
    # what the patch played: every note, from Pd's prints (step pitch velocity)
    played = [tuple(int(float(v)) for v in m)
              for m in re.findall(r"musicbridge-play: ([-\d.e+]+) ([-\d.e+]+) ([-\d.e+]+)", printed)]
    notes, overlapping = sounding_notes(played)
    assert overlapping == 0, notes
    assert [n for n in notes if n[2] is None] == []  # all ended by the stop
    arrivals = [(came_at, Phrase(phrase_id, phrases[phrase_id]["begin"][2], phrases[phrase_id]["begin"][1],
                                 [tuple(n[1:]) for n in phrases[phrase_id]["notes"]]))
                for phrase_id, _, _, came_at in received]
    expected = owner_reference(arrivals, max(step for step, _, _ in played))
    assert sorted(notes) == expected
    assert len(expected) >= 2 * len(answers)
    later = [n for n in notes if n[1] >= variation_start]
    assert len(later) == variation_notes and all(on < variation_start + 32 for _, on, _ in later)
