"""`musicbridge serve` over OSC alone (real UDP on 127.0.0.1): modes, params, errors, answers, model switching.

The daemon runs with --midi-api auto where no MIDI system exists (no ALSA sequencer, and JACK_DEFAULT_SERVER
names a server that is not running), so these tests also cover the OSC-only fallback. One daemon serves the
module, but every test starts from its starting state, checked through a status reply (which carries every
param): `osc_rig` resets it over OSC, or starts a fresh daemon when it is not answering or holds what OSC cannot
reset; a daemon that dies during a test fails that test.
"""

from __future__ import annotations

import time
import uuid

import pytest
from bridge_harness import Daemon, OscPeer, wait_until

from musicbridge.bridge.config import PARAM_RANGES, Params

BPM = 240.0  # a bar per second keeps the tests short
BAR_S = 4 * 60.0 / BPM
MODEL = "melody_a"
DEFAULTS = Params()
NOTES = "notes"  # what a note targets: the capture buffer, seen as the answers it brings (no status field)
VARYING = ("last_latency_ms",)  # status fields that change by themselves


def starting_state() -> dict:
    """What the status reply of a fresh daemon of this module says (less VARYING): Params' defaults, the
    command line's tempo and model, no MIDI, no scale lock, empty slots."""
    return {"mode": DEFAULTS.mode, "bpm": BPM, "playing": 1, "model": MODEL, "midi": "off",
            **{name: getattr(DEFAULTS, name) for name in PARAM_RANGES}, "ending": DEFAULTS.ending, "scale": "off",
            "slots": "", "fallback": DEFAULTS.fallback}


def state(osc: OscPeer) -> dict:
    return {k: v for k, v in osc.state().items() if k not in VARYING}


class OscDaemon:
    """The module's daemon, restartable."""

    def __init__(self, models):
        self.models = models
        self.daemon: Daemon | None = None
        self.osc: OscPeer | None = None

    def start(self) -> None:
        env = {"JACK_DEFAULT_SERVER": f"mbtest-none-{uuid.uuid4().hex[:8]}", "JACK_NO_START_SERVER": "1"}
        self.daemon = Daemon(["--midi-api", "auto", "--clock", "internal", "--bpm", str(BPM), "--seed", "3",
                              "--model", str(self.models / MODEL), "--models-dir", str(self.models)], env=env)
        self.osc = OscPeer(self.daemon.osc_port, self.daemon.reply_port)
        self.daemon.start()
        self.daemon.wait_ready(self.osc)

    def stop(self) -> int:
        try:
            return self.daemon.stop()
        finally:
            self.osc.close()

    def alive(self) -> bool:
        return self.daemon.process.poll() is None

    def reset(self) -> dict | None:
        """Everything OSC can set back to the starting state; the state then reported (None: no answer)."""
        osc = self.osc
        osc.send("/musicbridge/mode", DEFAULTS.mode)
        for name in PARAM_RANGES:
            osc.send(f"/musicbridge/param/{name}", getattr(DEFAULTS, name))
        osc.send("/musicbridge/param/ending", DEFAULTS.ending)
        osc.send("/musicbridge/param/fallback", DEFAULTS.fallback)
        osc.send("/musicbridge/param/scale", "off")
        osc.send("/musicbridge/transport/stop")  # forgets what was played (the capture buffer)
        osc.send("/musicbridge/transport/tempo", BPM)
        osc.send("/musicbridge/transport/play")
        try:
            if osc.state()["model"] != MODEL:
                osc.send("/musicbridge/model/load", MODEL)
                wait_until(lambda: osc.state()["model"] == MODEL, 10, what=f"{MODEL} active")
            return state(osc)
        except TimeoutError:
            return None


@pytest.fixture(scope="module")
def _osc_daemon(bridge_models):
    rig = OscDaemon(bridge_models)
    rig.start()
    yield rig
    assert rig.stop() == 0, rig.daemon.output()
    assert "summary" in rig.daemon.output()


@pytest.fixture
def osc_rig(_osc_daemon):
    """(daemon, OSC peer) at the starting state; a test's leftovers never reach the next one."""
    rig = _osc_daemon
    if not rig.alive() or rig.reset() != starting_state():  # e.g. filled capture slots: no message empties them
        rig.stop()
        rig.start()
    assert rig.reset() == starting_state()
    yield rig.daemon, rig.osc
    assert rig.alive(), f"the daemon died during the test:\n{rig.daemon.output()}"


def errors_since(osc: OscPeer, since: float, count: int = 1, timeout: float = 5.0):
    return [args for _, _, args in osc.wait_for("/musicbridge/error", since, timeout, count)]


def test_osc_only_fallback_says_how_to_enable_midi(osc_rig):
    daemon, osc = osc_rig
    assert osc.state()["midi"] == "off"
    out = daemon.output()
    assert "OSC only" in out and "jack" in out.lower()  # a plain message, with how to enable MIDI


@pytest.mark.parametrize(("address", "args", "code", "targets"), [
    ("/musicbridge/nope", [], "unknown_address", ()),
    ("/musicbridge/param/*", [1.0], "unknown_address", tuple(PARAM_RANGES)),  # patterns are not fanned out
    ("/musicbridge/param/temperature", [5.0], "out_of_range", ("temperature",)),
    ("/musicbridge/param/temperature", [float("nan")], "out_of_range", ("temperature",)),
    ("/musicbridge/param/bars", [0], "out_of_range", ("bars",)),
    ("/musicbridge/param/bars", [2.5], "bad_arguments", ("bars",)),
    ("/musicbridge/param/bars", ["two"], "bad_arguments", ("bars",)),
    ("/musicbridge/param/variations", [], "bad_arguments", ("variations",)),
    ("/musicbridge/param/novelty", [1.0, 2.0], "bad_arguments", ("novelty",)),
    ("/musicbridge/mode", ["jazz"], "out_of_range", ("mode",)),
    ("/musicbridge/mode", [3], "bad_arguments", ("mode",)),
    ("/musicbridge/note", [128, 100], "out_of_range", (NOTES,)),
    ("/musicbridge/note", [60, 100, 17], "out_of_range", (NOTES,)),
    ("/musicbridge/transport/tempo", [10.0], "out_of_range", ("bpm",)),
    ("/musicbridge/capture", ["c"], "out_of_range", ("slots",)),
    ("/musicbridge/capture/file", ["a", "/nonexistent.mid"], "refused", ("slots",)),  # outside or missing: alike
    ("/musicbridge/model/load", ["/etc"], "refused", ("model",)),
    ("/musicbridge/model/load", ["../../../etc"], "refused", ("model",)),
    ("/musicbridge/model/load", ["no_such_model"], "refused", ("model",)),  # missing or outside: the same refusal
])
def test_bad_input_is_answered_and_changes_nothing(osc_rig, address, args, code, targets):
    _, osc = osc_rig
    before = state(osc)
    assert set(targets) <= {*before, NOTES}  # what the message would change is looked at below
    since = time.perf_counter()
    osc.send(address, *args)
    (error,) = errors_since(osc, since)
    assert error[0] == code and isinstance(error[1], str) and error[1]
    assert state(osc) == before  # every param, the transport, the model and the slots
    if NOTES in targets:  # mode continue answers every bar in which a note was played (or is still held)
        time.sleep(1.5 * BAR_S)
        assert not osc.messages("/musicbridge/gen/begin", since)


def test_malformed_packets_are_answered(osc_rig):
    _, osc = osc_rig
    since = time.perf_counter()
    osc.send_raw(b"not osc at all")
    osc.send_raw(b"/musicbridge/mode\x00\x00\x00,s\x00\x00abc")  # truncated string argument
    osc.send_raw(b"/musicbridge/param/bars\x00,b\x00\x00\x00\x00\x00\x04abcd")  # a blob
    codes = [e[0] for e in errors_since(osc, since, count=3)]
    assert codes == ["bad_arguments"] * 3
    assert state(osc) == starting_state()


def test_params_and_modes_are_applied(osc_rig):
    _, osc = osc_rig
    wanted = {"temperature": 0.5, "bars": 1, "novelty": 0.0, "variations": 3, "silence": 1.0, "steps": 4,
              "ending": "pingpong", "scale": "D:dorian", "fallback": "hold"}
    assert all(value != starting_state()[name] for name, value in wanted.items())  # each one shows a change
    since = time.perf_counter()
    for name, value in wanted.items():
        sent = float(value) if name == "variations" else value  # an integral float is an int (Pd sends floats)
        osc.send(f"/musicbridge/param/{name}", sent)
    applied = state(osc)
    assert {name: applied[name] for name in wanted} == wanted
    for mode in ("call-response", "interpolate", "sample", "loop", "mutate", "off", "continue"):
        osc.send("/musicbridge/mode", mode)
        assert osc.state()["mode"] == mode
    assert not osc.messages("/musicbridge/error", since)


def play_phrase(osc: OscPeer, notes: int = 8, pitch: int = 60) -> None:
    """Eighth notes at 240 bpm from the OSC peer, played in real time."""
    for k in range(notes):
        osc.send("/musicbridge/note", pitch + k % 5, 100)
        time.sleep(0.1)
        osc.send("/musicbridge/note", pitch + k % 5, 0, 1)
        time.sleep(0.025)


def complete_phrases(osc: OscPeer, since: float) -> list[dict]:
    return [p for p in osc.phrases(since).values() if p["begin"] and p["end"]]


def test_notes_over_osc_are_answered_with_a_gen_sequence(osc_rig):
    _, osc = osc_rig
    osc.send("/musicbridge/mode", "call-response")
    since = time.perf_counter()
    play_phrase(osc)
    phrases = wait_until(lambda: complete_phrases(osc, since), 6, what="an answer")
    phrase = phrases[0]
    assert phrase["begin"][1] == 2  # n_bars = the bars parameter
    assert phrase["begin"][2] % 4 == 0  # starts on a bar line
    assert phrase["end"][1] == len(phrase["notes"]) > 0
    ids = {phrase["begin"][0], phrase["end"][0]} | {n[0] for n in phrase["notes"]}
    assert len(ids) == 1
    # call-response answers once per phrase: no second answer without new notes
    time.sleep(2.5)
    assert len(complete_phrases(osc, since)) == 1


def test_generate_variations_and_capture_slots(osc_rig):
    _, osc = osc_rig
    osc.send("/musicbridge/mode", "off")
    since = time.perf_counter()
    osc.send("/musicbridge/generate")
    assert errors_since(osc, since)[0][0] == "not_ready"  # off generates nothing
    osc.send("/musicbridge/param/variations", 4)
    osc.send("/musicbridge/mode", "sample")
    since = time.perf_counter()
    osc.send("/musicbridge/generate")
    first = wait_until(lambda: complete_phrases(osc, since), 5, what="a generated phrase")[0]
    since = time.perf_counter()
    osc.send("/musicbridge/variation", 3)
    other = wait_until(lambda: complete_phrases(osc, since), 5, what="variation 3")[0]
    assert other["begin"][0] > first["begin"][0]
    osc.send("/musicbridge/variation", 15)
    assert errors_since(osc, since)[0][0] == "out_of_range"
    osc.send("/musicbridge/param/variations", 1)
    # Interpolate between two captured phrases.
    osc.send("/musicbridge/mode", "off")
    osc.send("/musicbridge/param/steps", 3)
    for slot, pitch in (("a", 60), ("b", 72)):
        play_phrase(osc, notes=8, pitch=pitch)
        osc.send("/musicbridge/capture", slot)
    assert osc.state()["slots"] == "ab"
    since = time.perf_counter()
    osc.send("/musicbridge/mode", "interpolate")
    phrases = wait_until(lambda: (lambda p: p if len(p) >= 2 else None)(complete_phrases(osc, since)), 8,
                         what="two interpolation phrases")
    assert all(p["begin"][1] == 2 for p in phrases)
    assert not osc.messages("/musicbridge/error", since)


def test_model_switching_and_a_failing_load(osc_rig):
    _, osc = osc_rig
    since = time.perf_counter()
    osc.send("/musicbridge/model/load", "melody_b")
    status = osc.wait_for("/musicbridge/status", since, 10)[-1][2]
    assert status[3] == "melody_b"  # the reply that follows a load
    since = time.perf_counter()
    osc.send("/musicbridge/model/load", "broken")
    error = errors_since(osc, since, timeout=10)[0]
    assert error[0] == "load_failed" and "broken" in error[1]
    assert osc.state()["model"] == "melody_b"  # the old model stays active, and it still answers
    osc.send("/musicbridge/mode", "sample")
    since = time.perf_counter()
    osc.send("/musicbridge/generate")
    wait_until(lambda: complete_phrases(osc, since), 5, what="an answer after the failed load")


def test_transport_over_osc(osc_rig):
    _, osc = osc_rig
    osc.send("/musicbridge/transport/stop")
    assert osc.state()["playing"] == 0
    osc.send("/musicbridge/transport/tempo", 100.0)
    osc.send("/musicbridge/transport/position", 64.0)
    osc.send("/musicbridge/transport/play")
    status = osc.state()
    assert status["bpm"] == pytest.approx(100.0) and status["playing"] == 1


def test_loop_repeats_the_last_answer_and_mutate_varies_it(osc_rig):
    _, osc = osc_rig
    osc.send("/musicbridge/mode", "sample")
    since = time.perf_counter()
    osc.send("/musicbridge/generate")
    wait_until(lambda: complete_phrases(osc, since), 5, what="a sample")
    osc.send("/musicbridge/mode", "loop")
    since = time.perf_counter()
    loops = wait_until(lambda: (lambda p: p if len(p) >= 2 else None)(complete_phrases(osc, since)), 10,
                       what="two loop phrases")
    first, second = sorted(loops, key=lambda p: p["begin"][0])[:2]
    assert [n[1:] for n in first["notes"]] == [n[1:] for n in second["notes"]]  # the same phrase again
    assert second["begin"][2] - first["begin"][2] == 4 * first["begin"][1]  # back to back
    osc.send("/musicbridge/mode", "mutate")
    since = time.perf_counter()
    mutated = wait_until(lambda: complete_phrases(osc, since), 10, what="a mutation")[0]
    assert mutated["end"][1] == len(mutated["notes"]) > 0
    assert not osc.messages("/musicbridge/error", since)


def test_osc_clock_waits_for_play(bridge_models):
    env = {"JACK_DEFAULT_SERVER": f"mbtest-none-{uuid.uuid4().hex[:8]}"}
    daemon = Daemon(["--clock", "osc", "--model", str(bridge_models / "melody_a"), "--mode", "sample"], env=env)
    osc = OscPeer(daemon.osc_port, daemon.reply_port)
    daemon.start()
    try:
        assert daemon.wait_ready(osc)[2] == 0  # stopped until the DAW says play
        since = time.perf_counter()
        time.sleep(1.0)
        assert not complete_phrases(osc, since)  # generation is paused while stopped
        osc.send("/musicbridge/transport/tempo", 240.0)
        osc.send("/musicbridge/transport/position", 0.0)
        osc.send("/musicbridge/transport/play")
        assert osc.status()[2] == 1
        phrase = wait_until(lambda: complete_phrases(osc, since), 5, what="a phrase once playing")[0]
        assert phrase["begin"][2] == 4.0  # from the position the DAW gave: the first bar line after it
    finally:
        assert daemon.stop() == 0
        osc.close()


def test_a_drums_model_answers_drum_notes(tmp_path):
    import torch

    from musicbridge.codecs import DRUM_CLASSES
    from musicbridge.export.exporter import export_model
    from musicbridge.export.testing import tiny_model

    torch.set_num_threads(1)
    model = tiny_model("drums", bars=2, seed=4)
    with torch.no_grad():  # busy patterns: kick, snare, hat and kick+hat steps are likely
        model.decoder.head.bias.fill_(-6.0)
        model.decoder.head.bias[[0, 1, 2, 4, 5]] = 3.0
    export_model(model, tmp_path / "drums", preset="tiny", dataset_hash="0" * 64)
    env = {"JACK_DEFAULT_SERVER": f"mbtest-none-{uuid.uuid4().hex[:8]}"}
    daemon = Daemon(["--clock", "internal", "--bpm", str(BPM), "--model", str(tmp_path / "drums")], env=env)
    osc = OscPeer(daemon.osc_port, daemon.reply_port)
    daemon.start()
    try:
        daemon.wait_ready(osc)
        since = time.perf_counter()
        for k in range(8):  # kick / hat / snare / hat on channel 10
            pitch = (36, 42, 38, 42)[k % 4]
            osc.send("/musicbridge/note", pitch, 100, 10)
            time.sleep(0.06)
            osc.send("/musicbridge/note", pitch, 0, 10)
            time.sleep(0.065)
        phrase = wait_until(lambda: complete_phrases(osc, since), 6, what="a drum answer")[0]
        pitches = {n[1] for n in phrase["notes"]}
        assert pitches and pitches <= {pitch for _, pitch, _ in DRUM_CLASSES}
        assert all(n[4] == 0.25 for n in phrase["notes"])  # drum hits last one step
    finally:
        assert daemon.stop() == 0
        osc.close()
