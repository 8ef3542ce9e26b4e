"""The JACK rig of the bridge's tests and benchmark: a private jackd, MIDI peers that record with JACK's own
timestamps, and a MIDI clock played at exact times.

All real: jackd with the dummy driver under a unique server name, rtmidi clients on it. Arrival times come from
the bridge's own arithmetic (musicbridge.bridge.midi_io.ArrivalClock), so the tests and the benchmark measure
with what the daemon uses. tests/conftest.py wraps JackServer in fixtures; benchmarks/bench_bridge.py uses it as
it is.

The server runs synchronously (--sync): in JACK2's default asynchronous mode a client that misses its cycle on a
loaded machine loses that cycle's MIDI events (measured: 1–2 % of messages on 2 busy cores; none with --sync),
and tests that count note-offs must not depend on the machine's load.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import rtmidi

from musicbridge.bridge.clock import TICKS_PER_BEAT
from musicbridge.bridge.midi_io import ArrivalClock

SHM = Path("/dev/shm")
NAME_PREFIX = "mbtest-"  # every rig server's name starts so: stale shared memory of dead ones is found by it
RATE, PERIOD = 48000, 64  # 1.33 ms cycles
POLL_S = 0.0005  # recorders look this often; the times they record are JACK's, not the poll's
SPIN_S = 0.0015  # the clock player sleeps until this close to a tick, then spins


def _live_server_names() -> set[str]:
    """Names of the JACK servers running on this machine (JACK_DEFAULT_SERVER / -n of each jackd)."""
    names = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if not cmdline or not cmdline[0].endswith(b"jackd"):
                continue
            environ = dict(e.split(b"=", 1) for e in (proc / "environ").read_bytes().split(b"\0") if b"=" in e)
        except OSError:
            continue
        name = environ.get(b"JACK_DEFAULT_SERVER", b"default").decode()
        for flag in (b"-n", b"--name"):
            if flag in cmdline[1:-1]:
                name = cmdline[cmdline.index(flag) + 1].decode()
        names.add(name)
    return names


def clean_stale_jack_shm() -> list[str]:
    """Remove /dev/shm/jack* entries of rig servers (NAME_PREFIX) that are no longer running; jackd can refuse
    to start over them. The shared registry segments (jack-shm-registry, jack-<uid>-<n>) are removed only when
    no jackd runs at all."""
    if not SHM.is_dir():
        return []
    live = _live_server_names()
    removed = []
    for entry in SHM.glob("jack*"):
        match = re.search(rf"({re.escape(NAME_PREFIX)}[0-9a-f-]+)", entry.name)
        stale = (match and match.group(1) not in live) or (not live and not match)
        if stale:
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry.name)
    return removed


class JackServer:
    """jackd --sync --no-realtime -d dummy under a unique server name; its clients find it through `client_env`
    (in this process: os.environ.update(server.client_env); a subprocess: env=server.env)."""

    def __init__(self, rate: int = RATE, period: int = PERIOD):
        self.name = f"{NAME_PREFIX}{uuid.uuid4().hex[:10]}"
        self.client_env = {"JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}
        self.env = {**os.environ, **self.client_env}
        self.rate, self.period = rate, period
        self.process: subprocess.Popen | None = None
        self.log_path = Path(f"/tmp/{self.name}.log")

    def _lsp(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["jack_lsp", *args], env=self.env, capture_output=True, text=True, timeout=10)

    def start(self, timeout: float = 15.0) -> JackServer:
        clean_stale_jack_shm()
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                ["jackd", "--sync", "--no-realtime", "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jackd exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            if "system:" in self._lsp().stdout:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"jackd did not come up within {timeout} s: {self.log_path.read_text()[-2000:]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None and self._lsp().returncode == 0

    def ports(self) -> list[str]:
        return [line for line in self._lsp().stdout.splitlines() if line.strip()]

    def connections(self) -> dict[str, list[str]]:
        """{port: [ports it is connected to]} from jack_lsp -c."""
        result: dict[str, list[str]] = {}
        current = None
        for line in self._lsp("-c").stdout.splitlines():
            if line.startswith((" ", "\t")):
                result.setdefault(current, []).append(line.strip())
            elif line.strip():
                current = line.strip()
                result.setdefault(current, [])
        return result

    def wait_for_port(self, fragment: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for port in self.ports():
                if fragment in port:
                    return port
            time.sleep(0.05)
        raise TimeoutError(f"no JACK port containing {fragment!r} after {timeout} s; ports: {self.ports()}")

    def connect(self, source: str, destination: str) -> None:
        """Connect the first ports whose names contain `source` and `destination`, once both are there."""
        a, b = self.wait_for_port(source), self.wait_for_port(destination)
        subprocess.run(["jack_connect", a, b], env=self.env, check=True, timeout=10)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        clean_stale_jack_shm()
        self.log_path.unlink(missing_ok=True)


def precise_sleep_until(t: float) -> None:
    remaining = t - time.perf_counter()
    if remaining > SPIN_S + 0.0005:
        time.sleep(remaining - SPIN_S)
    while time.perf_counter() < t:
        pass


class Recorder:
    """A JACK MIDI input ("client:port") that records (arrival time, message) of what reaches it.

    Polled on its own thread rather than by callback: a Python callback in JACK's process thread waits for the
    GIL, and a --sync server then waits for it. The times are JACK's own (rtmidi's delta times through the
    daemon's ArrivalClock), so a late poll does not blur them. MIDI clock is recorded unless `clock` is False.
    """

    def __init__(self, client: str, port: str = "in", clock: bool = True):
        self.handle = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=client)
        self.handle.ignore_types(sysex=True, timing=not clock, active_sense=True)
        self.handle.open_virtual_port(port)
        self.arrivals = ArrivalClock()
        self.received: list[tuple[float, list[int]]] = []
        self.lock = threading.Lock()
        self.running = True
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()

    def _poll(self) -> None:
        while self.running:
            event = self.handle.get_message()
            if event is None:
                time.sleep(POLL_S)
                continue
            arrival = self.arrivals.arrival(event[1], time.perf_counter())
            with self.lock:
                self.received.append((arrival, event[0]))

    def events(self, since: float = 0.0) -> list[tuple[float, list[int]]]:
        """(arrival time, message) of what arrived at or after `since`."""
        with self.lock:
            return [(t, m) for t, m in self.received if t >= since]

    def close(self) -> None:
        self.running = False
        self.poller.join(timeout=1)
        self.handle.close_port()
        self.handle.delete()


class Sink(Recorder):
    """An existing input port "sink:in" the daemon is told to play into (--midi-out sink:in); MIDI clock is
    left out."""

    def __init__(self, client: str = "sink"):
        super().__init__(client, "in", clock=False)

    def messages(self) -> list[list[int]]:
        return [m for _, m in self.events()]

    def notes_on(self) -> int:
        return sum(1 for m in self.messages() if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0)

    def all_notes_off_channels(self, since: int = 0) -> set[int]:
        """Channels that got CC 123 among the messages from index `since` on."""
        return {m[0] & 0x0F for m in self.messages()[since:] if len(m) == 3 and m[0] & 0xF0 == 0xB0 and m[1] == 123}


class MidiPeer:
    """A JACK client standing in for the DAW: an output "<name>:to-bridge" into the daemon's input, and a
    Recorder "<name>-rec:from-bridge" of the daemon's output."""

    def __init__(self, name: str = "peer"):
        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=name)
        self.out.open_virtual_port("to-bridge")
        self.recorder = Recorder(f"{name}-rec", "from-bridge")
        self.send_lock = threading.Lock()
        self.running = True

    def connect(self, server: JackServer, bridge_in: str = "musicbridge in",
                bridge_out: str = "musicbridge out") -> None:
        """Wire the peer to the daemon's ports, then let the first connection settle."""
        server.connect(":to-bridge", bridge_in)
        server.connect(bridge_out, ":from-bridge")
        time.sleep(0.2)  # the first message after a new connection can be lost

    def send(self, message: Iterable[int]) -> float:
        with self.send_lock:
            t = time.perf_counter()
            if self.running:  # a ClockPlayer thread may outlive a failed test: never send on a closed port
                self.out.send_message(list(message))
        return t

    def messages(self, since: float = 0.0) -> list[tuple[float, list[int]]]:
        return self.recorder.events(since)

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
        self.recorder.close()
        self.out.close_port()
        self.out.delete()


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

    def _interval(self, tick: int) -> float:
        return 60.0 / (self.tempo_at(tick / TICKS_PER_BEAT) * TICKS_PER_BEAT)

    def time_of(self, beat: float) -> float:
        """Intended wall-clock time of a beat (the ticks' own timeline)."""
        tick = beat * TICKS_PER_BEAT
        base = int(tick)
        t = self.tick_times.get(base)
        if t is None:
            t = self.t0 + sum(self._interval(k) for k in range(round(self.start_beat * TICKS_PER_BEAT), base))
        return t + (tick - base) * self._interval(base)

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
            t += self._interval(tick)
            tick += 1
        self.running = False

    def join(self, timeout: float = 60.0) -> None:
        if self.thread:
            self.thread.join(timeout)

    def stop(self) -> None:
        self.running = False
        self.join()
