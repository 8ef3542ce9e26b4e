"""Test-side parts for the bridge tests: a JACK MIDI peer playing clock and notes, an OSC peer, the daemon.

All real: rtmidi clients on the test's JACK server, UDP OSC on 127.0.0.1, `python -m musicbridge serve` in a
subprocess.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import rtmidi
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

TICKS_PER_BEAT = 24
LOG_DIR = Path(tempfile.mkdtemp(prefix="musicbridge-test-logs-"))  # daemon logs, removed when the run ends
atexit.register(shutil.rmtree, LOG_DIR, ignore_errors=True)
sys.setswitchinterval(0.0002)  # the clock player spins: let the recording callback in quickly


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def precise_sleep_until(t: float) -> None:
    remaining = t - time.perf_counter()
    if remaining > 0.002:
        time.sleep(remaining - 0.0015)
    while time.perf_counter() < t:
        pass


class MidiPeer:
    """A JACK client standing in for the DAW: an output into "musicbridge in", an input from "musicbridge out"."""

    def __init__(self, name: str = "peer"):
        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=name)
        self.out.open_virtual_port("to-bridge")
        self.inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"{name}-rec")
        self.inp.ignore_types(sysex=True, timing=False, active_sense=True)
        self.inp.open_virtual_port("from-bridge")
        self.received: list[tuple[float, list[int]]] = []
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.running = True
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()

    def _poll(self) -> None:
        """Record arrivals at JACK's own timestamps (rtmidi's deltas, anchored by the earliest poll), polled
        rather than by callback: a Python callback in JACK's process thread makes cycles late."""
        elapsed, offset = 0.0, float("inf")
        while self.running:
            event = self.inp.get_message()
            if event is None:
                time.sleep(0.0005)
                continue
            elapsed += event[1]
            offset = min(offset, time.perf_counter() - elapsed)
            with self.lock:
                self.received.append((offset + elapsed, event[0]))

    def connect(self, server, bridge_in: str = "musicbridge in", bridge_out: str = "musicbridge out") -> None:
        """Wire the peer to the daemon's ports (with jack_connect), then let the first connection settle."""
        src_out = server.wait_for_port(":to-bridge")
        dst_in = server.wait_for_port(bridge_in)
        src_bridge = server.wait_for_port(bridge_out)
        dst_rec = server.wait_for_port(":from-bridge")
        for a, b in ((src_out, dst_in), (src_bridge, dst_rec)):
            subprocess.run(["jack_connect", a, b], env=server.env, check=True, timeout=10)
        time.sleep(0.2)  # the first message after a new connection can be lost

    def send(self, message: Iterable[int]) -> float:
        with self.send_lock:
            t = time.perf_counter()
            if self.running:  # a ClockPlayer thread may outlive a failed test: never send on a closed port
                self.out.send_message(list(message))
        return t

    def messages(self, since: float = 0.0) -> list[tuple[float, list[int]]]:
        with self.lock:
            return [(t, m) for t, m in self.received if t >= since]

    def notes(self, since: float = 0.0) -> list[tuple[float, str, int, int, int]]:
        """(time, "on"|"off", channel, pitch, velocity) of the note messages received."""
        result = []
        for t, m in self.messages(since):
            if len(m) == 3 and m[0] & 0xF0 in (0x80, 0x90):
                kind = "on" if m[0] & 0xF0 == 0x90 and m[2] > 0 else "off"
                result.append((t, kind, m[0] & 0x0F, m[1], m[2]))
        return result

    def close(self) -> None:
        with self.send_lock:
            self.running = False
        self.poller.join(timeout=1)
        for port in (self.inp, self.out):
            port.close_port()
            port.delete()


class ClockPlayer:
    """Plays MIDI clock (and optional notes) from the peer on its own thread, ticks at exact times.

    `tempo_at(beat)` gives the tempo; `notes` are (beat, message) sent together with the tick at that beat
    (beats on the tick grid). `jitter(tick) -> seconds` shifts single ticks; `drop(tick)` skips them.
    """

    def __init__(self, peer: MidiPeer, bpm: float = 120.0, start_beat: float = 0.0):
        self.peer = peer
        self.bpm = bpm
        self.changes: list[tuple[float, float]] = []  # (beat, bpm)
        self.notes: dict[int, list[list[int]]] = {}
        self.jitter = lambda tick: 0.0
        self.drop = lambda tick: False
        self.tick_times: dict[int, float] = {}  # tick number → intended time
        self.start_beat = start_beat
        self.running = False
        self.thread: threading.Thread | None = None
        self.t0 = 0.0

    def add_notes(self, notes: Iterable[tuple[float, float, int, int]], channel: int = 0) -> None:
        """(start beat, end beat, pitch, velocity) → note-on/off messages on the tick grid."""
        for start, end, pitch, velocity in notes:
            self.notes.setdefault(round(start * TICKS_PER_BEAT), []).append([0x90 | channel, pitch, velocity])
            self.notes.setdefault(round(end * TICKS_PER_BEAT), []).insert(0, [0x80 | channel, pitch, 0])

    def tempo_at(self, beat: float) -> float:
        bpm = self.bpm
        for change_beat, change_bpm in self.changes:
            if beat >= change_beat:
                bpm = change_bpm
        return bpm

    def time_of(self, beat: float) -> float:
        """Intended wall-clock time of a beat (the ticks' own timeline)."""
        tick = beat * TICKS_PER_BEAT
        base = int(tick)
        first = round(self.start_beat * TICKS_PER_BEAT)
        t = self.tick_times.get(base)
        if t is None:
            t = self.t0
            for k in range(first, base):
                t += 60.0 / (self.tempo_at(k / TICKS_PER_BEAT) * TICKS_PER_BEAT)
        return t + (tick - base) * 60.0 / (self.tempo_at(base / TICKS_PER_BEAT) * TICKS_PER_BEAT)

    def start(self, until_beat: float, send_start: bool = True, delay: float = 0.1) -> float:
        """Send Start (or Continue) and play ticks until `until_beat`; returns the time of the first tick."""
        self.running = True
        self.t0 = time.perf_counter() + delay
        self.thread = threading.Thread(target=self._run, args=(until_beat, send_start), daemon=True)
        self.thread.start()
        return self.t0

    def _run(self, until_beat: float, send_start: bool) -> None:
        self.peer.send([0xFA] if send_start else [0xFB])
        t = self.t0
        tick = round(self.start_beat * TICKS_PER_BEAT)
        while self.running and tick < until_beat * TICKS_PER_BEAT:
            self.tick_times[tick] = t
            precise_sleep_until(t + self.jitter(tick))
            if not self.drop(tick):
                self.peer.send([0xF8])
            for message in self.notes.get(tick, []):
                self.peer.send(message)
            t += 60.0 / (self.tempo_at(tick / TICKS_PER_BEAT) * TICKS_PER_BEAT)
            tick += 1
        self.running = False

    def join(self, timeout: float = 60.0) -> None:
        if self.thread:
            self.thread.join(timeout)

    def stop(self) -> None:
        self.running = False
        self.join()


class OscPeer:
    """Receives the daemon's replies on `reply_port` and sends it messages on `port`."""

    def __init__(self, port: int, reply_port: int):
        self.client = SimpleUDPClient("127.0.0.1", port)
        self.received: list[tuple[float, str, tuple]] = []
        self.lock = threading.Lock()
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(self._record)
        self.server = ThreadingOSCUDPServer(("127.0.0.1", reply_port), dispatcher)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def _record(self, address, *args) -> None:
        with self.lock:
            self.received.append((time.perf_counter(), address, args))

    def send(self, address: str, *args) -> None:
        self.client.send_message(address, list(args))

    def send_raw(self, data: bytes) -> None:
        self.client._sock.sendto(data, (self.client._address, self.client._port))

    def messages(self, address: str | None = None, since: float = 0.0) -> list[tuple[float, str, tuple]]:
        with self.lock:
            return [m for m in self.received if (address is None or m[1] == address) and m[0] >= since]

    def wait_for(self, address: str, since: float = 0.0, timeout: float = 10.0, count: int = 1):
        return wait_until(lambda: (lambda ms: ms if len(ms) >= count else None)(self.messages(address, since)),
                          timeout, what=address)

    def status(self, timeout: float = 5.0) -> tuple:
        since = time.perf_counter()
        self.send("/musicbridge/status")
        return self.wait_for("/musicbridge/status", since, timeout)[-1][2]

    def phrases(self, since: float = 0.0) -> dict[int, dict]:
        """{id: {"begin": args, "notes": [args...], "end": args}} of the gen/* sequences received."""
        result: dict[int, dict] = {}
        for _, address, args in self.messages(since=since):
            if address.startswith("/musicbridge/gen/"):
                entry = result.setdefault(args[0], {"begin": None, "notes": [], "end": None})
                kind = address.rsplit("/", 1)[1]
                if kind == "note":
                    entry["notes"].append(args)
                else:
                    entry[kind] = args
        return result

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Daemon:
    """`python -m musicbridge serve …` in a subprocess; stopped with SIGTERM."""

    def __init__(self, args: list[str], env: dict | None = None, osc_port: int | None = None,
                 reply_port: int | None = None, log_path: Path | None = None):
        self.osc_port = osc_port or free_udp_port()
        self.reply_port = reply_port or free_udp_port()
        self.args = [sys.executable, "-m", "musicbridge", "serve", "--no-status", "--osc-port", str(self.osc_port),
                     "--osc-reply-port", str(self.reply_port), *args]
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="serve-", suffix=".log", dir=LOG_DIR)[1])
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self) -> Daemon:
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True)
        return self

    def wait_ready(self, osc: OscPeer, timeout: float = 30.0) -> tuple:
        """Ask for status until the daemon answers (it is then fully up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.process.returncode}:\n{self.output()}")
            try:
                return osc.status(timeout=0.5)
            except TimeoutError:
                continue
        raise TimeoutError(f"daemon not ready after {timeout} s:\n{self.output()}")

    def signal(self, sig=signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def output(self) -> str:
        return self.log_path.read_text()
