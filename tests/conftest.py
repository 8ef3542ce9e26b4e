"""Shared fixtures: a real JACK server (dummy driver) per test session, under its own name, and tiny models.

`jack_server` yields a JackServer (musicbridge.benchmarks.jack_rig, the rig the bridge benchmark uses too) whose
name is also in os.environ["JACK_DEFAULT_SERVER"] for the test, so in-process rtmidi clients
(rtmidi.API_UNIX_JACK) and subprocesses started by the test both use it. Servers started here are stopped with
SIGTERM and waited for; /dev/shm entries left by dead rig servers (a killed run) are removed first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from musicbridge.benchmarks.jack_rig import JackServer


def _use(server: JackServer, monkeypatch) -> JackServer:
    for key, value in server.client_env.items():
        monkeypatch.setenv(key, value)
    return server


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
    return _use(_jack_session, monkeypatch)


@pytest.fixture
def own_jack_server(monkeypatch):
    """A JACK server of the test's own (for tests that stop or break it)."""
    server = JackServer().start()
    yield _use(server, monkeypatch)
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
