"""The JACK rig of the bridge's tests and benchmarks: a private jackd, MIDI peers that record with JACK's own
timestamps, a MIDI clock played at exact times, and an outside one: Debian's jack_midi_clock driven by
jack_transport, recorded frame by frame by jack_midi_dump together with what the daemon plays.

All real: jackd with the dummy driver under a unique server name, rtmidi clients on it. Arrival times come from
the bridge's own arithmetic (musicbridge.bridge.midi_io.ArrivalClock), so the tests and the benchmark measure
with what the daemon uses. tests/conftest.py wraps JackServer in fixtures; benchmarks/bench_bridge.py uses it as
it is. Every jack_lsp / jack_connect call waits a bounded time (TOOL_TIMEOUT_S): a server that has exited or hangs
is a JackError, one sentence naming it, never a hang or a TimeoutExpired traceback. EchoClient is bench_clock's
same-run baseline (benchmarks/jack_echo.py).

The server runs synchronously (--sync): in JACK2's default asynchronous mode a client that misses its cycle on a
loaded machine loses that cycle's MIDI events (measured: 1–2 % of messages on 2 busy cores; none with --sync),
and tests that count note-offs must not depend on the machine's load.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import rtmidi

from musicbridge.bridge.clock import TICKS_PER_BEAT
from musicbridge.bridge.midi_io import ArrivalClock, unused_input

SHM = Path("/dev/shm")
NAME_PREFIX = "mbtest-"  # every rig server's name starts so: stale shared memory of dead ones is found by it
RATE, PERIOD = 48000, 64  # 1.33 ms cycles
POLL_S = 0.0005  # recorders look this often; the times they record are JACK's, not the poll's
SPIN_S = 0.0015  # the clock player sleeps until this close to a tick, then spins
TICKS_PER_16TH = TICKS_PER_BEAT // 4  # MIDI clock: a 16th's tick is every sixth from Start
TOOL_TIMEOUT_S = 10.0  # jack_lsp / jack_connect answer in milliseconds; a server silent this long hangs


class JackError(RuntimeError):
    """The rig's JACK server is gone, hangs or lacks a port: the message is one sentence saying which."""


# What a failing rig raises: JACK gone, hung or without a port; rtmidi's errors (OSError); a child that cannot run.
RIG_ERRORS = (JackError, OSError, subprocess.SubprocessError)


def describe(error: BaseException) -> str:
    """An error as the sentence a benchmark reports: the rig's own say what they mean; others name their type."""
    return str(error) if isinstance(error, JackError) else f"{type(error).__name__}: {error}"


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
    (in this process: os.environ.update(server.client_env); a subprocess: env=server.env). With
    `realtime_priority`, jackd -R -P that instead (its clients' threads then run at that minus 5)."""

    def __init__(self, rate: int = RATE, period: int = PERIOD, realtime_priority: int | None = None):
        self.name = f"{NAME_PREFIX}{uuid.uuid4().hex[:10]}"
        self.client_env = {"JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}
        self.env = {**os.environ, **self.client_env}
        self.rate, self.period = rate, period
        self.realtime = ["--no-realtime"] if realtime_priority is None else ["-R", "-P", str(realtime_priority)]
        self.process: subprocess.Popen | None = None
        self.log_path = Path(f"/tmp/{self.name}.log")
        self.tool_timeout_s = TOOL_TIMEOUT_S

    def check_running(self) -> None:
        """Raise JackError when jackd has exited (killed, crashed, stopped)."""
        if self.process is None:
            raise JackError(f"the JACK server {self.name} is not running (never started, or stopped)")
        if self.process.poll() is not None:
            raise JackError(f"the JACK server {self.name} has exited (code {self.process.returncode}; "
                            f"jackd's last log line: {self._last_log_line()!r})")

    def _last_log_line(self) -> str:
        lines = [line for line in self.log_text().splitlines() if line.strip()]
        return lines[-1][-200:] if lines else ""

    def _tool(self, *command: str) -> subprocess.CompletedProcess:
        """Run a JACK command-line tool against this server with a bounded wait: a server that has exited or
        does not answer within `tool_timeout_s` is a JackError, never a hang."""
        self.check_running()
        try:
            return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=self.tool_timeout_s)
        except subprocess.TimeoutExpired:
            raise JackError(f"the JACK server {self.name} did not answer {command[0]} within "
                            f"{self.tool_timeout_s:g} s: jackd hangs (its last log line: "
                            f"{self._last_log_line()!r})") from None

    def _lsp(self, *args: str) -> subprocess.CompletedProcess:
        return self._tool("jack_lsp", *args)

    def start(self, timeout: float = 15.0) -> JackServer:
        clean_stale_jack_shm()
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                ["jackd", "--sync", *self.realtime, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise JackError(f"jackd exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            if "system:" in self._lsp().stdout:
                return self
            time.sleep(0.1)
        self.stop()
        raise JackError(f"jackd did not come up within {timeout} s: {self.log_path.read_text()[-2000:]}")

    def alive(self) -> bool:
        try:
            return self._lsp().returncode == 0
        except JackError:
            return False

    def log_text(self) -> str:
        """What jackd has logged so far (xruns: "was not finished", "xrun")."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

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
        raise JackError(f"no JACK port containing {fragment!r} after {timeout:g} s; ports: {self.ports()}")

    def connect(self, source: str, destination: str) -> None:
        """Connect the first ports whose names contain `source` and `destination`, once both are there."""
        a, b = self.wait_for_port(source), self.wait_for_port(destination)
        done = self._tool("jack_connect", a, b)
        if done.returncode != 0:
            raise JackError(f"jack_connect {a} {b} failed: {done.stderr.strip()[-300:]}")

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
    daemon's ArrivalClock), so a late poll does not blur them. MIDI clock is recorded unless `clock` is False;
    sysex and active sensing never are (dropped after their time is counted, as the daemon does).
    """

    def __init__(self, client: str, port: str = "in", clock: bool = True):
        self.handle = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=client)
        self.handle.ignore_types(sysex=False, timing=False, active_sense=False)  # see midi_io.MidiInput
        self.clock = clock
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
            if unused_input(event[0]) or (not self.clock and event[0][0] in (0xF1, 0xF8)):
                continue
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


class _NoCollectionWhilePlaying:
    """Python's cyclic garbage collector held off while any ClockPlayer plays: a full collection of a test
    process's heap stops every thread of it for up to half a second (measured: 0.5 s in the suite's process),
    which a clock's receiver hears as a clock gone silent. Collected once before, re-enabled after the last."""

    def __init__(self):
        self.lock = threading.Lock()
        self.players = 0
        self.was_enabled = False

    def enter(self) -> None:
        with self.lock:
            if self.players == 0:
                self.was_enabled = gc.isenabled()
                gc.collect()
                gc.disable()
            self.players += 1

    def leave(self) -> None:
        with self.lock:
            self.players -= 1
            if self.players == 0 and self.was_enabled:
                gc.enable()


NO_COLLECTION_WHILE_PLAYING = _NoCollectionWhilePlaying()


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
        self.sent_times: dict[int, float] = {}  # tick number → when it was sent (later than intended: a stall)
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

    def beat_at(self, t: float, as_sent: bool = False) -> float:
        """The clock's song position (beats) at wall-clock time `t`: the inverse of time_of on the ticks played
        (between two ticks in proportion; before the first or after the last, at the tempo there). `as_sent`: on
        the times the ticks were sent instead of intended — what a follower could know of a player that stalled
        (a loaded machine) and sent its overdue ticks late."""
        played = sorted((self.sent_times if as_sent else self.tick_times).items())  # (one copy: the thread adds)
        if not played:
            raise ValueError("the clock has played no tick yet")
        ticks, times = [tick for tick, _ in played], [when for _, when in played]
        i = min(max(bisect.bisect_right(times, t) - 1, 0), len(ticks) - 1)
        return (ticks[i] + (t - times[i]) / self._interval(ticks[i])) / TICKS_PER_BEAT

    def start(self, until_beat: float, send_start: bool = True, delay: float = 0.1) -> float:
        """Send Start (or Continue) and play ticks until `until_beat`; returns the time of the first tick."""
        NO_COLLECTION_WHILE_PLAYING.enter()  # before t0: the collection it starts with is not in the ticks' time
        self.running = True
        self.t0 = time.perf_counter() + delay
        self.thread = threading.Thread(target=self._run, args=(until_beat, send_start), daemon=True)
        self.thread.start()
        return self.t0

    def _run(self, until_beat: float, send_start: bool) -> None:
        try:
            self.peer.send([0xFA] if send_start else [0xFB])
            t = self.t0
            tick = round(self.start_beat * TICKS_PER_BEAT)
            while self.running and tick < until_beat * TICKS_PER_BEAT:
                self.tick_times[tick] = t
                precise_sleep_until(t + self.jitter(tick))
                if not self.drop(tick):
                    self.sent_times[tick] = self.peer.send([0xF8])
                for message in self.notes.get(tick, []):
                    self.peer.send(message)
                t += self._interval(tick)
                tick += 1
        finally:
            self.running = False
            NO_COLLECTION_WHILE_PLAYING.leave()

    def join(self, timeout: float = 60.0) -> None:
        if self.thread:
            self.thread.join(timeout)

    def stop(self) -> None:
        self.running = False
        self.join()


# ---- an outside clock: jack_midi_clock driven by jack_transport, recorded by jack_midi_dump ---------------------
CLOCK_PORT = "jack_midi_clock:mclk_out"
DUMP_PORT_NAME = "input"  # jack_midi_dump's one input port
START, CONTINUE, STOP, SONG_POSITION, TICK = 0xFA, 0xFB, 0xFC, 0xF2, 0xF8
SYSEX_BYTES = 1024  # a keyboard's dump or a controller's display message


def jack_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = "jack-midi-clock" if name == "jack_midi_clock" else "jackd2"
        raise RuntimeError(f"{name} is not installed: apt-get install {package} (.ci/run installs it)")
    return path


class JackTransport:
    """JACK's transport driven by jack_transport (its command prompt on a pipe): timebase master at a tempo,
    play, stop, locate. jack_midi_clock follows it: Start when it rolls from 0, Stop, Song Position Pointer and
    Continue after a relocation, and ticks at the tempo, placed on the exact frame."""

    def __init__(self, server: JackServer, bpm: float):
        self.process = subprocess.Popen([jack_tool("jack_transport")], env=server.env, stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        self.command("master", f"tempo {bpm:g}", "stop", "locate 0")

    def command(self, *lines: str) -> None:
        self.process.stdin.write("".join(f"{line}\n" for line in lines))
        self.process.stdin.flush()

    def play(self) -> None:
        self.command("play")

    def stop(self) -> None:
        self.command("stop")

    def locate(self, frame: int) -> None:
        self.command(f"locate {frame}")

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.command("quit")
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class JackMidiClock:
    """jack_midi_clock: MIDI clock from JACK's transport, sample-accurate, on "jack_midi_clock:mclk_out".
    `jitter_percent` is its -J option (each tick interval varied by up to that share: the phase wanders);
    `resync_s` its -d (the pause between Song Position Pointer and Continue after a relocation)."""

    def __init__(self, server: JackServer, bpm: float, jitter_percent: float = 0.0, resync_s: float = 0.5):
        options = ["-b", f"{bpm:g}", "-d", f"{resync_s:g}"]
        if jitter_percent:
            options += ["-J", f"{jitter_percent:g}"]
        self.process = subprocess.Popen([jack_tool("jack_midi_clock"), *options], env=server.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        server.wait_for_port(CLOCK_PORT)

    def close(self) -> None:
        end_process(self.process)


def end_process(process: subprocess.Popen, stop_signal: int = signal.SIGINT, timeout: float = 5.0) -> int:
    """Ask a child to end (the JACK tools close their client and flush on SIGINT), kill it after `timeout`
    seconds; its exit code. Never raises for a child that is slow or already gone."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(stop_signal)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class EchoClient:
    """benchmarks/jack_echo.py in a process of its own on `server`: "<name>:in" hears a clock, "<name>:out"
    answers each 16th with a note (jack_echo.ECHO_CHANNEL) as soon as a Python client can — bench_clock's
    same-run baseline. `counts` ({"ticks", "answered"}) once closed."""

    def __init__(self, server: JackServer, name: str = "echo", timeout: float = 20.0):
        self.name = name
        self.counts: dict[str, int] = {}
        self.errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 — closed in close()
        self.process = subprocess.Popen([sys.executable, "-m", "musicbridge.benchmarks.jack_echo", name],
                                        env=server.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.errors, text=True, start_new_session=True)
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready or self.process.stdout.readline().strip() != "ready":
            end_process(self.process, signal.SIGKILL)
            self.errors.seek(0)
            said = [line for line in self.errors.read().splitlines() if line.strip()]
            self.errors.close()
            raise JackError(f"the echo client {name} did not start within {timeout:g} s"
                            + (f": {said[-1][-300:]}" if said else ""))
        server.wait_for_port(f"{name}:out")

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # its cue to close its client and report
            try:
                output = self.process.stdout.read() if select.select([self.process.stdout], [], [], 5)[0] else ""
            except (OSError, ValueError):
                output = ""
            end_process(self.process, signal.SIGTERM)
            lines = [line for line in output.splitlines() if line.startswith("{")]
            if lines:
                self.counts = json.loads(lines[-1])
        self.errors.close()


class MidiDump:
    """jack_midi_dump -a: every event reaching "<name>:input", stamped with its frame since the dump started
    (JACK's own sample clock: the clock's ticks and the daemon's notes on one timeline)."""

    def __init__(self, server: JackServer, name: str = "dump"):
        self.name = name
        self.port = f"{name}:{DUMP_PORT_NAME}"
        self.rate = server.rate
        self.lines: list[str] = []
        self.process = subprocess.Popen(["stdbuf", "-oL", jack_tool("jack_midi_dump"), "-a", name], env=server.env,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        server.wait_for_port(self.port)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def events(self) -> list[tuple[int, list[int]]]:
        """(frame, message bytes) in the order they arrived."""
        result = []
        for line in list(self.lines):  # "  245376: 90 3c 5a note on  (channel  0): pitch  60, velocity  90"
            frame, colon, data = line.partition(":")
            if not colon or not frame.strip().isdigit():
                continue
            message = []
            for token in data.split():
                if len(token) != 2 or not all(c in "0123456789abcdef" for c in token):
                    break  # the description after the bytes
                message.append(int(token, 16))
            if message:
                result.append((int(frame), message))
        return result

    def close(self) -> None:
        end_process(self.process)
        self.reader.join(timeout=5)


class SongPosition:
    """Where a MIDI clock's receiver stands, as the MIDI clock defines it: ticks counted from Start, from a Song
    Position Pointer at Continue, none while stopped (the witness's own reading, independent of the daemon's)."""

    def __init__(self):
        self.position, self.running = 0, False

    def apply(self, message: list[int]) -> int | None:
        """Take one message; the song position (in ticks) of a clock tick that counts, else None."""
        status = message[0] if message else None
        if status == START:
            self.position, self.running = 0, True
        elif status == CONTINUE:
            self.running = True
        elif status == STOP:
            self.running = False
        elif status == SONG_POSITION and len(message) >= 3:
            self.position = (message[1] | (message[2] << 7)) * TICKS_PER_BEAT // 4
        elif status == TICK and self.running:
            self.position += 1
            return self.position - 1
        return None


class ClockTimeline:
    """The clock's grid as recorded: the frame of each tick by song position (ticks counted from Start, from a
    Song Position Pointer at Continue), exactly as the MIDI clock defines it; notes placed on it in beats."""

    def __init__(self, events: Iterable[tuple[int, list[int]]]):
        self.tick_frames: dict[int, int] = {}
        song = SongPosition()
        for frame, message in events:
            position = song.apply(message)
            if position is not None:
                self.tick_frames[position] = frame
        self.ticks = sorted(self.tick_frames)

    def frame_of(self, beat: float) -> float | None:
        """The frame of a song position in beats (between ticks: in proportion), None outside the ticks."""
        tick = beat * TICKS_PER_BEAT
        base = int(tick // 1)
        if base not in self.tick_frames:
            return None
        if tick == base:
            return float(self.tick_frames[base])
        if base + 1 not in self.tick_frames:
            return None
        return self.tick_frames[base] + (tick - base) * (self.tick_frames[base + 1] - self.tick_frames[base])

    def beat_of(self, frame: float) -> float | None:
        """The song position (beats) at a frame, from the recorded ticks around it; None outside them."""
        frames = [self.tick_frames[t] for t in self.ticks]
        i = bisect.bisect_right(frames, frame) - 1
        if i < 0 or i + 1 >= len(frames):
            return None
        a, b = self.ticks[i], self.ticks[i + 1]
        if b != a + 1:  # a gap in the ticks (Stop, relocation): no grid to place it on
            return None
        return (a + (frame - frames[i]) / (frames[i + 1] - frames[i])) / TICKS_PER_BEAT


def note_ons(events: Iterable[tuple[int, list[int]]], channel: int | None = None) -> list[tuple[int, int]]:
    """(frame, pitch) of the note-ons among recorded events (on `channel`, 0-based, when given)."""
    return [(frame, m[1]) for frame, m in events
            if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0 and (channel is None or m[0] & 0x0F == channel)]


def planned_notes(phrases: dict[int, dict]) -> list[tuple[float, int]]:
    """(song position in beats, pitch) of each note the daemon announced over OSC (/musicbridge/gen/*, as
    {id: {"begin": args, "notes": [args]}}), each phrase until the next one begins."""
    ordered = sorted((p for p in phrases.values() if p.get("begin")), key=lambda p: (p["begin"][2], p["begin"][0]))
    result = []
    for i, phrase in enumerate(ordered):
        start = phrase["begin"][2]
        cut = ordered[i + 1]["begin"][2] if i + 1 < len(ordered) else float("inf")
        for _, pitch, _, rel, _ in phrase["notes"]:
            if start + rel < cut:
                result.append((start + rel, pitch))
    return result


def placed_notes(timeline: ClockTimeline, planned: Iterable[tuple[float, int]], played: list[tuple[int, int]],
                 window_beats: float = 0.125) -> tuple[list[tuple[float, int, float, float]], int]:
    """Each planned note matched with the played note-on of its pitch nearest its place on the grid (within
    `window_beats`): ([(planned beat, frame played, grid frame, frames per tick there)], the number of planned
    notes on the recorded grid that were not played). Planned notes outside the recorded ticks are left out.
    (frame played − grid frame) / frames per tick / TICKS_PER_BEAT is the error in beats; / rate, in seconds."""
    placed, missing = [], 0
    for beat, pitch in planned:
        grid, next_tick = timeline.frame_of(beat), timeline.frame_of(beat + 1 / TICKS_PER_BEAT)
        if grid is None or next_tick is None or timeline.frame_of(beat + window_beats) is None:
            continue
        per_tick = next_tick - grid
        span = window_beats * TICKS_PER_BEAT * per_tick
        near = [frame for frame, p in played if p == pitch and abs(frame - grid) <= span]
        if not near:
            missing += 1
            continue
        placed.append((beat, min(near, key=lambda f: abs(f - grid)), grid, per_tick))
    return placed, missing


def echo_offsets(timeline: ClockTimeline, played: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], int]:
    """An echo's answer to each 16th of the recorded clock: ([(frame of the 16th's tick, frames from it to the
    first of `played`'s note-ons at or after it)], the 16ths with no note-on before the next 16th's tick). Only
    16ths whose next 16th was recorded too count (the last one before Stop has no window)."""
    frames = sorted(frame for frame, _ in played)
    answered, missing = [], 0
    for tick in timeline.ticks:
        after = tick + TICKS_PER_16TH
        if tick % TICKS_PER_16TH or after not in timeline.tick_frames:
            continue
        grid = timeline.tick_frames[tick]
        i = bisect.bisect_left(frames, grid)
        if i < len(frames) and frames[i] < timeline.tick_frames[after]:
            answered.append((grid, frames[i] - grid))
        else:
            missing += 1
    return answered, missing


class ClockFollower:
    """A JACK client standing in for a keyboard player who follows the clock: "<name>:in" hears the clock (wire
    it to jack_midi_clock), "<name>:out" plays `phrase` — (start beat, end beat, pitch, velocity), repeated
    every `loop_beats` — on the ticks, plus what a keyboard sends besides notes: Active Sensing every
    `sensing_s` seconds and a SYSEX_BYTES system exclusive message `sysex_per_s` times a second (0: none)."""

    def __init__(self, name: str, phrase: Iterable[tuple[float, float, int, int]], loop_beats: float,
                 sensing_s: float = 0.0, sysex_per_s: float = 0.0, channel: int = 0):
        self.name = name
        self.loop_ticks = round(loop_beats * TICKS_PER_BEAT)
        self.at_tick: dict[int, list[list[int]]] = {}
        for start, end, pitch, velocity in phrase:
            self.at_tick.setdefault(round(end * TICKS_PER_BEAT) % self.loop_ticks, []).append(
                [0x80 | channel, pitch, 0])
            self.at_tick.setdefault(round(start * TICKS_PER_BEAT) % self.loop_ticks, []).append(
                [0x90 | channel, pitch, velocity])
        for messages in self.at_tick.values():
            messages.sort(key=lambda m: m[0] & 0xF0 == 0x90)  # note-offs first: a repeated pitch sounds again
        self.sensing_s, self.sysex_per_s = sensing_s, sysex_per_s
        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=name)
        self.out.open_virtual_port("out")
        self.listen = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=name + "-clock")
        self.listen.ignore_types(sysex=True, timing=False, active_sense=True)  # times are not needed here
        self.listen.open_virtual_port("in")
        self.send_lock = threading.Lock()
        self.sent = {"notes": 0, "sensing": 0, "sysex": 0}
        self.running = True
        self.threads = [threading.Thread(target=self._follow, daemon=True),
                        threading.Thread(target=self._traffic, daemon=True)]
        for thread in self.threads:
            thread.start()

    def _send(self, message: list[int], kind: str) -> None:
        with self.send_lock:
            if self.running:
                self.out.send_message(message)
                self.sent[kind] += 1

    def _follow(self) -> None:
        song = SongPosition()
        while self.running:
            event = self.listen.get_message()
            if event is None:
                time.sleep(POLL_S)
                continue
            position = song.apply(event[0])
            if position is not None:
                for message in self.at_tick.get(position % self.loop_ticks, []):
                    self._send(message, "notes")

    def _traffic(self) -> None:
        sysex = [0xF0, 0x7D, *(k % 128 for k in range(SYSEX_BYTES - 3)), 0xF7]  # 0x7D: non-commercial id
        next_sensing = next_sysex = time.perf_counter()
        while self.running:
            now = time.perf_counter()
            if self.sensing_s and now >= next_sensing:
                self._send([0xFE], "sensing")
                next_sensing += self.sensing_s
            if self.sysex_per_s and now >= next_sysex:
                self._send(sysex, "sysex")
                next_sysex += 1.0 / self.sysex_per_s
            time.sleep(0.002)

    def close(self) -> None:
        with self.send_lock:
            self.running = False
        for thread in self.threads:
            thread.join(timeout=2)
        for handle in (self.out, self.listen):
            handle.close_port()
            handle.delete()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`python -m musicbridge serve --midi-api jack …` on the rig's server, in a subprocess, with its OSC replies
    (/musicbridge/gen/*, status, errors) collected on a port of our own; its log goes to `log_path`."""

    def __init__(self, server: JackServer, args: list[str], log_path: Path):
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer
        from pythonosc.udp_client import SimpleUDPClient

        self.osc_port, reply_port = free_udp_port(), free_udp_port()
        self.replies: list[tuple[float, str, tuple]] = []
        self.lock = threading.Lock()
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(self._record)
        self.osc_server = BlockingOSCUDPServer(("127.0.0.1", reply_port), dispatcher)
        threading.Thread(target=self.osc_server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.client = SimpleUDPClient("127.0.0.1", self.osc_port)
        self.log_path = log_path
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "musicbridge", "serve", "--midi-api", "jack", "--no-status",
                 "--osc-port", str(self.osc_port), "--osc-reply-port", str(reply_port), *args],
                env=server.env, stdout=log, stderr=subprocess.STDOUT)

    def _record(self, address: str, *args) -> None:
        with self.lock:
            self.replies.append((time.perf_counter(), address, args))

    def messages(self, address: str) -> list[tuple]:
        with self.lock:
            return [args for _, a, args in self.replies if a == address]

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Ask for status until the daemon answers (it is then fully up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}: {self.log_path.read_text()[-3000:]}")
            self.client.send_message("/musicbridge/status", [])
            time.sleep(0.2)
            if self.messages("/musicbridge/status"):
                return
        raise TimeoutError(f"serve not ready after {timeout} s: {self.log_path.read_text()[-3000:]}")

    def phrases(self) -> dict[int, dict]:
        """{id: {"begin": args, "notes": [args...], "end": args}} of the /musicbridge/gen/* replies."""
        result: dict[int, dict] = {}
        with self.lock:
            replies = list(self.replies)
        for _, address, args in replies:
            if address.startswith("/musicbridge/gen/"):
                entry = result.setdefault(args[0], {"begin": None, "notes": [], "end": None})
                kind = address.rsplit("/", 1)[1]
                if kind == "note":
                    entry["notes"].append(args)
                else:
                    entry[kind] = args
        return result

    def stop(self, timeout: float = 30.0) -> int:
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait()
        finally:
            self.osc_server.shutdown()
            self.osc_server.server_close()
