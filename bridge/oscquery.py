"""OSCQuery: the daemon's OSC namespace over HTTP, as JSON, advertised with zeroconf.

Controllers and hosts that speak OSCQuery (Chataigne, ossia score, Vezér, among others) read what an OSC service
understands from an HTTP server and build their own controls: the Vidvox OSCQuery proposal
(github.com/Vidvox/OSCQueryProposal). GET <path> answers the node at that OSC address with everything under it;
GET <path>?<ATTRIBUTE> that attribute alone; GET /?HOST_INFO the server's name, OSC port and transport.

The tree is made from osc.ROUTES, the dispatcher's own table, on every request: TYPE from the arguments' types,
RANGE from their ranges and choices, DESCRIPTION from the route's doc line, VALUE from `values()` — the daemon's
reading of the engine's immutable view, so it is the value now. docs/osc.md is kept equal to the same table by a
test, so the three never disagree.

Per node: FULL_PATH; CONTENTS (containers: /musicbridge, /musicbridge/param, …; a route that has routes under
it, /musicbridge/capture, is both); DESCRIPTION; ACCESS 3 (read and write: the params, mode, tempo, position,
model), 2 (write only: a message with arguments), 0 (no value: a message without arguments, and containers);
TYPE (the OSC type tags, optional arguments included; none for a message without arguments); RANGE (per argument,
{"MIN", "MAX"}, {"VALS": choices} or null); VALUE (readable nodes). Not supported: value streaming over a
websocket (LISTEN), PATH_CHANGED (the namespace never changes while the daemon runs), TAGS, UNIT, CLIPMODE (out
of range is refused, not clipped). Errors: 404 no such node, 400 an attribute this server does not serve, 204
VALUE of a node that has none.

Why not python-oscquery's server: it binds every interface ("") with no way to choose, keeps its own node tree
(values pushed into it on every change, a second copy of the state), has no RANGE, derives TYPE from Python
values, and pulls in `requests`. The server here is the standard library's ThreadingHTTPServer reading the one
route table; `zeroconf` (python-zeroconf, which python-oscquery uses too) does the advertisement.

Threads: the HTTP server and the advertiser run at ordinary priority (priority.become_normal): discovery is never
urgent, and the daemon's real-time threads must not wait on it.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from musicbridge.bridge import priority

log = logging.getLogger(__name__)

DEFAULT_PORT = 9002  # next to OSC's 9000 and the replies' 9001: easy to type where zeroconf does not reach
SERVICE_TYPE = "_oscjson._tcp.local."
NAME = "musicbridge"
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "RANGE", "VALUE", "ACCESS", "DESCRIPTION")  # what a query may ask
EXTENSIONS = {"ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TAGS": False,
              "EXTENDED_TYPE": False, "UNIT": False, "CRITICAL": False, "CLIPMODE": False, "LISTEN": False,
              "PATH_CHANGED": False, "HTML": False}
NO_VALUE, READ, WRITE = 0, 1, 2  # ACCESS bits
CONTAINERS = {  # DESCRIPTION of the containers
    "/": "musicbridge serve: generative music models played live",
    "/musicbridge": "musicbridge serve: generative music models played live",
    "/musicbridge/transport": "the clock (internal or OSC clock; ignored while following MIDI clock or Link)",
    "/musicbridge/param": "musical parameters",
    "/musicbridge/model": "the models",
}
POLL_S = 0.2  # how often the HTTP loop looks at the shutdown flag
CLOSE_WAIT_S = 3.0  # a registration in progress takes up to ~2 s, the goodbye ~0.3 s


# ---- the namespace --------------------------------------------------------------------------------------
def _range(arg) -> dict | None:
    if arg.choices:
        return {"VALS": list(arg.choices)}
    if arg.low is not None:
        cast = int if arg.type == "i" else float
        return {"MIN": cast(arg.low), "MAX": cast(arg.high)}
    return None


def _method(route, value: list | None) -> dict:
    node = {"FULL_PATH": route.address, "DESCRIPTION": route.doc}
    if not route.args:
        node["ACCESS"] = NO_VALUE
        return node
    node["ACCESS"] = WRITE | (READ if value is not None else 0)
    node["TYPE"] = "".join(arg.type for arg in route.args)
    node["RANGE"] = [_range(arg) for arg in route.args]
    if value is not None:
        node["VALUE"] = value
    return node


def namespace(routes, values: dict[str, list]) -> dict:
    """The whole tree from the root: a node for every route and every container above one. `values`: address ->
    the VALUE of the readable routes (one item per argument)."""
    root = {"FULL_PATH": "/", "DESCRIPTION": CONTAINERS["/"], "ACCESS": NO_VALUE}
    for route in routes:
        parts = route.address.strip("/").split("/")
        node = root
        for depth, part in enumerate(parts):
            path = "/" + "/".join(parts[: depth + 1])
            node = node.setdefault("CONTENTS", {}).setdefault(
                part, {"FULL_PATH": path, "DESCRIPTION": CONTAINERS.get(path, part), "ACCESS": NO_VALUE})
        node.update(_method(route, values.get(route.address)))
    return root


def find(tree: dict, path: str) -> dict | None:
    """The node at OSC address `path` ("/" the root), or None."""
    node = tree
    for part in [p for p in path.split("/") if p]:
        node = node.get("CONTENTS", {}).get(part)
        if node is None:
            return None
    return node


class OscQuery:
    """What the HTTP server answers: (HTTP status, JSON object or None) for a path and a query."""

    def __init__(self, routes, values: Callable[[], dict[str, list]], osc_port: int, osc_host: str | None):
        self.routes = routes
        self.values = values
        self.osc_port = osc_port
        self.osc_host = osc_host  # None: the OSC server listens where the HTTP server does (every interface)

    def host_info(self) -> dict:
        info = {"NAME": NAME, "EXTENSIONS": EXTENSIONS, "OSC_PORT": self.osc_port, "OSC_TRANSPORT": "UDP"}
        if self.osc_host is not None:
            info["OSC_IP"] = self.osc_host
        return info

    def answer(self, path: str, query: str) -> tuple[int, dict | None]:
        attribute = query.split("&")[0].split("=")[0].upper()
        if attribute == "HOST_INFO":  # the path does not matter
            return 200, self.host_info()
        if attribute and attribute not in ATTRIBUTES:
            return 400, None
        node = find(namespace(self.routes, self.values()), path)
        if node is None:
            return 404, None
        if not attribute:
            return 200, node
        if attribute == "VALUE" and not node["ACCESS"] & READ:
            return 204, None
        return 200, {attribute: node[attribute]} if attribute in node else {}


# ---- the HTTP server ------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server_version = "musicbridge-oscquery"
    protocol_version = "HTTP/1.0"  # one request per connection: no idle connection holds a thread

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        status, body = self.server.oscquery.answer(unquote(url.path) or "/", url.query)
        data = json.dumps(body).encode() if body is not None else b""
        if status == 200:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            data = {400: b"attribute not supported", 404: b"no such OSC node", 204: b""}[status]
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
        if status != 204:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 204:
            self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        log.debug("OSCQuery %s: " + format, self.client_address[0], *args)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True  # a client that never finishes its request does not hold shutdown (and its thread
    # inherits the server thread's ordinary priority)

    def __init__(self, address, oscquery: OscQuery):
        self.oscquery = oscquery
        super().__init__(address, _Handler)


class OscQueryServer:
    """The HTTP server on host:port (port None: DEFAULT_PORT, or any free port when another program has it) and
    its zeroconf advertisement. OSError, as a sentence, when the port asked for is taken."""

    def __init__(self, routes, values: Callable[[], dict[str, list]], host: str, port: int | None, osc_port: int,
                 osc_host: str):
        everywhere = host in ("0.0.0.0", "")
        self.oscquery = OscQuery(routes, values, osc_port, None if osc_host in ("0.0.0.0", "") else osc_host)
        self.host = host
        try:
            self.http = _HttpServer((host, DEFAULT_PORT if port is None else port), self.oscquery)
        except OSError as error:
            if port is None and error.errno == errno.EADDRINUSE:
                log.info("OSCQuery port %d is taken; serving on a free port (zeroconf tells controllers which)",
                         DEFAULT_PORT)
                self.http = _HttpServer((host, 0), self.oscquery)
            else:
                raise OSError(f"cannot serve OSCQuery on {host}:{DEFAULT_PORT if port is None else port} "
                              f"({error.strerror}); is another musicbridge running? Use --oscquery-port "
                              "(0 turns OSCQuery off)") from error
        if everywhere and self.oscquery.osc_host is not None and osc_host.startswith("127."):
            log.warning("OSCQuery answers on every interface but OSC listens on %s only: other computers will "
                        "see the namespace and cannot send to it (start with --osc-host 0.0.0.0 too)", osc_host)
        self.advertiser = Advertiser(self.port, None if everywhere else host)
        self.thread: threading.Thread | None = None
        self.closed = False

    @property
    def port(self) -> int:
        return self.http.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> None:
        self.thread = threading.Thread(target=self._serve, name="oscquery", daemon=True)
        self.thread.start()
        self.advertiser.start()

    def _serve(self) -> None:
        priority.become_normal()
        self.http.serve_forever(poll_interval=POLL_S)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.advertiser.close()
        if self.thread is not None:
            self.http.shutdown()
            self.thread.join(timeout=CLOSE_WAIT_S)
        self.http.server_close()


class Advertiser:
    """Registers `_oscjson._tcp` for the HTTP port with zeroconf (mDNS), on the interface of `host` (None: every
    interface). Its thread owns the zeroconf instance from start to end: registration probes the network for a
    second or two, then the thread waits for close() and withdraws the advertisement. A network without multicast
    only costs the advertisement (a warning: controllers can still be given the address)."""

    def __init__(self, port: int, host: str | None):
        self.port = port
        self.host = host
        self.stopping = threading.Event()
        self.name: str | None = None  # the instance name registered (zeroconf renames it when taken)
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="oscquery-zeroconf", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        priority.become_normal()  # zeroconf's own thread, started below, inherits it
        try:
            from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, Zeroconf

            if self.host is None:
                from zeroconf import get_all_addresses

                addresses = [a for a in get_all_addresses() if not a.startswith(("127.", "0."))] or ["127.0.0.1"]
                zeroconf = Zeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
            else:
                addresses = [self.host]
                zeroconf = Zeroconf(interfaces=[self.host], ip_version=IPVersion.V4Only)
        except Exception as error:  # no multicast, no such interface, zeroconf missing
            log.warning("OSCQuery is not advertised with zeroconf (%s); give controllers the address instead", error)
            return
        try:
            if self.stopping.is_set():
                return
            info = ServiceInfo(SERVICE_TYPE, f"{NAME}.{SERVICE_TYPE}", port=self.port,
                               addresses=[socket.inet_aton(a) for a in addresses], properties={"txtvers": "1"},
                               server=f"{NAME}-{self.port}.local.")
            try:
                zeroconf.register_service(info, allow_name_change=True)
            except Exception as error:
                log.warning("OSCQuery is not advertised with zeroconf (%s); give controllers the address instead",
                            error)
                return
            self.name = info.name
            log.info("OSCQuery advertised as %r (%s)", info.name.removesuffix("." + SERVICE_TYPE), SERVICE_TYPE)
            self.stopping.wait()
            zeroconf.unregister_all_services()  # a goodbye: browsers drop it at once
        except Exception:
            log.debug("zeroconf", exc_info=True)
        finally:
            zeroconf.close()

    def close(self) -> None:
        """Withdraw the advertisement and stop zeroconf (waits for a registration in progress). Idempotent."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=CLOSE_WAIT_S)
