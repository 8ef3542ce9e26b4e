"""OSC in and out over UDP. ROUTES is the dispatcher table, docs/osc.md its documentation, and bridge/oscquery.py
serves it over HTTP (OSCQuery): the three are one table.

Datagrams (up to 64 KB) are parsed by the bounded parser in bridge/osc_packet.py, then every argument is
checked against its Arg before a handler runs; anything malformed, unknown or out of range is answered on
/musicbridge/error (one reply per datagram: bridge/replies.py) and changes nothing. Address patterns
(wildcards) are refused rather than fanned out to several handlers, and bundle time tags are not waited for
(the daemon plays in musical time).
"""

from __future__ import annotations

import logging
import math
import select
import socket
import threading
from dataclasses import dataclass

from musicbridge.attributes import ATTRIBUTES
from musicbridge.bridge.config import (
    ATTRIBUTE_PARAMS,
    ATTRIBUTE_RANGE,
    BPM_RANGE,
    ENDINGS,
    FALLBACKS,
    MODES,
    PARAM_RANGES,
    SIMILAR_K_RANGE,
    Params,
)
from musicbridge.bridge.learn import learn_targets
from musicbridge.bridge.osc_packet import MAX_DATAGRAM, Message, PacketError, parse_packet, show
from musicbridge.bridge.replies import Replier, Target

log = logging.getLogger(__name__)


class OscInputError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Arg:
    name: str
    type: str  # "i", "f" or "s"
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False

    @property
    def signature(self) -> str:
        text = f"{self.name}:{self.type}"
        return f"[{text}]" if self.optional else text

    @property
    def range_text(self) -> str | None:
        if self.choices:
            return f"{self.name} {', '.join(self.choices)}"
        if self.low is not None:
            def fmt(v: float) -> str:
                return str(int(v)) if float(v).is_integer() else f"{v:g}"

            return f"{self.name} {fmt(self.low)}..{fmt(self.high)}"
        return None

    def parse(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise OscInputError("bad_arguments", f"{self.name}: expected {self.type}, got {type(value).__name__}")
        if self.type == "s":
            if not isinstance(value, str):
                raise OscInputError("bad_arguments", f"{self.name}: expected a string, got {show(value)}")
            if self.choices and value not in self.choices:
                raise OscInputError("out_of_range", f"{self.name} {show(value)} is not one of {', '.join(self.choices)}")
            return value
        if isinstance(value, str):
            raise OscInputError("bad_arguments", f"{self.name}: expected a number, got {show(value)}")
        if not math.isfinite(value):
            raise OscInputError("out_of_range", f"{self.name} must be finite")
        if self.type == "i":
            if value != int(value):
                raise OscInputError("bad_arguments", f"{self.name}: expected an integer, got {show(value)}")
            value = int(value)
        else:
            value = float(value)
        if self.low is not None and not self.low <= value <= self.high:
            raise OscInputError("out_of_range", f"{self.name} {value:g} is outside {self.range_text}")
        return value


@dataclass(frozen=True)
class Route:
    address: str
    args: tuple[Arg, ...]
    handler: str  # method of the controller called with the parsed arguments
    doc: str  # one line: OSCQuery's DESCRIPTION (docs/osc.md says more)
    param: str | None = None  # the Params field it sets: its value is readable (OSCQuery) and it can be learned

    @property
    def signature(self) -> str:
        return " ".join(a.signature for a in self.args) or "–"

    @property
    def range_text(self) -> str:
        return ", ".join(r for r in (a.range_text for a in self.args) if r) or "–"

    def parse(self, args: tuple) -> list:
        required = sum(1 for a in self.args if not a.optional)
        if not required <= len(args) <= len(self.args):
            wanted = f"{required}" if required == len(self.args) else f"{required} to {len(self.args)}"
            raise OscInputError("bad_arguments", f"{self.address} takes {wanted} argument(s) "
                                                 f"({self.signature}), got {len(args)}")
        return [arg.parse(value) for arg, value in zip(self.args, args, strict=False)]


P = "/musicbridge"


def param_route(name: str, arg: str, doc: str) -> Route:
    """/musicbridge/param/<name>: one argument in the param's range (config.PARAM_RANGES), handled by osc_<name>;
    readable over OSCQuery and learnable (bridge/learn.py) by the param's name."""
    arg_type = "i" if Params.is_integer(name) else "f"
    return Route(f"{P}/param/{name}", (Arg(arg, arg_type, *PARAM_RANGES[name]),), f"osc_{name}", doc, param=name)


def attribute_route(param: str) -> Route:
    """/musicbridge/param/attr/<attribute>: an attribute knob's α (config.ATTRIBUTE_RANGE), handled by osc_<param>;
    readable over OSCQuery and learnable under the param's name (attr_<attribute>)."""
    attribute = ATTRIBUTE_PARAMS[param]
    return Route(f"{P}/param/attr/{attribute}", (Arg("alpha", "f", *ATTRIBUTE_RANGE),), f"osc_{param}",
                 f"attribute knob: {ATTRIBUTES[attribute][1]}, along the model's vector (0 = off)", param=param)


def param_value(params: Params, name: str):
    """A param as OSC carries it: the scale lock as its spec ("off" when none), the others as they are."""
    value = getattr(params, name)
    if name == "scale":
        return value.spec if value is not None else "off"
    return value


_PLAY_ROUTES: tuple[Route, ...] = (
    Route(f"{P}/note", (Arg("pitch", "i", 0, 127), Arg("velocity", "i", 0, 127), Arg("channel", "i", 1, 16, optional=True)),
          "osc_note", "a note in, like MIDI input (velocity 0 = off)"),
    Route(f"{P}/transport/tempo", (Arg("bpm", "f", *BPM_RANGE),), "osc_tempo", "tempo of the internal/OSC clock"),
    Route(f"{P}/transport/play", (), "osc_play", "start the internal/OSC clock"),
    Route(f"{P}/transport/stop", (), "osc_stop", "stop the clock: all notes off"),
    Route(f"{P}/transport/position", (Arg("beats", "f", 0, 1_000_000),), "osc_position",
          "song position in quarter notes"),
    Route(f"{P}/mode", (Arg("name", "s", choices=MODES),), "osc_mode", "what the bridge plays", param="mode"),
    param_route("temperature", "x", "sampling temperature (0 = greedy)"),
    param_route("bars", "n", "bars per answer"),
    param_route("novelty", "x", "scale of sigma when z is drawn around mu"),
    param_route("variations", "n", "candidates per answer"),
    param_route("silence", "beats", "call-response: beats of silence before answering"),
    param_route("steps", "n", "interpolate: phrases from A to B"),
    Route(f"{P}/param/ending", (Arg("name", "s", choices=ENDINGS),), "osc_ending", "interpolate: after B",
          param="ending"),
    Route(f"{P}/param/scale", (Arg("spec", "s"),), "osc_scale", "scale lock (ROOT:MODE, pitch classes, or off)",
          param="scale"),
    Route(f"{P}/param/fallback", (Arg("name", "s", choices=FALLBACKS),), "osc_fallback",
          "what plays when an answer misses its deadline", param="fallback"),
    *(attribute_route(param) for param in ATTRIBUTE_PARAMS),
    Route(f"{P}/capture", (Arg("slot", "s", choices=("a", "b")),), "osc_capture", "the last bars played into a slot"),
    Route(f"{P}/capture/file", (Arg("slot", "s", choices=("a", "b")), Arg("path", "s")), "osc_capture_file",
          "a slot from a MIDI file"),
    Route(f"{P}/generate", (), "osc_generate", "answer now, from the next bar"),
    Route(f"{P}/variation", (Arg("index", "i", 0, PARAM_RANGES["variations"][1] - 1),), "osc_variation",
          "send a candidate of the last answer"),
    Route(f"{P}/similar", (Arg("k", "i", *SIMILAR_K_RANGE, optional=True),), "osc_similar",
          "the k nearest library phrases to the last bars played (serve --index)"),
    Route(f"{P}/panic", (), "osc_panic", "all notes off"),
    Route(f"{P}/model/load", (Arg("name_or_path", "s"),), "osc_model_load", "switch model (at the next bar line)"),
    Route(f"{P}/status", (), "osc_status", "ask for a status reply"),
    Route(f"{P}/subscribe", (Arg("port", "i", 1, 65535, optional=True), Arg("seconds", "f", 0, 3600, optional=True)),
          "osc_subscribe", "replies to this host"),
)
# What MIDI learn can bind a control to (bridge/learn.py): read from the routes above, so a param route is
# learnable as soon as it exists.
LEARN_TARGETS = learn_targets(_PLAY_ROUTES, P)
ROUTES: tuple[Route, ...] = (
    *_PLAY_ROUTES,
    Route(f"{P}/learn", (Arg("target", "s", choices=tuple(LEARN_TARGETS)),), "osc_learn",
          "bind the next CC or note on the input to a target"),
    Route(f"{P}/learn/list", (), "osc_learn_list", "ask for the MIDI mappings"),
    Route(f"{P}/learn/clear", (Arg("target", "s", choices=tuple(LEARN_TARGETS), optional=True),), "osc_learn_clear",
          "forget the mappings of a target (all without one)"),
)


@dataclass(frozen=True)
class Reply:
    address: str
    signature: str


# What a status reply carries after the transport and the model: every param, so a controller that (re)connects
# can read them back. The numeric ones in PARAM_RANGES order, then the ending, the scale lock (its spec, "off"
# when none), the capture slots that hold a phrase ("", "a", "b" or "ab") and the deadline fallback (added last:
# patches that read the fields before it are unaffected).
STATUS_PARAMS = (*PARAM_RANGES, "ending", "scale", "slots", "fallback")
_STATUS_PARAM_TYPES = " ".join(f"{name}:{'i' if Params.is_integer(name) else 'f'}" for name in PARAM_RANGES)
REPLIES: tuple[Reply, ...] = (
    Reply(f"{P}/gen/begin", "id:i n_bars:i start_beat:f"),
    Reply(f"{P}/gen/note", "id:i pitch:i velocity:i start_beat:f duration_beats:f"),
    Reply(f"{P}/gen/end", "id:i n_notes:i"),
    Reply(f"{P}/status", f"mode:s bpm:f playing:i model:s last_latency_ms:f midi:s {_STATUS_PARAM_TYPES} ending:s "
                         "scale:s slots:s fallback:s"),
    Reply(f"{P}/error", "code:s message:s"),
    Reply(f"{P}/learn/mapping", "target:s control:s channel:i number:i"),
    Reply(f"{P}/learn/end", "count:i learning:s"),
    Reply(f"{P}/similar/match", "rank:i file:s bar:i distance:f voice:i"),
    Reply(f"{P}/similar/end", "count:i"),
)
ERROR_CODES = ("unknown_address", "bad_arguments", "out_of_range", "refused", "load_failed", "not_ready", "internal",
               "midi_lost", "clock_silent")
_REPLY_TYPES = {r.address: [part.split(":")[1] for part in r.signature.split()] for r in REPLIES}


POLL_S = 0.1  # how often the receive loop looks at the closing flag
RECEIVE_BUFFER_BYTES = 1 << 20  # room for a burst of large datagrams (the kernel may cap it at rmem_max)
CLOSE_WAIT_S = 0.5  # shutdown waits this long for a handler to finish, then leaves the (daemon) thread behind
PATTERN_CHARS = "*?[]{}"


class OscServer:
    """Binds host:port, reads whole datagrams and calls controller.<route.handler>(*args, host=client) for each
    valid message, where client is the sender's (address, port); replies go through self.replier."""

    def __init__(self, controller, host: str, port: int, reply_port: int, reply_host: str = "127.0.0.1"):
        self.controller = controller
        self.routes = {route.address: route for route in ROUTES}
        try:
            reply_ip = socket.gethostbyname(reply_host)
        except OSError as error:
            raise OSError(f"cannot resolve --osc-reply-host {reply_host!r} ({error}); give an IPv4 address") from None
        self.replier = Replier(_REPLY_TYPES, f"{P}/error", reply_ip, reply_port)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            self.socket.bind((host, port))
        except OSError as error:
            self.socket.close()
            self.replier.close()
            raise OSError(f"cannot listen for OSC on {host}:{port} ({error.strerror}); "
                          "is another musicbridge running? Use --osc-port") from error
        self.closing = threading.Event()
        self.thread: threading.Thread | None = None
        self.packets = 0
        self.handled = 0  # messages

    @property
    def port(self) -> int:
        return self.socket.getsockname()[1]

    def subscribe(self, client: Target, port: int | None, seconds: float | None) -> Target | None:
        """The subscription made (host, port), or None when it ended one (seconds 0)."""
        result = self.replier.subscribe(client, port, seconds)
        if result == "full":
            raise OscInputError("refused", "too many subscribers; try again when one has expired")
        return (client[0], port or self.replier.port) if result == "subscribed" else None

    def _serve(self) -> None:
        # Our own loop rather than socketserver's: it reads 64 KB (socketserver reads 8,192 bytes and cuts the
        # rest), and shutdown never waits on a handler (socketserver's shutdown() blocks until it returns).
        while not self.closing.is_set():
            try:
                ready, _, _ = select.select([self.socket], [], [], POLL_S)
                if not ready:
                    continue
                data, client = self.socket.recvfrom(MAX_DATAGRAM)
            except (OSError, ValueError):  # the socket closed under us at shutdown, or a transient error
                if self.closing.is_set():
                    return
                continue
            try:
                self.handle_packet(data, client)
            except Exception:  # the daemon never dies of input
                self.replier.log.log(logging.ERROR, "error handling an OSC packet", exc_info=True)

    def handle_packet(self, data: bytes, client: Target) -> None:
        """One datagram: parsed with bounds, its messages dispatched in order, then at most one reply."""
        self.packets += 1
        with self.replier.packet(client) as packet:
            try:
                messages = parse_packet(data)
            except PacketError as error:
                self.replier.error("bad_arguments", f"malformed OSC packet: {error}", client)
                return
            packet.messages = len(messages)
            for message in messages:
                self._dispatch(message, client)

    def _dispatch(self, message: Message, client: Target) -> None:
        self.handled += 1
        address = message.address
        route = self.routes.get(address)
        if route is None:
            if any(c in address for c in PATTERN_CHARS):
                self.replier.error("unknown_address", f"address patterns are not accepted: {show(address)}", client)
            else:
                self.replier.error("unknown_address", f"unknown address {show(address)}", client)
            return
        try:
            values = route.parse(message.args)
            getattr(self.controller, route.handler)(*values, host=client)
        except OscInputError as error:
            self.replier.error(error.code, f"{address}: {error}", client)
        except Exception as error:  # the daemon never dies of input
            self.replier.log.log(logging.ERROR, "error handling %s", address, exc_info=True)
            self.replier.error("internal", f"{address}: {type(error).__name__}: {error}", client)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._serve, name="osc", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        if self.thread:
            self.thread.join(timeout=CLOSE_WAIT_S)
        self.socket.close()
        self.replier.close()
