"""max_patches/: the Max patch and the Max for Live device, checked without Max.

- Structure, of the .maxpat and of the JSON inside the .amxd: unique box ids, patchlines between boxes that
  exist and within their port ranges, len(outlettype) == numoutlets, and the port counts of every object equal
  to MAX_PORTS below, no Pd-only objects.
- The .amxd: chunk layout ampf/meta/ptch, MIDI-effect type, not frozen, byte-equal to build_amxd.py's output.
- A second, independent checker: py2max's linter (its object tables disagree with Max for a few objects; the
  disagreements are listed and explained in PY2MAX_KNOWN_WRONG).
- Protocol: every OSC address the patch sends is in the daemon's dispatcher (musicbridge.bridge.osc.ROUTES)
  with arguments it accepts, every reply (REPLIES) is routed, and the ports are `musicbridge serve`'s defaults.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import struct
from collections import defaultdict, deque
from pathlib import Path

import pytest
import typer

from musicbridge.bridge.config import ServeConfig
from musicbridge.bridge.osc import REPLIES, ROUTES

PATCHES = Path(__file__).resolve().parents[1] / "max_patches"
MAXPAT = PATCHES / "musicbridge.maxpat"
AMXD = PATCHES / "musicbridge.amxd"

# Port counts of the Max objects the patches use: (numinlets, outlettype) as Max 8 writes them into saved
# patches. Source: boxes of these objects in .maxpat/.amxd files saved by Max 8 (public patches, read through the
# code search), cross-read with the Max 8 reference pages (docs.cycling74.com/max8/refpages/<object>).
# Notable: xnotein (no channel argument) 4 outlets: pitch, velocity, note-on/off flag, channel; midiformat 2 outlets
# (was 1), udpsend 1 inlet and no outlet, [r name] no inlet, live.menu 3 outlets.
MAX_PORTS: dict[str, tuple[int, list[str]]] = {
    "midiin": (1, ["int"]),
    "xnotein": (1, ["int", "int", "int", "int"]),
    "midiformat": (7, ["int", ""]),
    "midiout": (1, []),
    "udpsend": (1, []),
    "udpreceive": (1, [""]),
    "prepend": (1, [""]),
    "gate": (2, [""]),  # [gate] with no argument: one outlet
    "metro": (2, ["bang"]),
    "transport": (2, ["int", "int", "float", "float", "float", "", "int", "float", ""]),  # ... tempo, timesig, state, ticks
    "change": (1, ["", "int", "int"]),
    "delay": (2, ["bang"]),
    "coll": (1, ["", "", "", ""]),
    "zl": (2, ["", ""]),
    "live.thisdevice": (1, ["bang", "int", "int"]),
    "s": (1, []),
    "r": (0, [""]),
    "print": (1, []),
    "*": (2, ["int"]),  # with an int argument ([* 1]); [* 1.] would output float
    "/": (2, ["float"]),  # [/ 480.]
    # user-interface boxes (maxclass)
    "message": (2, [""]),
    "comment": (1, []),
    "flonum": (1, ["", "bang"]),
    "live.dial": (1, ["", "float"]),
    "live.numbox": (1, ["", "float"]),
    "live.menu": (1, ["", "", "float"]),
    "live.text": (1, ["", ""]),
    "live.toggle": (1, [""]),
}
# Objects whose ports follow their arguments (same sources): route/sel have one inlet and one outlet per argument
# plus one (Max 7+), trigger one outlet per argument typed b/i/f/l, pack one inlet per argument, unpack one
# outlet per argument typed by it (0 int, 0. float, s symbol), expr one inlet per highest $i/$f index.
T_TYPES = {"b": "bang", "i": "int", "f": "float", "l": "", "s": "", "a": ""}
PD_ONLY = {"oscformat", "oscparse", "netsend", "netreceive", "moses", "list", "pd", "declare", "tgl", "bng", "hsl",
           "vsl", "nbx", "hradio", "vradio", "cnv", "floatatom", "symbolatom", "notein~"}


def _arguments(text: str) -> list[str]:
    words = text.split()[1:]
    return words[:next((k for k, w in enumerate(words) if w.startswith("@")), len(words))]  # attributes are not arguments


def js_ports(path: Path) -> tuple[int, int]:
    source = path.read_text()
    inlets = re.search(r"^\s*inlets\s*=\s*(\d+)\s*;", source, re.M)
    outlets = re.search(r"^\s*outlets\s*=\s*(\d+)\s*;", source, re.M)
    return int(inlets.group(1)) if inlets else 1, int(outlets.group(1)) if outlets else 1


def object_name(box: dict) -> str:
    return box["text"].split()[0] if box["maxclass"] == "newobj" else box["maxclass"]


def expected_ports(box: dict, folder: Path = PATCHES) -> tuple[int, list[str]]:
    """(numinlets, outlettype) Max gives this box; KeyError for an object not in the table."""
    name = object_name(box)
    args = _arguments(box.get("text", ""))
    if name == "route":
        return len(args) + 1, [""] * (len(args) + 1)
    if name in ("sel", "select"):
        return len(args) + 1, ["bang"] * len(args) + [""]
    if name in ("t", "trigger"):
        return 1, [T_TYPES[a] for a in args]
    if name == "pack":
        return len(args), [""]
    if name == "unpack":
        return 1, ["" if a in ("s", "l") else "float" if ("." in a or a == "f") else "int" for a in args]
    if name == "expr":
        return max(int(n) for n in re.findall(r"\$[fi](\d+)", box["text"])), [""]
    if name == "js":
        inlets, outlets = js_ports(folder / args[0])
        return inlets, [""] * outlets
    return MAX_PORTS[name]


def patchers(patch: dict):
    """The top patcher and every subpatcher in it."""
    stack = [patch["patcher"]]
    while stack:
        patcher = stack.pop()
        yield patcher
        stack += [b["box"]["patcher"] for b in patcher["boxes"] if "patcher" in b["box"]]


def structure_problems(patch: dict, folder: Path = PATCHES) -> list[str]:
    problems = []
    for patcher in patchers(patch):
        boxes: dict[str, dict] = {}
        for entry in patcher["boxes"]:
            box = entry["box"]
            if box["id"] in boxes:
                problems.append(f"duplicate box id {box['id']}")
            boxes[box["id"]] = box
            types = box.get("outlettype", [])
            if len(types) != box["numoutlets"]:
                problems.append(f"{box['id']} {box.get('text', box['maxclass'])!r}: {box['numoutlets']} outlets, "
                                f"outlettype has {len(types)}")
            if object_name(box) in PD_ONLY:
                problems.append(f"{box['id']}: {object_name(box)!r} is a Pd object, not a Max one")
            try:
                inlets, outlet_types = expected_ports(box, folder)
            except KeyError:
                problems.append(f"{box['id']}: {object_name(box)!r} is not in MAX_PORTS (add it, with its source)")
                continue
            if (box["numinlets"], types) != (inlets, outlet_types):
                problems.append(f"{box['id']} {box.get('text', box['maxclass'])!r}: {box['numinlets']} inlets "
                                f"{types} outlets, Max has {inlets} inlets {outlet_types}")
        for entry in patcher["lines"]:
            (src, outlet), (dst, inlet) = entry["patchline"]["source"], entry["patchline"]["destination"]
            if src not in boxes or dst not in boxes:
                problems.append(f"patchline {src}:{outlet} -> {dst}:{inlet} between missing boxes")
                continue
            if not 0 <= outlet < boxes[src]["numoutlets"]:
                problems.append(f"patchline from outlet {outlet} of {src}, which has {boxes[src]['numoutlets']}")
            if not 0 <= inlet < boxes[dst]["numinlets"]:
                problems.append(f"patchline into inlet {inlet} of {dst}, which has {boxes[dst]['numinlets']}")
    return problems


def load_build_amxd():
    spec = importlib.util.spec_from_file_location("build_amxd", PATCHES / "build_amxd.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_amxd = load_build_amxd()


@pytest.fixture(scope="module")
def maxpat() -> dict:
    return json.loads(MAXPAT.read_text())


@pytest.fixture(scope="module")
def device() -> dict:
    return build_amxd.patch_of(AMXD.read_bytes())


# ---------------------------------------------------------------------------------------------- structure
@pytest.mark.parametrize("source", ["maxpat", "amxd"])
def test_structure(source, maxpat, device):
    patch = maxpat if source == "maxpat" else device
    assert patch["patcher"]["boxes"] and patch["patcher"]["lines"]
    assert structure_problems(patch) == []


def test_structure_check_catches_broken_patches(maxpat):
    broken = copy.deepcopy(maxpat)
    lines, boxes = broken["patcher"]["lines"], broken["patcher"]["boxes"]
    lines[0]["patchline"]["source"][1] = 99
    lines[1]["patchline"]["destination"][0] = "obj-nowhere"
    boxes[2]["box"]["id"] = boxes[3]["box"]["id"]
    xnotein = next(b["box"] for b in boxes if b["box"].get("text") == "xnotein")
    xnotein["numoutlets"], xnotein["outlettype"] = 3, xnotein["outlettype"][:3]  # [xnotein 1]'s count, no channel
    boxes.append({"box": {"id": "obj-pd", "maxclass": "newobj", "text": "oscformat musicbridge note", "numinlets": 1,
                          "numoutlets": 1, "outlettype": [""], "patching_rect": [0, 0, 10, 10]}})
    problems = "\n".join(structure_problems(broken))
    for expected in ("outlet 99", "missing boxes", "duplicate box id", "'xnotein': 1 inlets", "Pd object"):
        assert expected in problems


def test_patch_is_readable(maxpat):
    """Laid out for humans: commented, controls in presentation mode, no two boxes on top of each other."""
    patcher = maxpat["patcher"]
    boxes = [b["box"] for b in patcher["boxes"]]
    assert sum(b["maxclass"] == "comment" for b in boxes) >= 15
    assert patcher["openinpresentation"] == 1 and patcher["devicewidth"] > 0
    for b in boxes:
        if b["maxclass"].startswith("live.") and b["maxclass"] != "live.thisdevice":
            assert b.get("presentation") == 1, b["id"]
            assert b["saved_attribute_attributes"]["valueof"]["parameter_longname"] == b["varname"]
    rects = [(b["id"], b["patching_rect"]) for b in boxes]
    for k, (a, (ax, ay, aw, ah)) in enumerate(rects):
        for b, (bx, by, bw, bh) in rects[k + 1:]:
            assert not (ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah), f"{a} overlaps {b}"


# ---------------------------------------------------------------------------------------------- the .amxd
def test_amxd_chunks_and_device_type():
    chunks = build_amxd.read_chunks(AMXD.read_bytes())
    assert [tag for tag, _ in chunks] == [b"ampf", b"meta", b"ptch"]
    payloads = dict(chunks)
    assert payloads[b"ampf"] == b"mmmm"
    assert build_amxd.DEVICE_TYPES[payloads[b"ampf"]] == "MIDI effect"
    assert len(payloads[b"meta"]) == 4
    ptch = payloads[b"ptch"]
    assert not ptch.startswith(b"mx@c"), "a frozen device"
    assert ptch.endswith(b"\0") and ptch.count(b"\0") == 1


def test_amxd_carries_the_maxpat_with_a_midi_effect_project_block(maxpat, device):
    project = device["patcher"].pop("project")
    assert device == maxpat
    assert project["amxdtype"] == struct.unpack(">I", b"mmmm")[0] == 1835887981
    assert project["contents"] == {"patchers": {}}


def test_committed_amxd_is_the_build_scripts_output():
    assert AMXD.read_bytes() == build_amxd.build()
    assert build_amxd.main(["--check"]) == 0


def test_amxd_reader_refuses_broken_files():
    data = AMXD.read_bytes()
    with pytest.raises(ValueError, match="claims"):
        build_amxd.read_chunks(data[:-10])
    frozen = build_amxd.chunk(b"ampf", b"mmmm") + build_amxd.chunk(b"ptch", b"mx@c" + bytes(12))
    with pytest.raises(ValueError, match="frozen"):
        build_amxd.patch_of(frozen)


# ---------------------------------------------------------------------------------------------- py2max
# py2max's reference tables (from Max's .maxref.xml files) are wrong for these, as saved Max 8 patches show:
PY2MAX_KNOWN_WRONG = {
    "r": "py2max gives [r name] an inlet; Max 8 saves numinlets 0 for a receive with a name",
    "js": "py2max has no counts for js: they come from the script's inlets/outlets declarations",
}


def test_py2max_lints_the_patch_clean():
    from py2max import Patcher
    from py2max.lint import lint

    findings = lint(Patcher.from_file(str(MAXPAT)))
    assert [str(f) for f in findings] == []


def test_py2max_port_counts_agree_except_where_it_is_known_wrong(maxpat):
    from py2max.maxref import porttypes

    disagree, compared = {}, 0
    for entry in maxpat["patcher"]["boxes"]:
        box = entry["box"]
        reference = porttypes.port_counts(object_name(box), box.get("text"))
        compared += 1
        if reference != (box["numinlets"], box["numoutlets"]):
            disagree[object_name(box)] = reference
    assert compared > 100
    assert set(disagree) <= set(PY2MAX_KNOWN_WRONG), disagree


# ---------------------------------------------------------------------------------------------- protocol
ROUTE = {r.address: r for r in ROUTES}
REPLY_ADDRESSES = {r.address for r in REPLIES}
# What the device must send (issue: notes, Live's transport, every control).
DEVICE_SENDS = {
    "/musicbridge/note", "/musicbridge/transport/tempo", "/musicbridge/transport/play", "/musicbridge/transport/stop",
    "/musicbridge/transport/position", "/musicbridge/mode", "/musicbridge/param/temperature", "/musicbridge/param/bars",
    "/musicbridge/param/novelty", "/musicbridge/param/variations", "/musicbridge/capture", "/musicbridge/generate",
    "/musicbridge/panic", "/musicbridge/status", "/musicbridge/param/scale", "/musicbridge/param/attr/density",
    "/musicbridge/param/attr/register", "/musicbridge/param/attr/range", "/musicbridge/param/attr/stepwise",
}


def serve_defaults() -> dict:
    """The defaults of `musicbridge serve`'s options, read from the command itself."""
    from musicbridge.bridge.commands import register

    app = typer.Typer()
    register(app)  # only the bridge's commands: musicbridge.cli would import every stage
    command = typer.main.get_command(app)
    serve = command.commands["serve"] if hasattr(command, "commands") else command
    return {p.name: p.default for p in serve.params}


class MaxGraph:
    """Boxes and the paths between them: patch cords, and [s name] → every [r name]."""

    def __init__(self, patch: dict):
        self.boxes = {b["box"]["id"]: b["box"] for p in patchers(patch) for b in p["boxes"]}
        self.edges: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
        self.into: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        for p in patchers(patch):
            for entry in p["lines"]:
                (src, outlet), (dst, inlet) = entry["patchline"]["source"], entry["patchline"]["destination"]
                self.edges[src].append((outlet, dst, inlet))
                self.into[dst].append((src, outlet, inlet))
        receivers = defaultdict(list)
        for bid, box in self.boxes.items():
            if object_name(box) in ("r", "receive"):
                receivers[_arguments(box["text"])[0]].append(bid)
        for bid, box in self.boxes.items():
            if object_name(box) in ("s", "send"):
                for r in receivers[_arguments(box["text"])[0]]:
                    self.edges[bid].append((0, r, 0))
                    self.into[r].append((bid, 0, 0))

    def named(self, name: str) -> list[str]:
        return [bid for bid, box in self.boxes.items() if object_name(box) == name]

    def reaching(self, targets: list[str]) -> set[str]:
        """Boxes with a path to one of `targets`."""
        seen, queue = set(targets), deque(targets)
        while queue:
            for src, _, _ in self.into[queue.popleft()]:
                if src not in seen:
                    seen.add(src)
                    queue.append(src)
        return seen


def osc_messages(graph: MaxGraph) -> list[tuple[str, str, list[str]]]:
    """(box id, address, literal arguments) of the message boxes and prepends whose output reaches udpsend."""
    found = []
    for bid in graph.reaching(graph.named("udpsend")):
        box = graph.boxes[bid]
        words = box.get("text", "").split()
        if box["maxclass"] == "message" and words and words[0].startswith("/"):
            assert not re.search(r"[,;]", box["text"]), f"{bid}: one OSC message per box"
            found.append((bid, words[0], words[1:]))
        elif object_name(box) == "prepend" and words[1].startswith("/"):
            found.append((bid, words[1], None))  # arguments arrive at run time
    return found


def atom(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def test_every_address_sent_is_handled_by_the_daemon(maxpat):
    messages = osc_messages(MaxGraph(maxpat))
    sent = {address for _, address, _ in messages}
    assert sent - set(ROUTE) == set(), "addresses the daemon's dispatcher does not know"
    assert DEVICE_SENDS - sent == set(), "controls the issue asks for that send nothing"
    for _, address, args in messages:
        if args is not None:
            ROUTE[address].parse(tuple(atom(a) for a in args))  # raises OscInputError if the daemon would refuse it


def test_controls_stay_within_the_daemons_ranges(maxpat):
    """A live.* control feeding a prepend can only produce values its address accepts."""
    graph = MaxGraph(maxpat)
    checked = 0
    for bid, address, args in osc_messages(graph):
        if args is not None:
            continue
        for src, _, _ in graph.into[bid]:
            box = graph.boxes[src]
            if not box["maxclass"].startswith("live."):
                continue
            arg, spec = ROUTE[address].args[0], box["saved_attribute_attributes"]["valueof"]
            if arg.choices:
                assert set(spec["parameter_enum"]) <= set(arg.choices), address
            else:
                assert arg.low <= spec["parameter_mmin"] and spec["parameter_mmax"] <= arg.high, address
                assert arg.low <= spec["parameter_initial"][0] <= arg.high, address
                assert (arg.type == "i") == (spec["parameter_type"] == 1), f"{address}: int parameter for an i argument"
            checked += 1
    assert checked == 9  # mode, temperature, novelty, bars, variations, the four attribute knobs


def test_every_reply_is_routed(maxpat):
    graph = MaxGraph(maxpat)
    routes = [dst for u in graph.named("udpreceive") for _, dst, _ in graph.edges[u]]
    assert [object_name(graph.boxes[r]) for r in routes] == ["route"]
    routed = _arguments(graph.boxes[routes[0]]["text"])
    assert set(routed) == REPLY_ADDRESSES
    used_outlets = {outlet for outlet, _, _ in graph.edges[routes[0]]}
    assert used_outlets >= set(range(len(routed))), "a routed reply goes nowhere"


def test_ports_are_the_daemons_defaults(maxpat):
    graph = MaxGraph(maxpat)
    defaults, config = serve_defaults(), ServeConfig()
    assert defaults["osc_port"] == config.osc_port and defaults["osc_reply_port"] == config.osc_reply_port
    assert [_arguments(graph.boxes[b]["text"]) for b in graph.named("udpsend")] == \
        [[config.osc_host, str(config.osc_port)]]
    assert [_arguments(graph.boxes[b]["text"]) for b in graph.named("udpreceive")] == [[str(config.osc_reply_port)]]


def test_answers_play_from_the_coll_the_16th_metro_reads(maxpat):
    """gen/* reach musicbridge_player.js, which fills [coll]; the 16th metro (on Live's transport) reads the step
    from [coll] before the script hears of it, and the step's events go to midiformat -> midiout unchanged (no
    makenote: the script places every note-off). The script's own note-offs (stop, Panic) go the same way."""
    graph = MaxGraph(maxpat)
    route = graph.named("route")[0]
    routed = _arguments(graph.boxes[route]["text"])
    player = _js_box(graph, "musicbridge_player.js")
    for address in ("/musicbridge/gen/begin", "/musicbridge/gen/note", "/musicbridge/gen/end"):
        starts = [dst for outlet, dst, _ in graph.edges[route] if outlet == routed.index(address)]
        assert player in _downstream(graph, starts), f"{address} does not reach the player"
    assert "makenote" not in {object_name(b) for b in graph.boxes.values()}
    (coll,) = graph.named("coll")
    (midiformat,) = graph.named("midiformat")
    assert {(outlet, graph.boxes[dst]["text"].split()[0]) for outlet, dst, _ in graph.edges[player]} == \
        {(0, "coll"), (1, "midiformat")}
    (zl,) = [dst for outlet, dst, _ in graph.edges[coll] if outlet == 0]
    assert graph.boxes[zl]["text"] == "zl iter 2" and [d for _, d, _ in graph.edges[zl]] == [midiformat]
    assert {graph.boxes[d]["text"] for _, d, _ in graph.edges[midiformat]} == {"midiout"}
    metro = next(b for b in graph.named("metro") if "16n" in graph.boxes[b]["text"])
    assert coll in _downstream(graph, [metro])
    # the step: [t i i] reads [coll] from its right outlet (first, in the scheduler thread), then tells the script
    (step_trigger,) = [b for b in graph.named("t") if any(d == coll for _, d, _ in graph.edges[b])]
    assert graph.boxes[step_trigger]["text"] == "t i i"
    outlets = {outlet: graph.boxes[dst]["text"] for outlet, dst, _ in graph.edges[step_trigger]}
    assert outlets == {1: "coll", 0: "prepend tick"}


def test_player_script_handles_what_the_patch_sends_it(maxpat):
    graph = MaxGraph(maxpat)
    player = _js_box(graph, "musicbridge_player.js")
    assert graph.boxes[player]["saved_object_attributes"]["filename"] == "musicbridge_player.js"
    source = (PATCHES / "musicbridge_player.js").read_text()
    functions = set(re.findall(r"^function (\w+)\(", source, re.M))
    selectors = set()
    for src, _, _ in graph.into[player]:
        box = graph.boxes[src]
        selectors.add(box["text"].split()[1] if object_name(box) == "prepend" else box["text"].split()[0])
    assert selectors == {"begin", "note", "end", "tick", "flush", "panic"}
    assert selectors <= functions
    assert js_ports(PATCHES / "musicbridge_player.js") == (1, 2)
    feeding = {graph.boxes[r]["text"] for src, _, _ in graph.into[player] for r, _, _ in graph.into[src]}
    assert feeding == {"r ---mb-begin", "r ---mb-note", "r ---mb-end", "t i i", "r ---mb-flush", "r ---mb-panic"}
    senders = {b: graph.boxes[b]["text"] for b in graph.named("s")}
    panic_button = next(b for b in graph.boxes.values() if b.get("varname") == "Panic")["id"]
    assert "s ---mb-panic" in {senders.get(b) for b in _downstream(graph, [panic_button])}
    stop = next(b for b in graph.boxes.values() if b.get("text") == "/musicbridge/transport/stop")["id"]
    (stop_trigger,) = [src for src, _, _ in graph.into[stop]]
    assert "s ---mb-flush" in {senders.get(d) for _, d, _ in graph.edges[stop_trigger]}


def test_note_input_reports_every_note_off_as_velocity_0(maxpat):
    """xnotein tells a note-off by its flag whatever release velocity Live sends: velocity x flag -> the daemon."""
    graph = MaxGraph(maxpat)
    assert "midiparse" not in {object_name(b) for b in graph.boxes.values()}
    (xnotein,) = graph.named("xnotein")
    assert [object_name(graph.boxes[src]) for src, _, _ in graph.into[xnotein]] == ["midiin"]
    edges = {(outlet, graph.boxes[dst]["text"], inlet) for outlet, dst, inlet in graph.edges[xnotein]}
    assert edges == {(0, "pack 0 0", 0), (1, "* 1", 0), (2, "* 1", 1)}  # the flag (outlet 2) comes first
    (times,) = [dst for outlet, dst, _ in graph.edges[xnotein] if outlet == 1]
    (pack,) = [dst for outlet, dst, _ in graph.edges[xnotein] if outlet == 0]
    assert [(d, i) for _, d, i in graph.edges[times]] == [(pack, 1)]
    assert [graph.boxes[d]["text"] for _, d, _ in graph.edges[pack]] == ["prepend /musicbridge/note"]


def test_play_is_sent_by_the_first_16th_after_the_song_position(maxpat):
    """After Play the daemon's clock must start at Live's position at once: the 16th metro's [transport] sends the
    position (ticks, outlet 7) and then, while its state (outlet 6) has just turned 1, /musicbridge/transport/play;
    [transport] outputs right to left, so the position is first. The 100 ms poll sends no play (it would start the
    daemon up to 100 ms late, from where it stopped). Stop re-arms it; so does a reconnect (set -1)."""
    graph = MaxGraph(maxpat)
    play = next(b for b in graph.boxes.values() if b.get("text") == "/musicbridge/transport/play")["id"]
    metro_16th = next(b for b in graph.named("metro") if "16n" in graph.boxes[b]["text"])
    poll = next(b for b in graph.named("metro") if graph.boxes[b]["text"].startswith("metro 100"))
    assert play in _downstream(graph, [metro_16th])
    (poll_transport,) = [d for _, d, _ in graph.edges[poll]]
    (poll_state,) = [d for outlet, d, _ in graph.edges[poll_transport] if outlet == 6]
    assert [graph.boxes[d]["text"] for _, d, _ in graph.edges[poll_state]] == ["sel 0"]  # the poll: Stop only
    (tick_transport,) = [d for _, d, _ in graph.edges[metro_16th]]
    outlets = {outlet: dst for outlet, dst, _ in graph.edges[tick_transport]}
    assert set(outlets) == {6, 7} and max(outlets) == 7  # 7 (ticks) fires before 6 (state)
    position = next(b for b in graph.boxes.values() if b.get("text") == "prepend /musicbridge/transport/position")
    assert position["id"] in _downstream(graph, [outlets[7]])
    change = outlets[6]
    assert graph.boxes[change]["text"] == "change"
    (sel,) = [d for _, d, _ in graph.edges[change]]
    assert graph.boxes[sel]["text"] == "sel 1" and [d for o, d, _ in graph.edges[sel] if o == 0] == [play]
    assert [src for src, _, _ in graph.into[play]] == [sel]  # nothing else sends play
    resets = {graph.boxes[src]["text"] for src, _, _ in graph.into[change] if src != tick_transport}
    assert resets == {"set 0", "set -1"}  # they set the stored state without output
    set_0 = next(src for src, _, _ in graph.into[change] if graph.boxes[src]["text"] == "set 0")
    stop = next(b for b in graph.boxes.values() if b.get("text") == "/musicbridge/transport/stop")["id"]
    (stop_trigger,) = [src for src, _, _ in graph.into[stop]]
    assert set_0 in {d for _, d, _ in graph.edges[stop_trigger]}


def _downstream(graph: MaxGraph, starts: list[str]) -> set[str]:
    seen, queue = set(starts), deque(starts)
    while queue:
        for _, dst, _ in graph.edges[queue.popleft()]:
            if dst not in seen:
                seen.add(dst)
                queue.append(dst)
    return seen


def _js_box(graph: MaxGraph, script: str) -> str:
    (box,) = [b for b in graph.named("js") if _arguments(graph.boxes[b]["text"]) == [script]]
    return box


def test_write_to_clip_script_handles_what_the_patch_sends_it(maxpat):
    graph = MaxGraph(maxpat)
    js = _js_box(graph, "musicbridge_clip.js")
    script = PATCHES / _arguments(graph.boxes[js]["text"])[0]
    assert graph.boxes[js]["saved_object_attributes"]["filename"] == script.name
    source = script.read_text()
    functions = set(re.findall(r"^function (\w+)\(", source, re.M))
    selectors = set()
    for src, _, _ in graph.into[js]:
        box = graph.boxes[src]
        selectors.add(box["text"].split()[1] if object_name(box) == "prepend" else box["text"].split()[0])
    assert selectors == {"begin", "note", "end", "write"}
    assert selectors <= functions
    for call in ("create_clip", "add_new_notes"):  # the Live 11+ clip API
        assert f'call("{call}"' in source


def test_live_scale_script_handles_what_the_patch_sends_it(maxpat):
    """The Live scale toggle, live.thisdevice and the reconnect push reach musicbridge_scale.js, whose first outlet
    becomes /musicbridge/param/scale; it reads and observes Live 12's song scale."""
    graph = MaxGraph(maxpat)
    js = _js_box(graph, "musicbridge_scale.js")
    source = (PATCHES / "musicbridge_scale.js").read_text()
    functions = set(re.findall(r"^function (\w+)\(", source, re.M))
    feeding = {graph.boxes[src].get("varname") or graph.boxes[src]["text"] for src, _, _ in graph.into[js]}
    assert feeding == {"Live scale", "ready", "push"}
    assert {"msg_int", "ready", "push"} <= functions  # the toggle sends ints
    (toggle,) = [b for b in graph.named("live.toggle") if graph.boxes[b]["varname"] == "Live scale"]
    assert graph.boxes[toggle]["saved_attribute_attributes"]["valueof"]["parameter_initial"] == [0]  # off: no lock
    outlets = {outlet: graph.boxes[dst]["text"] for outlet, dst, _ in graph.edges[js]}
    assert outlets[0] == "prepend /musicbridge/param/scale" and outlets[1] == "prepend set"
    for prop in ("root_note", "scale_intervals"):
        assert f'"{prop}"' in source
    assert ".property = " in source  # observed, not only read once
