"""OSC in and out (python-osc over UDP). ROUTES is the dispatcher table, docs/osc.md its documentation.

Every argument is checked against its Arg before a handler runs; anything malformed, unknown or out of range
is answered on /musicbridge/error and changes nothing. Address patterns (wildcards) are refused rather than
fanned out to several handlers, and bundle time tags are not waited for (the daemon plays in musical time).
"""

from __future__ import annotations

import logging
import math
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from pythonosc import osc_packet
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_server import BlockingOSCUDPServer

from musicbridge.bridge.config import ENDINGS, MODES

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
                raise OscInputError("bad_arguments", f"{self.name}: expected a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise OscInputError("out_of_range", f"{self.name} {value!r} is not one of {', '.join(self.choices)}")
            return value
        if isinstance(value, str):
            raise OscInputError("bad_arguments", f"{self.name}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise OscInputError("out_of_range", f"{self.name} must be finite")
        if self.type == "i":
            if value != int(value):
                raise OscInputError("bad_arguments", f"{self.name}: expected an integer, got {value!r}")
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
    doc: str

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
ROUTES: tuple[Route, ...] = (
    Route(f"{P}/note", (Arg("pitch", "i", 0, 127), Arg("velocity", "i", 0, 127), Arg("channel", "i", 1, 16, optional=True)),
          "osc_note", "note in (velocity 0 = off)"),
    Route(f"{P}/transport/tempo", (Arg("bpm", "f", 20, 300),), "osc_tempo", "tempo"),
    Route(f"{P}/transport/play", (), "osc_play", "play"),
    Route(f"{P}/transport/stop", (), "osc_stop", "stop"),
    Route(f"{P}/transport/position", (Arg("beats", "f", 0, 1_000_000),), "osc_position", "song position"),
    Route(f"{P}/mode", (Arg("name", "s", choices=MODES),), "osc_mode", "mode"),
    Route(f"{P}/param/temperature", (Arg("x", "f", 0, 2),), "osc_temperature", "temperature"),
    Route(f"{P}/param/bars", (Arg("n", "i", 1, 16),), "osc_bars", "answer length"),
    Route(f"{P}/param/novelty", (Arg("x", "f", 0, 4),), "osc_novelty", "sigma scale"),
    Route(f"{P}/param/variations", (Arg("n", "i", 1, 16),), "osc_variations", "candidates"),
    Route(f"{P}/param/silence", (Arg("beats", "f", 0, 16),), "osc_silence", "call-response silence"),
    Route(f"{P}/param/steps", (Arg("n", "i", 2, 64),), "osc_steps", "interpolation steps"),
    Route(f"{P}/param/ending", (Arg("name", "s", choices=ENDINGS),), "osc_ending", "interpolation ending"),
    Route(f"{P}/capture", (Arg("slot", "s", choices=("a", "b")),), "osc_capture", "capture a slot"),
    Route(f"{P}/capture/file", (Arg("slot", "s", choices=("a", "b")), Arg("path", "s")), "osc_capture_file",
          "slot from a MIDI file"),
    Route(f"{P}/generate", (), "osc_generate", "answer now"),
    Route(f"{P}/variation", (Arg("index", "i", 0, 15),), "osc_variation", "send a candidate"),
    Route(f"{P}/panic", (), "osc_panic", "all notes off"),
    Route(f"{P}/model/load", (Arg("name_or_path", "s"),), "osc_model_load", "switch model"),
    Route(f"{P}/status", (), "osc_status", "status reply"),
)


@dataclass(frozen=True)
class Reply:
    address: str
    signature: str


REPLIES: tuple[Reply, ...] = (
    Reply(f"{P}/gen/begin", "id:i n_bars:i start_beat:f"),
    Reply(f"{P}/gen/note", "id:i pitch:i velocity:i start_beat:f duration_beats:f"),
    Reply(f"{P}/gen/end", "id:i n_notes:i"),
    Reply(f"{P}/status", "mode:s bpm:f playing:i model:s last_latency_ms:f"),
    Reply(f"{P}/error", "code:s message:s"),
)
ERROR_CODES = ("unknown_address", "bad_arguments", "out_of_range", "refused", "load_failed", "not_ready", "internal")
_REPLY_TYPES = {r.address: [part.split(":")[1] for part in r.signature.split()] for r in REPLIES}


class Replier:
    """Sends replies to the sender's host on the reply port; gen/* go to localhost and every host heard from."""

    def __init__(self, reply_port: int):
        self.port = reply_port
        self.hosts: set[str] = {"127.0.0.1"}
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.lock = threading.Lock()
        self.sent = 0
        self.errors = 0

    def remember(self, host: str) -> None:
        with self.lock:
            self.hosts.add(host)

    def send(self, address: str, *args, host: str | None = None) -> None:
        builder = OscMessageBuilder(address)
        for kind, value in zip(_REPLY_TYPES[address], args, strict=True):
            builder.add_arg({"i": int, "f": float, "s": str}[kind](value), kind)
        data = builder.build().dgram
        with self.lock:
            hosts = [host] if host else sorted(self.hosts)
        for target in hosts:
            try:
                self.socket.sendto(data, (target, self.port))
                self.sent += 1
            except OSError as error:  # nobody listening is fine; a broken network is logged
                log.debug("OSC reply to %s:%d failed: %s", target, self.port, error)

    def error(self, code: str, message: str, host: str | None) -> None:
        log.warning("OSC error %s: %s", code, message)
        self.errors += 1
        self.send(f"{P}/error", code, message, host=host or "127.0.0.1")

    def close(self) -> None:
        self.socket.close()


class BridgeDispatcher(Dispatcher):
    """python-osc's dispatcher, answering malformed packets instead of dropping them silently."""

    def __init__(self, replier: Replier, on_unknown: Callable[[tuple[str, int], str], None]):
        super().__init__()
        self.replier = replier
        self.on_unknown = on_unknown
        self.handled = 0

    def call_handlers_for_packet(self, data: bytes, client_address: tuple[str, int]) -> list:
        self.replier.remember(client_address[0])
        try:
            messages = [timed.message for timed in osc_packet.OscPacket(data).messages]
        except osc_packet.ParseError as error:
            self.replier.error("bad_arguments", f"malformed OSC packet ({error})", client_address[0])
            return []
        for message in messages:
            self.handled += 1
            if any(c in message.address for c in "*?[]{}"):
                self.replier.error("unknown_address", f"address patterns are not accepted: {message.address}",
                                   client_address[0])
                continue
            handlers = list(self.handlers_for_address(message.address))
            if not handlers:
                self.on_unknown(client_address, message.address)
            for handler in handlers:
                handler.invoke(client_address, message)
        return []


class _Server(BlockingOSCUDPServer):
    def verify_request(self, request, client_address) -> bool:
        return True  # python-osc drops non-OSC datagrams silently; we answer them with an error


class OscServer:
    """Binds host:port and calls controller.<route.handler>(*args, host=...) for each valid message."""

    def __init__(self, controller, host: str, port: int, reply_port: int):
        self.controller = controller
        self.replier = Replier(reply_port)
        self.dispatcher = BridgeDispatcher(self.replier, self._unknown)
        for route in ROUTES:
            self.dispatcher.map(route.address, self._handler(route), needs_reply_address=True)
        try:
            self.server = _Server((host, port), self.dispatcher)
        except OSError as error:
            self.replier.close()
            raise OSError(f"cannot listen for OSC on {host}:{port} ({error.strerror}); "
                          "is another musicbridge running? Use --osc-port") from error
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def _unknown(self, client_address, address: str) -> None:
        self.replier.error("unknown_address", f"unknown address {address}", client_address[0])

    def _handler(self, route: Route):
        def handle(client_address, address, *args):
            host = client_address[0]
            try:
                values = route.parse(args)
                getattr(self.controller, route.handler)(*values, host=host)
            except OscInputError as error:
                self.replier.error(error.code, f"{address}: {error}", host)
            except Exception as error:  # the daemon never dies of input
                log.exception("error handling %s", address)
                self.replier.error("internal", f"{address}: {type(error).__name__}: {error}", host)

        return handle

    def start(self) -> None:
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="osc", daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread:
            self.server.shutdown()
            self.thread.join(timeout=2)
        self.server.server_close()
        self.replier.close()
