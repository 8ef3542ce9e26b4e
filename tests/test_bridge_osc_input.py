"""The daemon's OSC input parts on their own: the bounded datagram parser, confined paths, replies to subscribers
only (real UDP on 127.0.0.1), rate limits, and the model store's load worker and LRU."""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
import time
from types import SimpleNamespace

import pytest

from musicbridge.benchmarks.fuzz_osc import TIMETAG, bundle, message
from musicbridge.bridge.model_store import LoadRequest, LoadWorker, ModelStore, RefusedPath
from musicbridge.bridge.osc_packet import MAX_BUNDLE_DEPTH, MAX_DATAGRAM, PacketError, parse_packet, show
from musicbridge.bridge.paths import MAX_PATH_CHARS, Refused, confine, read_regular_file, resolve_dirs
from musicbridge.bridge.ratelimit import LimitedLog, TokenBucket
from musicbridge.bridge.replies import MAX_ERROR_CHARS, MAX_SUBSCRIBERS, Replier
from musicbridge.runtime import ModelLoadError

TYPES = {"/s": ["s", "i"], "/e": ["s", "s"], "/g": ["i"]}


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---- the datagram parser ------------------------------------------------------------------------
def test_valid_messages_and_bundles_parse_in_order():
    packet = bundle(message("/a", 1, 2.5, "x"), bundle(message("/b")), message("/c", "é"))
    parsed = parse_packet(packet)
    assert [(m.address, m.args) for m in parsed] == [("/a", (1, 2.5, "x")), ("/b", ()), ("/c", ("é",))]
    assert parse_packet(b"/old\x00\x00\x00\x00")[0].args == ()  # no type tag string: no arguments


@pytest.mark.parametrize("size", [-4, -1, 0, 1000, -(2**31), 2**31 - 1])
def test_bundle_element_sizes_outside_the_packet_are_refused(size):
    packet = b"#bundle\x00" + TIMETAG + struct.pack(">i", size) + message("/a")
    with pytest.raises(PacketError, match="size"):
        parse_packet(packet)


def test_nesting_is_bounded():
    packet = message("/a")
    for _ in range(MAX_BUNDLE_DEPTH):
        packet = bundle(packet)
    assert len(parse_packet(packet)) == 1
    for _ in range(2000):  # far past Python's recursion limit if it were followed
        packet = bundle(packet)
    with pytest.raises(PacketError, match="nested"):
        parse_packet(packet)


@pytest.mark.parametrize("packet", [
    b"/mode\x00\x00\x00,s\x00\x00\xff\xfe\x00\x00",  # a string argument
    b"/\xc3\x00\x00,\x00\x00\x00",  # the address
    b"/a\x00\x00,s\xff\x00",  # the type tags
])
def test_non_utf8_is_one_error(packet):
    with pytest.raises(PacketError, match="UTF-8"):
        parse_packet(packet)


def test_unknown_type_tags_end_the_packet_at_the_first(caplog):
    """8 KB of type tags, the first unknown after two known ones: one error, naming that first one, and nothing
    logged per tag (python-osc logged a warning for each). How fast it stops is benchmarks/fuzz_osc.py's figure
    (hostile_parse, against a same-run baseline)."""
    caplog.set_level(logging.DEBUG)
    packet = b"/a\x00\x00" + b",iTz".ljust(8188, b"x") + b"\x00" * 4 + struct.pack(">i", 7)
    with pytest.raises(PacketError, match="unknown type tag 'z'") as refused:
        parse_packet(packet)
    assert "'x'" not in str(refused.value)
    assert caplog.records == []
    assert parse_packet(b"/a\x00\x00" + b",iT\x00" + struct.pack(">i", 7))[0].args == (7, True)  # the known part


def test_the_fuzz_benchmark_times_hostile_packets_against_a_baseline(tmp_path):
    from musicbridge.benchmarks import fuzz_osc

    out = tmp_path / "fuzz.json"
    result = fuzz_osc.main(["--packets", "300", "--repeats", "3", "--json-out", str(out)])
    assert json.loads(out.read_text()) == result and result["exceptions"] == 0 and result["packets"] == 300
    timed = result["hostile_parse"]
    assert set(timed["packets"]) == set(fuzz_osc.hostile()) and timed["repeats"] == 3
    unknown = timed["packets"]["unknown_type_tags_8k"]
    assert unknown["median_over_baseline"] == pytest.approx(unknown["median_us"] / timed["baseline"]["median_us"],
                                                            rel=0.05, abs=0.02)


@pytest.mark.parametrize("packet", [
    b"", b"\x01", b"not osc", b"/a\x00\x00,i\x00\x00\x00\x01", b"/a\x00\x00,s\x00\x00abc", b"/a",
    b"/a\x00\x00,b\x00\x00\xff\xff\xff\xfc", b"/a\x00\x00,[i]\x00\x00\x00\x00\x01", b"#bundle\x00\x00",
    b"/a\x00\x00x\x00\x00\x00",
])
def test_malformed_packets_are_one_packet_error(packet):
    with pytest.raises(PacketError):
        parse_packet(packet)


def test_a_full_datagram_fits_the_receive_buffer():
    assert MAX_DATAGRAM >= 65_507  # the largest UDP payload over IPv4
    big = bundle(*[message("/p", 2)] * 5000)
    assert len(big) > 60_000 and len(parse_packet(big)) == 5000


def test_show_cuts_long_values():
    assert len(show("\x07" * 8000)) < 80 and show("ab") == "'ab'"


# ---- paths ----------------------------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "ok.mid").write_bytes(b"MThd")
    (outside / "secret.mid").write_bytes(b"MThd")
    (allowed / "link.mid").symlink_to(outside / "secret.mid")
    os.mkfifo(allowed / "fifo.mid")
    return allowed, outside


def test_confine_follows_links_and_dots_and_refuses_leaving(tree):
    allowed, outside = tree
    dirs = resolve_dirs([allowed])
    assert confine("ok.mid", dirs, "no") == os.path.realpath(allowed / "ok.mid")
    assert confine(str(allowed / "sub" / ".." / "ok.mid"), dirs, "no").endswith("ok.mid")
    for text in ("link.mid", "../outside/secret.mid", str(outside / "secret.mid"), "missing.mid", ".", "",
                 "x" * (MAX_PATH_CHARS + 1), "a/" * 3000, "/etc/passwd"):
        with pytest.raises(Refused) as refused:
            confine(text, dirs, "the one refusal")
        assert str(refused.value) == "the one refusal"


def test_reading_a_fifo_or_device_never_blocks(tree):
    allowed, _ = tree
    started = time.perf_counter()
    for path in (str(allowed / "fifo.mid"), "/dev/zero", "/dev/stdin"):
        with pytest.raises(Refused):
            read_regular_file(path, 1024, "no")
    assert time.perf_counter() - started < 0.5
    assert read_regular_file(str(allowed / "ok.mid"), 1024, "no") == b"MThd"
    (allowed / "big.mid").write_bytes(b"x" * 2048)
    with pytest.raises(Refused):
        read_regular_file(str(allowed / "big.mid"), 1024, "no")


# ---- replies ------------------------------------------------------------------------------------
@pytest.fixture
def listeners():
    socks = []

    def make(host: str = "127.0.0.1") -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        s.settimeout(0.2)
        socks.append(s)
        return s

    yield make
    for s in socks:
        s.close()


def drain(sock: socket.socket) -> list[bytes]:
    got = []
    try:
        while True:
            got.append(sock.recv(65536))
    except TimeoutError:
        return got


def test_replies_reach_the_fixed_address_and_live_subscribers_only(listeners):
    fixed, subscriber, stranger = listeners("127.0.0.2"), listeners(), listeners()
    clock = FakeClock()
    replier = Replier(TYPES, "/e", "127.0.0.2", fixed.getsockname()[1], clock=clock)
    try:
        me = subscriber.getsockname()
        replier.send("/s", "x", 1, host=stranger.getsockname())  # not subscribed, not the fixed host
        assert drain(stranger) == [] and drain(fixed) == []
        replier.send("/s", "x", 1, host=("127.0.0.2", 5555))  # the fixed host: to the fixed port
        assert len(drain(fixed)) == 1
        assert replier.subscribe(me, me[1], 2.0) == "subscribed"
        replier.send("/s", "x", 1, host=me)
        assert len(drain(subscriber)) == 1
        replier.send("/g", 7)  # gen/*: every target, once each
        assert len(drain(subscriber)) == 1 and len(drain(fixed)) == 1 and drain(stranger) == []
        clock.now += 2.5  # expired
        replier.send("/s", "x", 1, host=me)
        replier.send("/g", 7)
        assert drain(subscriber) == []
    finally:
        replier.close()


def test_a_subscribe_confirmation_and_a_variation_go_where_docs_osc_md_says(listeners):
    """As the daemon sends them, in the request's packet: the /subscribe confirmation (a status) goes to the
    subscription just made, even from the fixed reply host (whose ordinary replies go to the fixed address); a
    /variation phrase, the packet's answer, goes to every target, not only the asker."""
    fixed, new_port, own = listeners("127.0.0.2"), listeners("127.0.0.2"), listeners()
    replier = Replier(TYPES, "/e", "127.0.0.2", fixed.getsockname()[1], clock=FakeClock())
    try:
        sender = ("127.0.0.2", 40000)  # Max's udpsend: a random source port on the fixed reply host
        with replier.packet(sender):
            assert replier.subscribe(sender, new_port.getsockname()[1], 60.0) == "subscribed"
            replier.send("/s", "ok", 1, to=new_port.getsockname())
        assert len(drain(new_port)) == 1 and drain(fixed) == []
        with replier.packet(sender):
            replier.send("/s", "ok", 1, host=sender)  # an ordinary reply to the fixed host: the fixed address
        assert len(drain(fixed)) == 1 and drain(new_port) == []
        me = own.getsockname()
        with replier.packet(me):
            assert replier.subscribe(me, me[1], 60.0) == "subscribed"
            replier.answer(lambda: replier.send("/g", 3))  # what /musicbridge/variation answers with
        assert len(drain(fixed)) == 1 and len(drain(new_port)) == 1 and len(drain(own)) == 1
    finally:
        replier.close()


def test_subscriptions_are_bounded_and_renewable():
    clock = FakeClock()
    replier = Replier(TYPES, "/e", "127.0.0.1", 9, clock=clock)
    try:
        for port in range(1, MAX_SUBSCRIBERS + 1):
            assert replier.subscribe(("10.0.0.1", 1), port, 10) == "subscribed"
        assert replier.subscribe(("10.0.0.1", 1), 999, 10) == "full"
        assert replier.subscribe(("10.0.0.1", 1), 1, 10) == "subscribed"  # renewing always works
        assert replier.subscribe(("10.0.0.1", 1), 2, 0) == "unsubscribed"
        assert replier.subscribe(("10.0.0.1", 1), 999, 10) == "subscribed"
        clock.now += 11
        assert replier.targets() == [("127.0.0.1", 9)]
    finally:
        replier.close()


def test_one_reply_per_packet_and_errors_clipped(listeners):
    fixed = listeners()
    replier = Replier(TYPES, "/e", "127.0.0.1", fixed.getsockname()[1])
    client = ("127.0.0.1", 40000)
    try:
        with replier.packet(client) as packet:
            packet.messages = 1020
            for k in range(1020):
                replier.error("unknown_address", f"unknown address /{k}" + "x" * 8000, client)
        (reply,) = drain(fixed)
        assert len(reply) < MAX_ERROR_CHARS + 64 and b"1020 of 1020" in reply
        with replier.packet(client):
            replier.send("/s", "first", 1, host=client)
            replier.send("/s", "last", 2, host=client)
        (reply,) = drain(fixed)
        assert b"last" in reply  # the last answer asked for
    finally:
        replier.close()


def test_error_replies_and_log_lines_are_rate_limited(listeners, caplog):
    fixed = listeners()
    clock = FakeClock()
    replier = Replier(TYPES, "/e", "127.0.0.1", fixed.getsockname()[1], clock=clock)
    try:
        with caplog.at_level(logging.WARNING, logger="musicbridge.bridge.replies"):
            for _ in range(500):
                replier.error("bad_arguments", "malformed", ("127.0.0.1", 1))
            clock.now += 1.0
            replier.error("bad_arguments", "malformed", ("127.0.0.1", 1))
        assert 20 <= len(drain(fixed)) <= 41
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) <= 22 and any("suppressed 490" in line for line in lines)
    finally:
        replier.close()


def test_token_bucket_refills_at_its_rate():
    clock = FakeClock()
    bucket = TokenBucket(10, 5, clock)
    assert sum(bucket.take() for _ in range(100)) == 5
    clock.now += 0.5
    assert sum(bucket.take() for _ in range(100)) == 5  # capped at the burst
    log = LimitedLog(logging.getLogger("t"), 1, 1, clock)
    assert log.warning("a") is True and log.warning("b") is False


# ---- models ---------------------------------------------------------------------------------------
def model_folder(path):
    path.mkdir(parents=True)
    (path / "model.json").write_text("{}")
    (path / "graph.onnx").write_bytes(b"x")
    return path


@pytest.fixture
def models(tmp_path):
    root, outside = tmp_path / "models", tmp_path / "outside"
    for name in ("a", "b", "c", "d"):
        model_folder(root / name)
    model_folder(outside / "m")
    (root / "escape").symlink_to(outside / "m")
    model_folder(root / "filelink")
    (root / "filelink" / "graph.onnx").unlink()
    (root / "filelink" / "graph.onnx").symlink_to(outside / "m" / "graph.onnx")
    (root / "notamodel").mkdir()
    loads = []

    def loader(spec):
        loads.append(spec)
        if "bad" in spec:
            raise ModelLoadError(f"cannot load model {spec!r}: {spec}/graph.onnx is corrupt")
        return SimpleNamespace(path=spec)

    return ModelStore([str(root)], loader=loader), loads, root, outside


def test_model_paths_are_refused_uniformly(models):
    store, loads, root, outside = models
    texts = set()
    for text in ("escape", "filelink", "..", "../outside/m", str(outside / "m"), "nope", "notamodel", "",
                 "m" * 5000, str(root)):
        with pytest.raises(RefusedPath) as refused:
            store.resolve(text)
        texts.add(str(refused.value).replace(show(text), "<>", 1))
    assert len(texts) == 1 and str(root) not in texts.pop()
    assert loads == []


def test_loaded_models_are_reused_and_the_least_recently_used_evicted(models):
    store, loads, root, _ = models
    store.switch(store.resolve("a"))
    store.switch(store.resolve(str(root / "a")))  # the same folder by its path: no second load
    store.switch(store.resolve("a"))
    assert len(loads) == 1 and store.active_name == "a"
    for name in ("b", "c", "d"):
        store.switch(store.resolve(name))
    assert store.active_name == "d" and len(store.models) == 3 and "a" not in {e.name for e in store.models.values()}
    store.switch(store.resolve("b"))
    assert len(loads) == 4  # b was still loaded


def test_load_errors_show_no_absolute_paths(models):
    store, _, root, _ = models
    model_folder(root / "bad")
    with pytest.raises(ModelLoadError) as failed:
        store.switch(store.resolve("bad"))
    assert "bad" in str(failed.value) and str(root) not in str(failed.value)


def test_one_load_worker_newest_request_wins(models):
    store, loads, _, _ = models
    gate = threading.Event()
    slow = store.loader
    store.loader = lambda spec: (gate.wait(5), slow(spec))[1]
    done, dropped = [], []
    worker = LoadWorker(store, lambda r, before, after: done.append(r.text), lambda r, m: done.append(m),
                        lambda r: dropped.append(r.text))
    worker.start()
    try:
        threads = threading.active_count()
        worker.submit(LoadRequest("a", store.resolve("a")))
        deadline = time.monotonic() + 5
        while worker.mailbox.waiting and time.monotonic() < deadline:  # the worker has taken it
            time.sleep(0.005)
        for name in ("b", "c", "d", "a", "c"):
            worker.submit(LoadRequest(name, store.resolve(name)))
        assert threading.active_count() == threads  # no thread per request
        gate.set()
        deadline = time.monotonic() + 5
        while len(done) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert done == ["a", "c"] and dropped == ["b", "c", "d", "a"]
        assert store.active_name == "c"
    finally:
        worker.stop()
