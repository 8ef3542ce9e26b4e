"""Test-side parts for the bridge tests: the JACK rig's MIDI peer and clock player, an OSC peer, the daemon, and
where an answer's notes land on the clock, in beats.

All real: rtmidi clients on the test's JACK server (musicbridge.benchmarks.jack_rig, shared with the bridge
benchmark), UDP OSC on 127.0.0.1, `python -m musicbridge serve` in a subprocess.

The tests check behaviour in beats and events: the notes meant to play land on their beats in the clock's beats
(nearly all of them within 1/8 of a 16th), and events come in the right order. How many milliseconds off they are, and the
spread, are benchmarks/bench_bridge.py's figures (arrival error and jitter, Stop to all-notes-off), measured on an
idle machine; these tests must pass on a loaded 2-core one.
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
from pathlib import Path

import numpy as np
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

from musicbridge.benchmarks.jack_rig import ClockPlayer, MidiPeer, Recorder, Sink
from musicbridge.bridge.clock import TICKS_PER_BEAT
from musicbridge.bridge.osc import REPLIES
from musicbridge.codecs import STEP_BEATS

__all__ = ["ON_STEP_BEATS", "ON_TIME_BEATS", "ON_TIME_SHARE", "TICK_BEATS", "ClockPlayer", "Daemon", "MidiPeer",
           "OscPeer", "Recorder", "Sink", "assert_on_the_grid", "beat_errors", "free_udp_port", "wait_until"]

LOG_DIR = Path(tempfile.mkdtemp(prefix="musicbridge-test-logs-"))  # daemon logs, removed when the run ends
atexit.register(shutil.rmtree, LOG_DIR, ignore_errors=True)
sys.setswitchinterval(0.0002)  # the clock player spins: let the recording thread in quickly
STATUS_FIELDS = next(r.signature for r in REPLIES if r.address == "/musicbridge/status").split()
STATUS_NAMES = tuple(field.split(":")[0] for field in STATUS_FIELDS)

# Where a note lands, in the clock's beats: behaviour, not milliseconds (those are bench-clock's figures, against
# jack_midi_clock: |median| and jitter p99 within 2 ms). A schedule a MIDI clock tick (1/24 beat), a 16th, a beat or
# a bar off fails; single notes a loaded 2-core machine moves do not. So: the median note within half a tick of its
# beat (ON_TIME_BEATS), and ON_TIME_SHARE of the notes on their 16th (ON_STEP_BEATS: an arriving note closer than
# half a 16th to its beat is taken for that note; else it is missing). Why not every note within a fixed bound:
# the rig's Python clock senders and the recording peer are threads on the same 2 cores, and in clean-clone runs
# 2–4 notes of a phrase landed 0.035–0.1 beats off while the rest sat within 0.01 (4 of 12 clean-clone runs failed so).
ON_STEP_BEATS = STEP_BEATS / 2
TICK_BEATS = 1 / TICKS_PER_BEAT  # one MIDI clock tick
ON_TIME_BEATS = TICK_BEATS / 2
ON_TIME_SHARE = 0.9


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


def beat_errors(played: list[tuple[float, int]], expected, window: float = ON_STEP_BEATS) -> list[float]:
    """For each expected note (beat, pitch, …), the beat its pitch was played at nearest to it, minus its beat
    (inf when none was played within `window`); `played` is (beat, pitch) of the note-ons, in the clock's beats."""
    errors = []
    for beat, pitch, *_ in expected:
        near = [b - beat for b, p in played if p == pitch and abs(b - beat) < window]
        errors.append(min(near, key=abs) if near else float("inf"))
    return errors


def assert_on_the_grid(errors, lag: float = 0.0) -> None:
    """The notes' median error within ON_TIME_BEATS of `lag` (beats: a constant lag the test accounts for) and
    ON_TIME_SHARE of them on their 16th; `errors` in beats (errors_on, beat_errors), inf for a note that never came."""
    errors = np.asarray(errors, dtype=np.float64)
    assert errors.size > 0, "no notes were meant to play"
    arrived = errors[np.isfinite(errors)]
    share = arrived.size / errors.size
    assert share >= ON_TIME_SHARE, (f"{share:.0%} of {errors.size} notes arrived on their 16th ({errors.size - arrived.size} "
                                    f"missing); errors in beats: {np.round(errors, 4).tolist()}")
    median = float(np.median(arrived - lag))
    assert abs(median) < ON_TIME_BEATS, (f"the notes landed {median:+.4f} beats off their beats in the median (more than "
                                         f"half a clock tick, {ON_TIME_BEATS:.4f}); errors in beats: "
                                         f"{np.round(errors, 4).tolist()}")


class OscPeer:
    """Receives the daemon's replies on `reply_port` and sends it messages on `port`."""

    def __init__(self, port: int, reply_port: int):
        self.client = SimpleUDPClient("127.0.0.1", port)
        self.received: list[tuple[float, str, tuple]] = []
        self.lock = threading.Lock()
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(self._record)
        # one thread, datagrams recorded in arrival order (a threading server handles each on its own thread and
        # may record a reply's rows out of the order they were sent in)
        self.server = BlockingOSCUDPServer(("127.0.0.1", reply_port), dispatcher)
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

    def state(self, timeout: float = 5.0) -> dict:
        """A status reply by name ({"mode", "bpm", …, "temperature", …, "slots"}: osc.REPLIES)."""
        return dict(zip(STATUS_NAMES, self.status(timeout), strict=True))

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
