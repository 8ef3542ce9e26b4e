"""Shared fixtures: a real JACK server (dummy driver) per test session, under its own name.

`jack_server` yields a JackServer whose name is also in os.environ["JACK_DEFAULT_SERVER"] for the test, so
in-process rtmidi clients (rtmidi.API_UNIX_JACK) and subprocesses started by the test both use it. Servers
started here are stopped with SIGTERM and waited for; /dev/shm entries left by dead test servers (a killed
run) are removed first, since jackd can refuse to start over them.

The server runs synchronously (--sync): in JACK2's default asynchronous mode a client that misses its cycle
on a loaded machine loses that cycle's MIDI events (measured here: 1–2 % of messages on 2 busy cores; none
with --sync), and tests that count note-offs must not depend on the machine's load.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

SHM = Path("/dev/shm")
NAME_PREFIX = "mbtest-"


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
    """Remove /dev/shm/jack* entries of test servers (NAME_PREFIX) that are no longer running.

    The shared registry segments (jack-shm-registry, jack-<uid>-<n>) are removed only when no jackd runs at all.
    """
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


def _run_lsp(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["jack_lsp", *args], env=env, capture_output=True, text=True, timeout=10)


class JackServer:
    """jackd --sync --no-realtime -d dummy -r 48000 -p 64 under a unique server name."""

    def __init__(self, rate: int = 48000, period: int = 64):
        self.name = f"{NAME_PREFIX}{uuid.uuid4().hex[:10]}"
        self.env = {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}
        self.rate, self.period = rate, period
        self.process: subprocess.Popen | None = None
        self.log_path = Path(f"/tmp/{self.name}.log")

    def start(self, timeout: float = 15.0) -> JackServer:
        clean_stale_jack_shm()
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            ["jackd", "--sync", "--no-realtime", "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jackd exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            if "system:" in _run_lsp(self.env).stdout:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"jackd did not come up within {timeout} s: {self.log_path.read_text()[-2000:]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None and _run_lsp(self.env).returncode == 0

    def ports(self) -> list[str]:
        return [line for line in _run_lsp(self.env).stdout.splitlines() if line.strip()]

    def connections(self) -> dict[str, list[str]]:
        """{port: [ports it is connected to]} from jack_lsp -c."""
        result: dict[str, list[str]] = {}
        current = None
        for line in _run_lsp(self.env, "-c").stdout.splitlines():
            if line.startswith(" ") or line.startswith("\t"):
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


@pytest.fixture(scope="session")
def _jack_session():
    server = JackServer().start()
    yield server
    server.stop()


@pytest.fixture
def jack_server(_jack_session, monkeypatch) -> JackServer:
    """A running JACK server (shared by the session; restarted if a test brought it down)."""
    if not _jack_session.alive():
        _jack_session.stop()
        _jack_session.start()
    monkeypatch.setenv("JACK_DEFAULT_SERVER", _jack_session.name)
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    return _jack_session


@pytest.fixture
def own_jack_server(monkeypatch):
    """A JACK server of the test's own (for tests that stop or break it)."""
    server = JackServer().start()
    monkeypatch.setenv("JACK_DEFAULT_SERVER", server.name)
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    yield server
    server.stop()


def _dense_tiny_model(seed: int):
    """A tiny untrained melody MusicVAE whose answers are busy enough to test with: the output layer's bias
    favours note-ons of C4–C5 and holds, so every phrase has many notes (an untrained model is mostly silent
    or random otherwise)."""
    import torch

    from musicbridge.export.testing import tiny_model

    torch.set_num_threads(1)
    model = tiny_model("melody", bars=2, seed=seed)
    with torch.no_grad():
        bias = model.decoder.head.bias
        bias.fill_(-6.0)
        bias[0] = 4.0  # hold
        bias[60 - 19 : 73 - 19] = 3.0  # note-ons of pitches 60..72 (token = pitch − 19)
    return model


@pytest.fixture(scope="session")
def bridge_models(tmp_path_factory) -> Path:
    """A models directory made with the real exporter: melody_a, melody_b (tiny, 2 bars) and broken (melody_b
    with a truncated sampler graph)."""
    import shutil

    from musicbridge.export.exporter import export_model

    root = tmp_path_factory.mktemp("bridge-models")
    for name, seed in (("melody_a", 1), ("melody_b", 2)):
        export_model(_dense_tiny_model(seed), root / name, preset="tiny", dataset_hash="0" * 64)
    shutil.copytree(root / "melody_b", root / "broken")
    for graph in (root / "broken").glob("*sampler*.onnx"):
        graph.write_bytes(graph.read_bytes()[:1000])
    return root
