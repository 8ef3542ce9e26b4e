"""`serve --clock link` against a second, real Ableton Link peer in another process, on this machine.

The peer is this file run as a program (`python tests/test_link_clock.py peer BPM QUANTUM`): an aalink session
driven line by line over stdin ("state", "play", "stop", "tempo BPM", "quit"), answering each line with its
state as JSON: its beat at a perf_counter time, tempo, transport and peer count. perf_counter is the system's
monotonic clock, one timeline for every process, so the daemon's notes (arrival times in the test) and the
peer's beats compare directly: the checks are in beats.

Link finds peers by UDP multicast on every interface that is up, loopback included (two peers find each other
with only `lo` up: tried in a network namespace); a machine that blocks it fails the discovery wait with a
sentence saying so, never a skip.
"""

from __future__ import annotations

import asyncio
import json
import math
import queue
import subprocess
import sys
import threading
import time

import pytest

DISCOVERY_S = 20.0  # Link peers on one machine find each other in about a second
FOLLOW_S = 5.0  # a tempo or transport change reaches the other peer within this (typically a few ms)
PHASE_TOLERANCE_BEATS = 0.005  # in-process: the clock's beat vs the peer's, read at the same instant
# The daemon's notes through JACK are checked on the session's beats as the JACK tests check theirs
# (bridge_harness.assert_on_the_grid: the median note within half a clock tick, 90 % on their 16th);
# milliseconds: benchmarks.
TEMPO = 150.0


# ---- the second peer (this file run as a program) ----------------------------------------------------------
def _peer_state(link) -> dict:
    """The peer's state, its beat read between two perf_counter stamps (taken again when interrupted)."""
    for _ in range(10):
        before = time.perf_counter()
        beat = link.beat
        after = time.perf_counter()
        if after - before < 0.0005:
            break
    return {"t": (before + after) / 2, "beat": beat, "bpm": link.tempo, "playing": link.playing,
            "peers": link.num_peers}


async def _peer_main(bpm: float, quantum: float) -> None:
    from aalink import Link

    link = Link(bpm)
    link.quantum = quantum
    link.start_stop_sync_enabled = True  # as Live's "Start Stop Sync"
    link.enabled = True
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command, *args = line.split() or ["quit"]
        if command == "play":
            link.playing = True
        elif command == "stop":
            link.playing = False
        elif command == "tempo":
            link.tempo = float(args[0])
        elif command == "quit":
            link.enabled = False
            return
        print(json.dumps(_peer_state(link)), flush=True)


# ---- the test side ------------------------------------------------------------------------------------------
class LinkPeer:
    """The second peer's process, asked over its stdin; every wait is bounded and says what it waited for."""

    def __init__(self, bpm: float = 120.0, quantum: float = 4.0):
        self.process = subprocess.Popen([sys.executable, __file__, "peer", str(bpm), str(quantum)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, bufsize=1)
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ask("state", timeout=30.0)  # up and in its session

    def _read(self) -> None:
        for line in self.process.stdout:
            self.replies.put(json.loads(line))
        self.replies.put(None)

    def ask(self, command: str, timeout: float = 10.0) -> dict:
        """Send a command; returns the peer's state right after it."""
        try:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
            reply = self.replies.get(timeout=timeout)
        except (BrokenPipeError, queue.Empty):
            reply = None
        if reply is None:
            self.process.kill()
            raise AssertionError(f"the Link peer process did not answer {command!r} within {timeout:g} s: "
                                 f"{self.process.stderr.read()[-2000:]}")
        return reply

    def wait(self, predicate, what: str, timeout: float = FOLLOW_S) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.ask("state")
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"the Link peer never saw {what} within {timeout:g} s (last state {state})")
            time.sleep(0.02)

    @staticmethod
    def beat_at(t: float, state: dict) -> float:
        """The peer's beat at perf_counter time t, from a state read at the same tempo."""
        return state["beat"] + (t - state["t"]) * state["bpm"] / 60.0

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(5)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


@pytest.fixture
def link_peer():
    peers: list[LinkPeer] = []

    def make(bpm: float = 120.0, quantum: float = 4.0) -> LinkPeer:
        peers.append(LinkPeer(bpm, quantum))
        return peers[-1]

    yield make
    for peer in peers:
        peer.close()


def wait_until(predicate, what: str, timeout: float = FOLLOW_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def wait_for_discovery(peer: LinkPeer, our_peers) -> None:
    """Both sides see each other, or fail with what to look at."""
    try:
        peer.wait(lambda s: s["peers"] >= 1 and our_peers() >= 1, "the other peer", timeout=DISCOVERY_S)
    except AssertionError as error:
        raise AssertionError(
            f"two Link peers on this machine did not find each other within {DISCOVERY_S:g} s ({error}). Link "
            "discovers peers by UDP multicast to 224.76.78.75:20808 on every interface that is up, loopback "
            "included: check that an interface is up (`ip addr`) and that no firewall drops that traffic") from None


def phase_offset(beat: float, peer_beat: float, quantum: float) -> float:
    """beat − peer_beat folded into [−quantum/2, quantum/2): 0 when both are at the same phase of the quantum."""
    return (beat - peer_beat + quantum / 2) % quantum - quantum / 2


def test_link_clock_follows_a_peer_and_leads_it(link_peer):
    """Tempo, phase and start/stop, both ways, between the daemon's clock and a peer in another process."""
    from musicbridge.bridge.link_clock import LinkClock

    peer = link_peer(bpm=120.0, quantum=4.0)
    events: list[str] = []
    clock = LinkClock(bpm=120.0, quantum_bars=1, on_event=lambda kind, beat: events.append(kind))
    try:
        clock.start_internal(time.perf_counter())
        wait_for_discovery(peer, lambda: clock.peers)
        assert not clock.state(time.perf_counter())[0], "nobody started the session, yet the clock plays"

        peer.ask("play")
        wait_until(lambda: clock.playing, "the clock to start with the peer")
        peer.ask(f"tempo {TEMPO:g}")
        wait_until(lambda: clock.tempo() == pytest.approx(TEMPO), f"the clock to follow the peer to {TEMPO:g} bpm")
        offsets = []
        for _ in range(20):  # the same phase: at the instants the peer read its beat, the clock's beat agrees
            state = peer.ask("state")
            offsets.append(phase_offset(clock.beat_at(state["t"]), state["beat"], 4.0))
            time.sleep(0.02)
        assert max(map(abs, offsets)) < PHASE_TOLERANCE_BEATS, offsets

        clock.set_tempo(100.0, time.perf_counter())  # the clock leads: the peer follows
        peer.wait(lambda s: s["bpm"] == pytest.approx(100.0), "the clock's tempo of 100 bpm")
        clock.stop(time.perf_counter())
        peer.wait(lambda s: not s["playing"], "the clock's stop")
        wait_until(lambda: not clock.playing, "the clock to stop")
        now = time.perf_counter()
        assert clock.beat_at(now) == clock.beat_at(now + 10.0) and clock.time_at(0.0) is None  # it holds still
        clock.play(time.perf_counter())
        peer.wait(lambda s: s["playing"], "the clock's start")
        peer.ask("stop")
        wait_until(lambda: not clock.playing, "the clock to stop with the peer")
        assert events.count("start") == 2 and events.count("stop") == 2 and "tempo" in events, events
    finally:
        clock.close()
        clock.close()  # idempotent
    peer.wait(lambda s: s["peers"] == 0, "the clock leave the session")


def phase_errors(heard: list[tuple[float, int]], expected: list[tuple[float, int]], quantum: float,
                 window: tuple[float, float]) -> list[float]:
    """For every note the daemon meant to play (daemon beat, pitch) inside `window` (peer beats), how far from
    its place on the peer's timeline it was heard (peer beats; inf when it was not).

    Two peers' beat counts differ by whole quanta (only the phase is shared), so daemon beat b belongs at peer beat
    b + k·quantum for one k: the k that places the most notes is taken."""
    from bridge_harness import ON_STEP_BEATS  # not at the top: this file also runs as the peer's program

    def errors(k: int) -> list[float]:
        result = []
        for beat, pitch in expected:
            place = beat + k * quantum
            if window[0] <= place <= window[1]:
                near = [p - place for p, q in heard if q == pitch and abs(p - place) < ON_STEP_BEATS]
                result.append(min(near, key=abs) if near else math.inf)
        return result

    shifts = {round((p - b) / quantum) for p, q in heard for b, pitch in expected if q == pitch}
    assert shifts, "no note the daemon meant to play was heard"
    return max((errors(k) for k in shifts), key=lambda e: sum(map(math.isfinite, e)))


@pytest.mark.timeout(180)
def test_answers_land_on_the_link_sessions_phase(link_peer, jack_server, bridge_models, tmp_path):
    """The daemon on --clock link with a 2-bar quantum, a peer in another process leading: its answers sound on
    the session's 2-bar phase, it follows the peer's tempo and transport, and its own OSC transport leads."""
    from bridge_harness import ON_STEP_BEATS, Daemon, assert_on_the_grid
    from test_bridge_jack import Rig, assert_every_note_closed, played_notes

    quantum = 8.0
    peer = link_peer(bpm=120.0, quantum=quantum)
    stats = tmp_path / "stats.json"
    daemon = Daemon(["--midi-api", "jack", "--clock", "link", "--link-quantum", "2", "--mode", "sample",
                     "--model", str(bridge_models / "melody_a"), "--seed", "1", "--log-level", "debug",
                     "--stats-json", str(stats)])
    r = Rig(jack_server, daemon)
    try:
        wait_for_discovery(peer, lambda: int("Link: 1 other peer" in r.daemon.output()))
        assert r.osc.state()["playing"] == 0, "nobody started the session, yet the daemon plays"
        peer.ask(f"tempo {TEMPO:g}")
        peer.ask("play")
        wait_until(lambda: (lambda s: s["playing"] == 1 and s["bpm"] == pytest.approx(TEMPO))(r.osc.state()),
                   f"the daemon to play at {TEMPO:g} bpm with the peer")

        since = time.perf_counter()
        time.sleep(8.0)  # 20 beats
        until = time.perf_counter()
        state = peer.ask("state")  # the tempo has been TEMPO all along: one reading maps every time to a beat
        heard = [(peer.beat_at(t, state), pitch) for t, kind, _, pitch, _ in r.peer.notes(since)
                 if kind == "on" and t <= until]
        expected = [(beat, pitch) for beat, pitch, _ in played_notes(r.osc.phrases())]
        window = (peer.beat_at(since, state) + ON_STEP_BEATS, peer.beat_at(until, state) - ON_STEP_BEATS)
        errors = phase_errors(heard, expected, quantum, window)
        assert len(errors) >= 20, f"only {len(errors)} notes were meant to sound in 20 beats"
        assert_on_the_grid(errors)

        r.osc.send("/musicbridge/transport/tempo", 110.0)  # the daemon leads
        peer.wait(lambda s: s["bpm"] == pytest.approx(110.0), "the daemon's tempo of 110 bpm")
        peer.ask("stop")
        wait_until(lambda: r.osc.state()["playing"] == 0, "the daemon to stop with the peer")
        time.sleep(0.2)
        assert_every_note_closed(r.peer)
        r.osc.send("/musicbridge/transport/play")
        peer.wait(lambda s: s["playing"], "the daemon's start")
    finally:
        code = r.close()
    assert code == 0, r.daemon.output()
    summary = json.loads(stats.read_text())["link"]
    assert summary["peers"] == 1 and summary["quantum_bars"] == 2, summary
    assert "Link: 1 other peer in the session" in r.daemon.output()
    peer.wait(lambda s: s["peers"] == 0, "the daemon leave the session")


def test_clock_link_without_aalink_names_the_install_line(tmp_path):
    from test_cli_errors import assert_one_sentence, run_cli

    from musicbridge.cli_errors import USER_ERROR

    result = run_cli("serve", "--clock", "link", "--no-status", cwd=tmp_path, hide=("aalink",), tmp_path=tmp_path)
    assert_one_sentence(result, USER_ERROR, "--clock link needs aalink", "pip install 'musicbridge[link]'")


if __name__ == "__main__" and sys.argv[1:2] == ["peer"]:
    asyncio.run(_peer_main(float(sys.argv[2]), float(sys.argv[3])))
