"""OSCQuery (bridge/oscquery.py): `musicbridge serve`'s OSC namespace over HTTP and its zeroconf advertisement.

A real daemon (OSC only, internal clock) is asked over HTTP with urllib, as a controller would; the JSON is checked
against the Vidvox OSCQuery proposal's fields for the whole tree, a leaf, single attributes and HOST_INFO, and VALUE
is seen to follow a param changed over OSC. The namespace, the dispatcher table (osc.ROUTES) and docs/osc.md are
checked equal. A zeroconf browser on the loopback interface finds the advertisement (and its goodbye).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from bridge_harness import Daemon, OscPeer, wait_until
from test_bridge_osc_contract import _table

from musicbridge.bridge.osc import ROUTES
from musicbridge.bridge.oscquery import DEFAULT_PORT, SERVICE_TYPE, OscQueryServer

BROWSE_S = 20.0  # mDNS: probing, announcing and the browser's first queries take a second or two
ROUTE = {route.address: route for route in ROUTES}
KEYS = {"FULL_PATH", "CONTENTS", "TYPE", "RANGE", "VALUE", "ACCESS", "DESCRIPTION"}


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def get_json(url: str):
    status, kind, body = get(url)
    assert status == 200 and kind == "application/json", (url, status, body)
    return json.loads(body)


class Served:
    def __init__(self, daemon: Daemon, osc: OscPeer, http_port: int):
        self.daemon, self.osc, self.http_port = daemon, osc, http_port
        self.base = f"http://127.0.0.1:{http_port}"


@pytest.fixture(scope="module")
def served(bridge_models):
    http_port = free_tcp_port()
    env = {"JACK_DEFAULT_SERVER": f"mbtest-none-{uuid.uuid4().hex[:8]}", "JACK_NO_START_SERVER": "1"}
    daemon = Daemon(["--midi-api", "auto", "--clock", "internal", "--model", str(bridge_models / "melody_a"),
                     "--oscquery-port", str(http_port), "--log-level", "debug"], env=env)
    osc = OscPeer(daemon.osc_port, daemon.reply_port)
    daemon.start()
    try:
        daemon.wait_ready(osc)
        yield Served(daemon, osc, http_port)
    finally:
        code = daemon.stop()
        osc.close()
        assert code == 0, daemon.output()


# ---- the proposal's fields ----------------------------------------------------------------------------------
def check_node(node: dict, path: str) -> list[str]:
    """Everything in `node` (and under it) that the proposal's fields do not allow."""
    problems = []
    where = path
    if set(node) - KEYS:
        problems.append(f"{where}: unknown keys {set(node) - KEYS}")
    if node.get("FULL_PATH") != path:
        problems.append(f"{where}: FULL_PATH {node.get('FULL_PATH')!r}")
    if not isinstance(node.get("DESCRIPTION"), str) or not node["DESCRIPTION"]:
        problems.append(f"{where}: no DESCRIPTION")
    if node.get("ACCESS") not in (0, 1, 2, 3):
        problems.append(f"{where}: ACCESS {node.get('ACCESS')!r}")
    types = node.get("TYPE")
    if types is None:
        if "RANGE" in node or "VALUE" in node or node.get("ACCESS") != 0:
            problems.append(f"{where}: RANGE/VALUE/ACCESS without a TYPE")
    else:
        ranges = node.get("RANGE")
        if not (isinstance(types, str) and types and set(types) <= set("ifs")):
            problems.append(f"{where}: TYPE {types!r}")
        elif not (isinstance(ranges, list) and len(ranges) == len(types)):
            problems.append(f"{where}: RANGE {ranges!r} does not match TYPE {types!r}")
        else:
            for tag, limits in zip(types, ranges, strict=True):
                if limits is None:
                    continue
                if set(limits) - {"MIN", "MAX", "VALS"} or not limits:
                    problems.append(f"{where}: RANGE item {limits!r}")
                if "VALS" in limits and not (tag == "s" and all(isinstance(v, str) for v in limits["VALS"])):
                    problems.append(f"{where}: VALS {limits['VALS']!r} for type {tag}")
                if "MIN" in limits:
                    number = int if tag == "i" else (int, float)
                    if not (isinstance(limits["MIN"], number) and isinstance(limits["MAX"], number)
                            and limits["MIN"] <= limits["MAX"]):
                        problems.append(f"{where}: MIN/MAX {limits!r} for type {tag}")
        readable = node.get("ACCESS", 0) & 1
        if readable != ("VALUE" in node):
            problems.append(f"{where}: ACCESS {node.get('ACCESS')} with VALUE {node.get('VALUE')!r}")
        if "VALUE" in node:
            value = node["VALUE"]
            if not (isinstance(value, list) and len(value) == len(types)):
                problems.append(f"{where}: VALUE {value!r} for TYPE {types!r}")
            else:
                for tag, item, limits in zip(types, value, ranges, strict=True):
                    kind = {"i": int, "f": (int, float), "s": str}[tag]
                    if not isinstance(item, kind) or isinstance(item, bool):
                        problems.append(f"{where}: VALUE item {item!r} is not of type {tag}")
                    elif limits and "VALS" in limits and item not in limits["VALS"]:
                        problems.append(f"{where}: VALUE {item!r} not in VALS")
                    elif limits and "MIN" in limits and not limits["MIN"] <= item <= limits["MAX"]:
                        problems.append(f"{where}: VALUE {item!r} outside MIN/MAX")
    for name, child in node.get("CONTENTS", {}).items():
        if "/" in name or not name:
            problems.append(f"{where}: CONTENTS name {name!r}")
        problems += check_node(child, path.rstrip("/") + "/" + name)
    return problems


def methods(node: dict) -> dict[str, dict]:
    """The OSC methods of a tree by address: leaves, and containers that take a message themselves (a TYPE)."""
    found = {}
    if "CONTENTS" not in node or "TYPE" in node:
        found[node["FULL_PATH"]] = node
    for child in node.get("CONTENTS", {}).values():
        found.update(methods(child))
    return found


def test_the_whole_tree_follows_the_proposal(served):
    tree = get_json(served.base + "/")
    assert check_node(tree, "/") == []
    assert set(tree["CONTENTS"]) == {"musicbridge"}
    for address, node in methods(tree).items():
        assert node["DESCRIPTION"] == ROUTE[address].doc
    assert get_json(served.base + "/musicbridge/param") == tree["CONTENTS"]["musicbridge"]["CONTENTS"]["param"]


def test_a_leaf_and_its_attributes(served):
    base = served.base + "/musicbridge/param/temperature"
    leaf = get_json(base)
    assert check_node(leaf, "/musicbridge/param/temperature") == []
    assert leaf["TYPE"] == "f" and leaf["ACCESS"] == 3 and leaf["RANGE"] == [{"MIN": 0.0, "MAX": 2.0}]
    assert set(leaf) == KEYS - {"CONTENTS"}
    for attribute in KEYS - {"CONTENTS"}:
        assert get_json(f"{base}?{attribute}") == {attribute: leaf[attribute]}
    assert get_json(served.base + "/musicbridge/mode?RANGE")["RANGE"][0]["VALS"][0] == "continue"
    assert get_json(served.base + "/musicbridge/param?TYPE") == {}  # a container takes no message
    assert get(served.base + "/musicbridge/capture?VALUE")[0] == 204  # write only: no value to read
    assert get(served.base + "/musicbridge/nothing")[0] == 404
    assert get(base + "?SHAPE")[0] == 400  # an attribute this server does not know
    assert get(base + "?UNIT")[0] == 400  # one it does not support (EXTENSIONS says so)


def test_host_info(served):
    info = get_json(served.base + "/musicbridge/param/bars?HOST_INFO")  # the path does not matter
    assert info["NAME"] == "musicbridge"
    assert info["OSC_PORT"] == served.daemon.osc_port and info["OSC_TRANSPORT"] == "UDP"
    assert info["OSC_IP"] == "127.0.0.1"
    extensions = info["EXTENSIONS"]
    assert all(extensions[name] is True for name in ("ACCESS", "VALUE", "RANGE", "DESCRIPTION"))
    assert extensions["LISTEN"] is False and all(isinstance(v, bool) for v in extensions.values())
    assert get_json(served.base + "/?HOST_INFO") == info


def test_value_follows_a_change_over_osc(served):
    def value(address: str):
        return get_json(f"{served.base}{address}?VALUE")["VALUE"]

    assert value("/musicbridge/model/load") == ["melody_a"]
    for temperature, mode, bars in ((0.25, "sample", 3), (1.5, "off", 1)):
        served.osc.send("/musicbridge/param/temperature", temperature)
        served.osc.send("/musicbridge/mode", mode)
        served.osc.send("/musicbridge/param/bars", bars)
        wait_until(lambda t=temperature: value("/musicbridge/param/temperature") == [t], 5, what="temperature")
        assert value("/musicbridge/mode") == [mode] and value("/musicbridge/param/bars") == [bars]
    served.osc.send("/musicbridge/param/scale", "D:dorian")
    wait_until(lambda: value("/musicbridge/param/scale") != ["off"], 5, what="the scale")
    assert served.osc.state()["scale"] == value("/musicbridge/param/scale")[0]  # what status says


def test_oscquery_the_dispatcher_and_the_docs_agree(served):
    """The three descriptions of the namespace — OSCQuery's tree, osc.ROUTES, docs/osc.md — are one."""
    served_methods = methods(get_json(served.base + "/"))
    documented = {row[0]: (row[1], row[2]) for row in _table("## Messages the daemon receives")}
    assert set(served_methods) == set(ROUTE) == set(documented)
    for address, (signature, range_text) in documented.items():
        node = served_methods[address]
        names = [] if signature == "–" else [part.strip("[]").split(":")[0] for part in signature.split()]
        types = "" if signature == "–" else "".join(part.strip("[]").split(":")[1] for part in signature.split())
        assert node.get("TYPE", "") == types, address
        texts = []
        for name, limits in zip(names, node.get("RANGE", []), strict=True):
            if limits and "VALS" in limits:
                texts.append(f"{name} {', '.join(limits['VALS'])}")
            elif limits:
                def fmt(v):
                    return str(int(v)) if float(v).is_integer() else f"{v:g}"

                texts.append(f"{name} {fmt(limits['MIN'])}..{fmt(limits['MAX'])}")
        assert (", ".join(texts) or "–") == range_text, address


# ---- zeroconf ---------------------------------------------------------------------------------------------
class Browser:
    """A zeroconf ServiceBrowser for _oscjson._tcp on the loopback interface; `seen` maps port -> info."""

    def __init__(self):
        from zeroconf import IPVersion, ServiceBrowser, Zeroconf

        self.zeroconf = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        self.lock = threading.Lock()
        self.seen: dict[int, tuple[str, list[str]]] = {}
        self.removed: set[str] = set()
        self.browser = ServiceBrowser(self.zeroconf, SERVICE_TYPE, self)

    def add_service(self, zeroconf, kind, name) -> None:
        info = zeroconf.get_service_info(kind, name, timeout=3000)
        if info is not None:
            with self.lock:
                self.seen[info.port] = (name, info.parsed_addresses())
                self.removed.discard(name)

    def update_service(self, zeroconf, kind, name) -> None:
        self.add_service(zeroconf, kind, name)

    def remove_service(self, zeroconf, kind, name) -> None:
        with self.lock:
            self.removed.add(name)

    def find(self, port: int) -> tuple[str, list[str]] | None:
        with self.lock:
            return self.seen.get(port)

    def close(self) -> None:
        self.browser.cancel()
        self.zeroconf.close()


@pytest.fixture
def browser():
    b = Browser()
    yield b
    b.close()


def test_a_zeroconf_browse_on_loopback_finds_the_daemon(served, browser):
    name, addresses = wait_until(lambda: browser.find(served.http_port), BROWSE_S, interval=0.1,
                                 what=f"an {SERVICE_TYPE} service on port {served.http_port}")
    assert name.endswith("." + SERVICE_TYPE) and name.startswith("musicbridge")
    assert addresses == ["127.0.0.1"]
    info = get_json(f"http://{addresses[0]}:{served.http_port}/?HOST_INFO")  # what a controller does next
    assert info["OSC_PORT"] == served.daemon.osc_port


def test_closing_withdraws_the_advertisement(browser):
    server = OscQueryServer(ROUTES, dict, "127.0.0.1", free_tcp_port(), 9000, "127.0.0.1")
    server.start()
    try:
        name, _ = wait_until(lambda: browser.find(server.port), BROWSE_S, interval=0.1, what="the advertisement")
    finally:
        server.close()
        server.close()  # idempotent
    wait_until(lambda: name in browser.removed, BROWSE_S, interval=0.1, what="the goodbye")


# ---- ports and hosts --------------------------------------------------------------------------------------
def test_the_default_port_falls_back_to_a_free_one_and_an_asked_port_does_not():
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", DEFAULT_PORT))
            holder.listen()
        except OSError:
            pass  # another program has it already: taken either way
        server = OscQueryServer(ROUTES, dict, "127.0.0.1", None, 9000, "127.0.0.1")
        try:
            assert server.port not in (DEFAULT_PORT, 0)
            assert server.http.socket.getsockname()[0] == "127.0.0.1"  # loopback unless told otherwise
        finally:
            server.close()
        with pytest.raises(OSError, match=f"cannot serve OSCQuery on 127.0.0.1:{DEFAULT_PORT}.*--oscquery-port"):
            OscQueryServer(ROUTES, dict, "127.0.0.1", DEFAULT_PORT, 9000, "127.0.0.1")
    finally:
        holder.close()


def test_a_server_that_never_started_closes_at_once():
    server = OscQueryServer(ROUTES, dict, "127.0.0.1", 0, 9000, "127.0.0.1")
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 1.0
