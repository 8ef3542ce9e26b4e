"""Hostile OSC against a real daemon (UDP on 127.0.0.1): each packet that once hung, crashed, leaked or amplified.

One daemon serves the whole module (seeded, bounded, well under a minute): malformed bundles and strings, a FIFO
and symlinks given as paths, bursts of model loads, then a seeded random fuzz. After each, the daemon must still
answer /musicbridge/status; at the end it must stop on SIGTERM within a second with a log of bounded size.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import threading
import time
import uuid

import pytest
from bridge_harness import Daemon, OscPeer, free_udp_port, wait_until
from midi_factory import write_type0
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from musicbridge.benchmarks.fuzz_osc import TIMETAG, bundle, corpus, message, mutate
from musicbridge.bridge.osc_packet import show
from musicbridge.runtime import SHIPPED_DIR

SEED = 15
SIGTERM_BUDGET_S = 1.0
LOG_BUDGET_BYTES = 120_000  # ~800 lines: the start-up lines plus at most 10 OSC error lines a second
NO_MIDI = {"JACK_DEFAULT_SERVER": f"mbtest-none-{uuid.uuid4().hex[:8]}", "JACK_NO_START_SERVER": "1"}
E = "/musicbridge/error"


def nested(depth: int) -> bytes:
    packet = message("/musicbridge/status")
    for _ in range(depth):
        packet = bundle(packet)
    return packet


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """The daemon (mode off, shipped mel_2bar) with a models dir and a files dir full of traps."""
    root = tmp_path_factory.mktemp("fuzz")
    models, files, outside = root / "models", root / "files", root / "outside"
    for folder in (models, files, outside):
        folder.mkdir()
    shutil.copytree(SHIPPED_DIR / "mel_2bar", outside / "model")
    (models / "escape").symlink_to(outside / "model")  # a folder symlink leading out
    for name in ("copy", "c1", "c2", "c3"):
        shutil.copytree(SHIPPED_DIR / "mel_2bar", models / name)
    shutil.copytree(SHIPPED_DIR / "mel_2bar", models / "filelink")
    graph = next((models / "filelink").glob("sampler*.onnx"))
    graph.unlink()
    graph.symlink_to(outside / "model" / graph.name)  # one file inside the folder leads out
    write_type0(files / "phrase.mid")
    write_type0(outside / "secret.mid")
    (files / "out.mid").symlink_to(outside / "secret.mid")
    os.mkfifo(files / "fifo.mid")
    daemon = Daemon(["--midi-api", "auto", "--clock", "internal", "--bpm", "240", "--mode", "off",
                     "--model", "mel_2bar", "--models-dir", str(models), "--files-dir", str(files)], env=NO_MIDI)
    osc = OscPeer(daemon.osc_port, daemon.reply_port)
    daemon.start()
    daemon.wait_ready(osc)
    yield daemon, osc, root
    daemon.stop(timeout=5)
    osc.close()


def exchange(osc: OscPeer, data: bytes) -> list[tuple[str, tuple]]:
    """Send one datagram, then a status request; the replies the datagram got (the daemon handles packets in
    order, so they were all sent before the status reply)."""
    since = time.perf_counter()
    osc.send_raw(data)
    osc.status(timeout=3)
    time.sleep(0.05)
    replies = [(a, args) for _, a, args in osc.messages(since=since)]
    replies.remove(next(r for r in reversed(replies) if r[0] == "/musicbridge/status"))
    return replies


def one_error(osc: OscPeer, data: bytes) -> tuple[str, str]:
    replies = exchange(osc, data)
    assert [a for a, _ in replies] == [E], replies
    return replies[0][1]


@pytest.mark.parametrize("size", [-4, 0, 4096, -(2**31)])
def test_a_bad_bundle_element_size_is_answered_once(rig, size):
    _, osc, _ = rig
    packet = b"#bundle\x00" + TIMETAG + struct.pack(">i", size) + message("/musicbridge/status")
    code, text = one_error(osc, packet)
    assert code == "bad_arguments" and "size" in text


def test_deep_bundles_and_broken_strings_are_answered_once(rig):
    daemon, osc, _ = rig
    assert one_error(osc, nested(400))[0] == "bad_arguments"
    assert one_error(osc, b"/musicbridge/mode\x00\x00\x00,s\x00\x00\xff\xfe\xfd\x00")[0] == "bad_arguments"
    assert one_error(osc, b"/musicbridge/\xc3\x00\x00\x00,\x00\x00\x00")[0] == "bad_arguments"
    assert "Traceback" not in daemon.output(), daemon.output()[-4000:]


def test_unknown_type_tags_cost_one_reply_and_one_log_line(rig):
    daemon, osc, _ = rig
    before = daemon.log_path.stat().st_size
    started = time.perf_counter()
    code, text = one_error(osc, b"/musicbridge/status\x00" + b",".ljust(8188, b"x") + b"\x00" * 4)
    assert code == "bad_arguments" and "type tag" in text
    assert time.perf_counter() - started < 1.0
    assert daemon.log_path.stat().st_size - before < 1000


def test_a_bundle_of_1020_messages_gets_one_reply(rig):
    _, osc, _ = rig
    code, text = one_error(osc, bundle(*[b"/a\x00\x00"] * 1020))
    assert code == "unknown_address" and "1020 of 1020" in text


def test_replies_are_small_whatever_the_request(rig):
    _, osc, _ = rig
    for packet in (b"\x01", message("/musicbridge/mode", "\x07" * 8000), message("/x" * 2000)):
        _, text = one_error(osc, packet)
        assert len(text) <= 240


def test_a_full_64_kb_datagram_is_read_whole(rig):
    _, osc, _ = rig
    data = bundle(*[message("/musicbridge/param/bars", 2)] * 1800)  # 1,800 × 36 bytes: beyond an 8,192-byte read
    assert len(data) > 60_000
    assert exchange(osc, data) == []  # understood: nothing to answer


def refusals(osc: OscPeer, address: str, *paths: str, extra=()) -> list[str]:
    texts = []
    for path in paths:
        code, text = one_error(osc, message(address, *extra, path))
        assert code == "refused", (path, text)
        texts.append(text.replace(show(path), "<path>", 1))
    return texts


def test_capture_file_reads_only_regular_files_inside_the_files_dir(rig):
    _, osc, root = rig
    started = time.perf_counter()
    texts = refusals(osc, "/musicbridge/capture/file", "fifo.mid", "/dev/stdin", "out.mid", "../outside/secret.mid",
                     str(root / "outside" / "secret.mid"), "missing.mid", "x" * 5000, extra=("a",))
    assert time.perf_counter() - started < 5.0  # a FIFO or a terminal never blocks the OSC thread
    assert len(set(texts)) == 1, texts  # one message: nothing tells "missing" from "exists elsewhere"
    assert not any(str(root) in t for t in texts)
    assert exchange(osc, message("/musicbridge/capture/file", "a", "phrase.mid")) == []


def test_model_load_stays_inside_the_models_dirs(rig):
    _, osc, root = rig
    texts = refusals(osc, "/musicbridge/model/load", "escape", "filelink", "..", "../outside/model",
                     str(root / "outside" / "model"), "no_such_model", "m" * 5000)
    assert len(set(texts)) == 1, texts
    assert not any(str(root) in t or "copy" in t for t in texts)  # no path, no listing of the folder
    assert osc.status()[3] == "mel_2bar"


def test_model_loads_are_serialised_newest_wins(rig):
    daemon, osc, root = rig
    threads_before = len(os.listdir(f"/proc/{daemon.process.pid}/task"))
    names = ["copy", "c1", "c2", "c3"] * 5
    since = time.perf_counter()
    osc.send_raw(bundle(*(message("/musicbridge/model/load", n) for n in names)))
    wait_until(lambda: osc.status()[3] == names[-1], 20, what="the last requested model active")
    assert len(os.listdir(f"/proc/{daemon.process.pid}/task")) <= threads_before + 1
    errors = [args for _, _, args in osc.messages(E, since)]
    assert len(errors) == 1 and "superseded" in errors[0][1]  # one reply for the whole bundle
    # Back to a loaded model by its full path: active again without a second load from disk.
    since = time.perf_counter()
    osc.send("/musicbridge/model/load", str(root / "models" / "copy"))
    assert osc.wait_for("/musicbridge/status", since, timeout=5)[-1][2][3] == "copy"
    assert daemon.output().count("loading model copy") == 1


def test_seeded_fuzz_leaves_the_daemon_answering(rig):
    daemon, osc, _ = rig
    rng = random.Random(SEED)
    seeds = corpus()
    for k in range(2000):
        osc.send_raw(mutate(rng, rng.choice(seeds)) if k % 4 else bytes(rng.randrange(256) for _ in range(64)))
        if k % 50 == 0:
            time.sleep(0.01)  # mostly within the socket buffer: dropped datagrams would test nothing
    daemon.wait_ready(osc, timeout=10)  # answering again (a request sent into a full buffer may be dropped)
    osc.send("/musicbridge/mode", "off")
    assert osc.status(timeout=5)[0] == "off"
    assert "Traceback" not in daemon.output(), daemon.output()[-4000:]


def test_replies_go_only_to_subscribers(bridge_reply_host):
    daemon, fixed, listen = bridge_reply_host
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(0.4)
    own_port = client.getsockname()[1]
    target = ("127.0.0.1", daemon.osc_port)

    def asks(data: bytes) -> list[bytes]:
        client.sendto(data, target)
        got = []
        try:
            while True:
                got.append(client.recv(65536))
        except (TimeoutError, ConnectionRefusedError):  # refused: the daemon is not listening yet
            return got

    try:
        wait_until(lambda: asks(message("/musicbridge/subscribe", own_port, 1.0)), 20, interval=0.1,
                   what="the daemon's answer to a subscription")
        assert asks(message("/musicbridge/status"))  # subscribed: answered on its own port
        time.sleep(1.1)
        assert asks(message("/musicbridge/status")) == []  # expired: silence
        # From the fixed reply host (Max's udpsend: a random source port), subscribing the port it listens on:
        # the confirmation arrives there, not at the fixed address.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as max_send, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as max_listen:
            max_send.bind(("127.0.0.2", 0))
            max_listen.bind(("127.0.0.2", 0))
            max_listen.settimeout(5)
            max_send.sendto(message("/musicbridge/subscribe", max_listen.getsockname()[1], 1.0), target)
            data, _ = max_listen.recvfrom(65536)
            assert data.startswith(b"/musicbridge/status") and fixed.messages() == []
            time.sleep(1.1)  # let it expire before the garbage below
        for _ in range(200):  # many unsubscribed senders of garbage: no reply reaches anyone
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.sendto(b"\x01", target)
        time.sleep(0.3)
        assert listen.messages() == [] and fixed.messages() == []
    finally:
        client.close()


@pytest.fixture
def bridge_reply_host():
    """A daemon whose fixed reply address is 127.0.0.2 (another host, as far as replies go)."""
    reply_port = free_udp_port()
    daemon = Daemon(["--midi-api", "auto", "--clock", "internal", "--mode", "off", "--model", "mel_2bar",
                     "--osc-reply-host", "127.0.0.2"], env=NO_MIDI, reply_port=reply_port)
    listen = OscPeer(daemon.osc_port, reply_port)  # 127.0.0.1 on the reply port: where replies once went
    fixed = _Listener(("127.0.0.2", reply_port))
    daemon.start()
    yield daemon, fixed, listen
    assert daemon.stop(timeout=5) == 0
    listen.close()
    fixed.close()


class _Listener(OscPeer):
    """An OscPeer that only listens, on any loopback address."""

    def __init__(self, address: tuple[str, int]):
        self.received, self.lock = [], threading.Lock()
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(self._record)
        self.server = BlockingOSCUDPServer(address, dispatcher)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


def test_sigterm_stops_within_a_second_with_a_bounded_log(rig):
    daemon, osc, _ = rig
    osc.send("/musicbridge/capture/file", "a", "fifo.mid")
    osc.send_raw(b"#bundle\x00" + TIMETAG + struct.pack(">i", -4) + message("/musicbridge/status"))
    osc.send_raw(nested(400))
    started = time.monotonic()
    daemon.signal()
    code = daemon.process.wait(5)
    elapsed = time.monotonic() - started
    assert code == 0 and elapsed < SIGTERM_BUDGET_S, (code, elapsed)
    assert daemon.log_path.stat().st_size < LOG_BUDGET_BYTES
    assert "summary" in daemon.output()
