"""Where the daemon's OSC replies go, and how many: only to clients that asked, one reply per request packet.

Reply targets are the fixed address (--osc-reply-host : --osc-reply-port, 127.0.0.1:9001 by default, where the
Max and Pd patches listen) and the clients that sent /musicbridge/subscribe, each until its subscription expires
(at most MAX_SUBSCRIBERS). A sender that is neither gets no reply at all, so a forged source address cannot turn
the daemon into an amplifier. gen/* phrases go to every target.

One datagram (a message or a bundle of any size) gets at most one reply: the first error with a count of the
others when something failed, else the last answer a message asked for (status, a variation). Errors are
clipped to MAX_ERROR_CHARS, their replies limited per target and their log lines limited overall.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from pythonosc.osc_message_builder import OscMessageBuilder

from musicbridge.bridge.ratelimit import LimitedLog, TokenBucket

log = logging.getLogger(__name__)

DEFAULT_SUBSCRIBE_S = 60.0  # a patch renews every few seconds; a client that went away stops costing in a minute
MAX_SUBSCRIBE_S = 3600.0
MAX_SUBSCRIBERS = 16  # a stage has a handful of controllers; the cap bounds what replies can fan out to
MAX_ERROR_CHARS = 240  # an error reply stays one small datagram whatever the request held
ERROR_REPLIES_PER_S = 20.0  # per target: a patch showing errors needs no more
LOG_LINES_PER_S = 10.0  # OSC error lines in the log; the rest is counted in one "suppressed N" line

Target = tuple[str, int]  # (IPv4 address, UDP port)


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


@dataclass
class Packet:
    """The reply state of one request datagram, collected while its messages are handled."""

    client: Target
    messages: int = 1
    errors: int = 0
    first_error: tuple[str, str] | None = None
    answer: Callable[[], None] | None = None


class Replier:
    def __init__(self, types: dict[str, list[str]], error_address: str, reply_host: str, reply_port: int,
                 clock=time.monotonic):
        self.types = types  # reply address -> OSC type tags of its arguments
        self.error_address = error_address
        self.fixed: Target = (reply_host, reply_port)
        self.port = reply_port  # where a subscription without a port sends to
        self.clock = clock
        self.subscribers: dict[Target, float] = {}  # target -> expiry (clock seconds)
        self.error_buckets: dict[Target, TokenBucket] = {}
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.lock = threading.Lock()
        self.local = threading.local()  # .packet: the request packet this thread is handling, if any
        self.log = LimitedLog(log, LOG_LINES_PER_S, LOG_LINES_PER_S, clock)
        self.sent = 0
        self.errors = 0
        self.replies_suppressed = 0

    # ---- targets --------------------------------------------------------------------------------
    def subscribe(self, client: Target, port: int | None, seconds: float | None) -> str:
        """"subscribed", "unsubscribed" (seconds 0) or "full"; renewing an existing subscription always works."""
        target = (client[0], port or self.port)
        seconds = DEFAULT_SUBSCRIBE_S if seconds is None else min(seconds, MAX_SUBSCRIBE_S)
        now = self.clock()
        with self.lock:
            self._prune(now)
            if seconds <= 0:
                self.subscribers.pop(target, None)
                return "unsubscribed"
            if target not in self.subscribers and len(self.subscribers) >= MAX_SUBSCRIBERS:
                return "full"
            self.subscribers[target] = now + seconds
        return "subscribed"

    def _prune(self, now: float) -> None:
        for target in [t for t, expiry in self.subscribers.items() if expiry <= now]:
            del self.subscribers[target]
            self.error_buckets.pop(target, None)

    def target_for(self, client: Target) -> Target | None:
        """Where a reply to `client` goes: its own subscribed port, the fixed address when it is on that host,
        its host's latest subscription, or nowhere."""
        host = client[0]
        now = self.clock()
        with self.lock:
            self._prune(now)
            if client in self.subscribers:
                return client
            if host == self.fixed[0]:
                return self.fixed
            own = [(expiry, target) for target, expiry in self.subscribers.items() if target[0] == host]
        return max(own)[1] if own else None

    def targets(self) -> list[Target]:
        with self.lock:
            self._prune(self.clock())
            return [self.fixed, *(t for t in self.subscribers if t != self.fixed)]

    # ---- sending --------------------------------------------------------------------------------
    def _datagram(self, address: str, args) -> bytes:
        builder = OscMessageBuilder(address)
        for kind, value in zip(self.types[address], args, strict=True):
            builder.add_arg({"i": int, "f": float, "s": str}[kind](value), kind)
        return builder.build().dgram

    def _send(self, data: bytes, targets) -> None:
        for target in targets:
            try:
                self.socket.sendto(data, target)
                self.sent += 1
            except OSError as error:  # nobody listening is fine; a broken network is logged
                log.debug("OSC reply to %s:%d failed: %s", *target, error)

    def send(self, address: str, *args, host: Target | None = None, to: Target | None = None) -> None:
        """To every target (host None: gen/*, generation errors), the reply to the request from `host`, or to one
        explicit target `to` (a subscription's confirmation goes where the subscriber listens)."""
        if to is not None:
            self.answer(lambda: self._send(self._datagram(address, args), (to,)))
        elif host is None:
            self._send(self._datagram(address, args), self.targets())
        else:
            self.answer(lambda: self._reply(self._datagram(address, args), host))

    def _reply(self, data: bytes, client: Target) -> None:
        target = self.target_for(client)
        if target is not None:
            self._send(data, (target,))

    def answer(self, send: Callable[[], None]) -> None:
        """Send an answer now, or, while a request packet is handled on this thread, as its one reply (the last
        answer asked for wins; an error outranks it)."""
        packet = getattr(self.local, "packet", None)
        if packet is None:
            send()
        else:
            packet.answer = send

    def error(self, code: str, message: str, host: Target | None) -> None:
        """Report an error: counted into the packet being handled, else logged and replied now (host None: to
        every target)."""
        message = clip(message)
        self.errors += 1
        packet = getattr(self.local, "packet", None)
        if packet is not None:
            packet.errors += 1
            if packet.first_error is None:
                packet.first_error = (code, message)
            return
        self.log.warning("OSC error %s: %s", code, message)
        self._send_error(code, message, host)

    def _send_error(self, code: str, message: str, client: Target | None) -> None:
        targets = self.targets() if client is None else [t for t in (self.target_for(client),) if t]
        allowed = []
        with self.lock:
            for target in targets:
                bucket = self.error_buckets.setdefault(target, TokenBucket(ERROR_REPLIES_PER_S, ERROR_REPLIES_PER_S,
                                                                           self.clock))
                if bucket.take():
                    allowed.append(target)
                else:
                    self.replies_suppressed += 1
        if allowed:
            self._send(self._datagram(self.error_address, (code, message)), allowed)

    @contextmanager
    def packet(self, client: Target):
        """Collect the replies of one request datagram; the one reply goes out when it is done."""
        packet = Packet(client)
        self.local.packet = packet
        try:
            yield packet
        finally:
            self.local.packet = None
            self._finish(packet)

    def _finish(self, packet: Packet) -> None:
        if packet.first_error is not None:
            code, message = packet.first_error
            if packet.errors > 1:
                message = clip(f"{packet.errors} of {packet.messages} messages failed; the first: {message}")
            self.log.warning("OSC error %s from %s: %s", code, packet.client[0], message)
            self._send_error(code, message, packet.client)
        elif packet.answer is not None:
            packet.answer()

    def close(self) -> None:
        self.log.flush()
        self.socket.close()
