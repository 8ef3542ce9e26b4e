"""The scale lock: the spec parser, the logit mask, the mask inside exported sampler graphs (and folded into the
noise for graphs without it), locked sampling on the shipped and a fresh model, `--scale` on the commands,
/musicbridge/param/scale over real UDP, and the Max for Live device's Live scale script (run by node)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from bridge_harness import Daemon, OscPeer
from typer.testing import CliRunner

from musicbridge import scales
from musicbridge.codecs import get_codec
from musicbridge.export import musicvae
from musicbridge.export.exporter import export_model
from musicbridge.export.graph import FLOAT
from musicbridge.export.testing import export_tiny, tiny_model
from musicbridge.runtime import MASK_INPUT, load_model
from musicbridge.scales import MODES, NOTE_NAMES, ScaleError, logit_mask, out_of_scale_onsets, parse_scale

torch.set_num_threads(1)

MELODY = get_codec("melody")
LOCKED_SAMPLES = 1000
PATCHES = Path(__file__).resolve().parents[1] / "max_patches"


# ---------------------------------------------------------------------------------------------- the parser
@pytest.mark.parametrize(("spec", "pitch_classes", "name"), [
    ("D:dorian", {2, 4, 5, 7, 9, 11, 0}, "D dorian"),
    ("d dorian", {2, 4, 5, 7, 9, 11, 0}, "D dorian"),
    ("C:major", {0, 2, 4, 5, 7, 9, 11}, "C major"),
    ("A:minor", {9, 11, 0, 2, 4, 5, 7}, "A minor"),
    ("A:natural-minor", {9, 11, 0, 2, 4, 5, 7}, "A minor"),
    ("A harmonic minor", {9, 11, 0, 2, 4, 5, 8}, "A harmonic minor"),
    ("A:melodic_minor", {9, 11, 0, 2, 4, 6, 8}, "A melodic minor"),
    ("C:pentatonic", {0, 2, 4, 7, 9}, "C major pentatonic"),
    ("E:minor_pentatonic", {4, 7, 9, 11, 2}, "E minor pentatonic"),
    ("Bb:blues", {10, 1, 3, 4, 5, 8}, "Bb blues"),
    ("F#:lydian", {6, 8, 10, 0, 1, 3, 5}, "F# lydian"),
    ("E♭:mixolydian", {3, 5, 7, 8, 10, 0, 1}, "Eb mixolydian"),
    ("chromatic", set(range(12)), "C chromatic"),
    ("0,2,4,7,9", {0, 2, 4, 7, 9}, "C major pentatonic"),
    ("C,D,E,G,A", {0, 2, 4, 7, 9}, "C major pentatonic"),
    ("2,4,5,7,9,11,0", {2, 4, 5, 7, 9, 11, 0}, "D dorian"),  # root first, as the device sends Live's scale
    ("0 1 6", {0, 1, 6}, "C C# F#"),
    ("C,", {0}, "C"),
])
def test_specs_parse_to_pitch_classes_and_name_back(spec, pitch_classes, name):
    scale = parse_scale(spec)
    assert scale.pitch_classes == frozenset(pitch_classes)
    assert scale.name == str(scale) == name
    assert parse_scale(scale.spec) == scale  # the canonical spec reads back


@pytest.mark.parametrize("root", range(12))
def test_every_mode_from_every_root_round_trips(root):
    for mode, steps in MODES.items():
        scale = parse_scale(f"{NOTE_NAMES[root]}:{mode}")
        assert scale.root == root and scale.pitch_classes == {(root + s) % 12 for s in steps}
        assert scale.degrees[0] == root and len(scale.degrees) == len(steps)
        # The pitch classes alone, root first, are the same scale and get a mode name again.
        again = parse_scale(",".join(str(pc) for pc in scale.degrees))
        assert again == scale and again.mode is not None


@pytest.mark.parametrize("spec", [None, "", "  ", "off", "OFF", "none"])
def test_unlock_words_mean_no_scale(spec):
    assert parse_scale(spec) is None


@pytest.mark.parametrize(("spec", "says"), [
    ("D:dorain", "known modes: major, minor, harmonic_minor"),
    ("H:major", "is not a note name"),
    ("C", "names a root but no mode"),
    ("dorian", "names a mode but no root"),
    ("0,2,12", "'12' is not a pitch class"),
    ("jazz hands", "write ROOT:MODE like D:dorian"),
])
def test_bad_specs_say_what_is_accepted(spec, says):
    with pytest.raises(ScaleError, match=says):
        parse_scale(spec)


# ---------------------------------------------------------------------------------------------- the mask
def test_mask_locks_exactly_the_note_ons_outside_the_scale():
    scale = parse_scale("D:dorian")
    mask = logit_mask(MELODY, scale)
    assert mask.shape == (MELODY.vocab_size,) and mask.dtype == np.float32 and np.isfinite(mask).all()
    assert mask[MELODY.HOLD] == mask[MELODY.NOTE_OFF] == 0  # every step keeps an allowed token
    for token in range(MELODY.FIRST_NOTE_ON, MELODY.vocab_size):
        pitch = token - MELODY.FIRST_NOTE_ON + MELODY.min_pitch
        assert mask[token] == (0 if pitch % 12 in scale.pitch_classes else scales.LOCKED), pitch
    assert not logit_mask(MELODY, None).any() and not logit_mask(MELODY, "chromatic").any()
    assert np.array_equal(logit_mask(MELODY, [2, 4, 5, 7, 9, 11, 0]), mask)  # pitch classes work as well


def test_drums_refuse_a_scale():
    with pytest.raises(ScaleError, match="no pitches"):
        logit_mask(get_codec("drums"), "C:major")
    assert not logit_mask(get_codec("drums"), None).any()  # unlocked is fine


def test_out_of_scale_count_sees_notes_and_ignores_holds():
    tokens = np.array([[0, 1, 60 - 19, 0, 61 - 19, 1], [62 - 19, 0, 0, 0, 0, 0]])
    assert out_of_scale_onsets(MELODY, tokens, "C:major").tolist() == [1, 0]


# ---------------------------------------------------------------------------------------------- exported graphs
@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A tiny flat melody model exported now, fp32 and int8."""
    return export_tiny(tmp_path_factory.mktemp("fresh"), variants=("int8",))


def _sampler_inputs(path: Path) -> dict[str, tuple]:
    import onnx

    graph = onnx.load(path).graph
    tensors = {i.name: i.type.tensor_type for i in graph.input}
    return {name: (t.elem_type, [d.dim_param or d.dim_value for d in t.shape.dim]) for name, t in tensors.items()}


def test_newly_exported_samplers_have_the_mask_input(fresh, tmp_path):
    for name in ("sampler.onnx", "sampler.int8.onnx"):
        inputs = _sampler_inputs(fresh / name)
        assert list(inputs) == ["z", "noise", MASK_INPUT]
        assert inputs[MASK_INPUT] == (FLOAT, [MELODY.vocab_size])
    hierarchical = export_tiny(tmp_path / "hier", hierarchical=True, bars=4)
    assert _sampler_inputs(hierarchical / "sampler.onnx")[MASK_INPUT] == (FLOAT, [MELODY.vocab_size])
    from musicbridge.models import build_model, get_preset

    tiny = {"d_model": 16, "heads": 2, "ff_size": 32, "enc_layers": 1, "dec_layers": 1, "z_size": 8, "dropout": 0.0}
    transformer = build_model(get_preset("mel_2bar_transformer", tiny).model).eval()
    export_model(transformer, tmp_path / "transformer", preset="tiny")
    assert _sampler_inputs(tmp_path / "transformer" / "sampler.onnx")[MASK_INPUT] == (FLOAT, [MELODY.vocab_size])
    locked = load_model(tmp_path / "transformer").sample_prior(200, temperature=1.5, seed=0, scale="E:blues")
    assert out_of_scale_onsets(MELODY, locked, "E:blues").sum() == 0


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_locked_samples_of_a_fresh_export_never_leave_the_scale(fresh, variant):
    model = load_model(fresh, variant=variant)
    assert model.session("sampler").get_inputs()[2].name == MASK_INPUT
    unlocked = model.sample_prior(LOCKED_SAMPLES, temperature=1.0, seed=4)
    assert out_of_scale_onsets(MELODY, unlocked, "D:dorian").sum() > 0  # there is something to lock out
    for spec, temperature in (("D:dorian", 1.0), ("A:minor_pentatonic", 2.0), ("F#,", 1.0)):
        locked = model.sample_prior(LOCKED_SAMPLES, temperature=temperature, seed=4, scale=spec)
        assert (locked >= MELODY.FIRST_NOTE_ON).sum() > LOCKED_SAMPLES  # it still plays notes
        assert out_of_scale_onsets(MELODY, locked, spec).sum() == 0, spec
    answers = model.continue_(unlocked[:8], bars=5, variations=2, seed=1, scale="D:dorian")
    assert out_of_scale_onsets(MELODY, answers, "D:dorian").sum() == 0  # chained phrases too
    path = model.interpolate(unlocked[0], unlocked[1], 6, scale="D:dorian")
    assert out_of_scale_onsets(MELODY, path[1:-1], "D:dorian").sum() == 0


def test_locked_samples_of_the_shipped_model_never_leave_the_scale():
    model = load_model("mel_2bar")
    unlocked = model.sample_prior(LOCKED_SAMPLES, temperature=1.0, seed=11)
    assert (out_of_scale_onsets(MELODY, unlocked, "D:dorian") > 0).mean() > 0.2  # most phrases leave it unlocked
    for spec in ("D:dorian", "C:major_pentatonic"):
        locked = model.sample_prior(LOCKED_SAMPLES, temperature=1.0, seed=11, scale=spec)
        assert (locked >= MELODY.FIRST_NOTE_ON).sum() > 2 * LOCKED_SAMPLES
        assert out_of_scale_onsets(MELODY, locked, spec).sum() == 0, spec
    # A zero mask changes nothing: chromatic (nothing locked) gives the unlocked samples bit for bit.
    assert np.array_equal(model.sample_prior(LOCKED_SAMPLES, temperature=1.0, seed=11, scale="chromatic"), unlocked)


def _export_without_mask_input(model, path: Path, monkeypatch) -> None:
    """The sampler as exported before logit_mask existed: noise is the graph's only addend to the logits."""
    with monkeypatch.context() as patched:
        patched.setattr(musicvae, "sampler_noise",
                        lambda g, steps, vocab: g.input("noise", FLOAT, ["batch", steps, vocab]))
        export_model(model, path, preset="tiny")


@pytest.mark.parametrize("hierarchical", [False, True])
def test_old_graphs_fold_the_mask_into_the_noise_with_the_same_result(tmp_path, monkeypatch, hierarchical):
    torch_model = tiny_model("melody", hierarchical, bars=2, seed=3)
    _export_without_mask_input(torch_model, tmp_path / "old", monkeypatch)
    export_model(torch_model, tmp_path / "new", preset="tiny")
    old, new = load_model(tmp_path / "old"), load_model(tmp_path / "new")
    assert [i.name for i in old.session("sampler").get_inputs()] == ["z", "noise"]
    for scale in (None, "D:dorian", "G:blues"):
        for temperature in (0.0, 1.0):
            a = old.sample_prior(300, temperature=temperature, seed=9, scale=scale)
            b = new.sample_prior(300, temperature=temperature, seed=9, scale=scale)
            assert np.array_equal(a, b), (scale, temperature)  # unlocked: the old samples, bit for bit
            if scale is not None:
                assert out_of_scale_onsets(MELODY, a, scale).sum() == 0


# ---------------------------------------------------------------------------------------------- commands
def _flat(output: str) -> str:
    """Command output without rich's error box and its line breaks."""
    return " ".join(output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


def _serve_app() -> typer.Typer:
    from musicbridge.bridge.commands import register

    app = typer.Typer()
    register(app)
    return app


def test_serve_refuses_a_bad_scale_before_starting():
    result = CliRunner().invoke(_serve_app(), ["--scale", "D:dorain", "--midi-api", "alsa", "--osc-port", "0"])
    assert result.exit_code == 2
    assert "--scale" in _flat(result.output) and "known modes: major, minor" in _flat(result.output)


def test_generate_locks_to_the_scale_and_refuses_drum_models(tmp_path):
    from musicbridge.generate_commands import generate_app
    from musicbridge.notes import NoteSequence

    runner = CliRunner()
    result = runner.invoke(generate_app, ["sample", "-o", str(tmp_path / "s.mid"), "-n", "16", "--seed", "2",
                                          "--temperature", "1.5", "--scale", "E:phrygian"])
    assert result.exit_code == 0, result.output
    pitches = [n.pitch for n in NoteSequence.from_midi(tmp_path / "s.mid").notes]
    assert len(pitches) > 16 and parse_scale("E:phrygian").contains(pitches).all()
    drums = export_tiny(tmp_path / "drums", representation="drums")
    result = runner.invoke(generate_app, ["sample", "-o", str(tmp_path / "d.mid"), "--model", str(drums),
                                          "--scale", "C:major"])
    assert result.exit_code == 1 and "drums model has none" in _flat(result.output)
    result = runner.invoke(generate_app, ["sample", "-o", str(tmp_path / "x.mid"), "--scale", "Q:major"])
    assert result.exit_code == 2 and "not a note name" in _flat(result.output)


# ---------------------------------------------------------------------------------------------- OSC
def _pitches(phrases: dict) -> list[int]:
    return [note[1] for phrase in phrases.values() if phrase["end"] for note in phrase["notes"]]


def _answers_after(osc: OscPeer, count: int, timeout: float = 10.0) -> list[int]:
    """Pitches of `count` complete answers forced after now (sample mode: one per /musicbridge/generate)."""
    since = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = {k: v for k, v in osc.phrases(since).items() if v["end"]}
        if len(done) >= count:
            return _pitches(done)
        osc.send("/musicbridge/generate")
        time.sleep(0.3)
    raise TimeoutError(f"fewer than {count} answers in {timeout} s")


def test_scale_param_round_trip_over_osc(bridge_models, tmp_path):
    """--scale at start, then /musicbridge/param/scale changes, refuses and clears it; the answers follow."""
    stats = tmp_path / "stats.json"
    env = {"JACK_DEFAULT_SERVER": f"mbtest-none-{uuid.uuid4().hex[:8]}", "JACK_NO_START_SERVER": "1"}
    daemon = Daemon(["--midi-api", "auto", "--clock", "internal", "--bpm", "240", "--seed", "5", "--mode", "sample",
                     "--scale", "D:dorian", "--model", str(bridge_models / "melody_a"), "--stats-json", str(stats)],
                    env=env)
    osc = OscPeer(daemon.osc_port, daemon.reply_port)
    try:
        daemon.start()
        daemon.wait_ready(osc)
        dorian = parse_scale("D:dorian")
        pitches = _answers_after(osc, 3)
        assert pitches and dorian.contains(pitches).all()
        osc.send("/musicbridge/param/scale", "0,")  # C alone
        time.sleep(0.2)
        pitches = _answers_after(osc, 3)
        assert pitches and all(p % 12 == 0 for p in pitches)
        since = time.perf_counter()
        osc.send("/musicbridge/param/scale", "H:major")
        error = osc.wait_for("/musicbridge/error", since)[0][2]
        assert error[0] == "out_of_range" and "not a note name" in error[1]
        assert all(p % 12 == 0 for p in _answers_after(osc, 2))  # a refused spec changes nothing
        osc.send("/musicbridge/param/scale", "off")
        time.sleep(0.2)
        assert any(p % 12 != 0 for p in _answers_after(osc, 3))  # unlocked: the model's own notes again
        osc.send("/musicbridge/param/scale", "A:minor")
        osc.status()  # handled in order: the scale is set once the status reply comes
    finally:
        code = daemon.stop()
        osc.close()
    assert code == 0, daemon.output()
    assert json.loads(stats.read_text())["scale"] == "A:minor"
    assert "scale lock: C" in daemon.output() and "scale lock: off" in daemon.output()
    assert "scale lock at exit: A:minor" in daemon.output()  # the printed summary


# ---------------------------------------------------------------------------------------------- the device
NODE_HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const song = {root_note: [2], scale_intervals: [0, 2, 3, 5, 7, 9, 10], scale_name: ["Dorian"]};
const observers = [];
const sent = [];
function LiveAPI(callback, path) {
  if (typeof callback === "string") { path = callback; callback = null; }
  this.id = path === "live_set" ? "3" : "0";
  this.get = (name) => (song[name] === undefined ? undefined : song[name].slice());
  let watched = "";
  Object.defineProperty(this, "property", {
    get: () => watched,
    set: (name) => { watched = name; if (name && callback) { observers.push([this, callback]); callback([name]); } },
  });
}
const context = {LiveAPI, outlet: (n, value) => sent.push([n, String(value)])};
vm.createContext(context);
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context);
const change = (name, value) => {
  song[name] = value;
  for (const [api, callback] of observers) if (api.property === name) callback([name, value]);
};
const steps = {
  restored_on: () => context.msg_int(1), ready: () => context.ready(), root_e: () => change("root_note", [4]),
  major: () => { song.scale_name = ["Major"]; change("scale_intervals", [0, 2, 4, 5, 7, 9, 11]); },
  push: () => context.push(), off: () => context.msg_int(0), root_while_off: () => change("root_note", [0]),
  live11: () => { delete song.scale_intervals; context.msg_int(1); },
};
const log = {};
for (const step of Object.keys(steps)) { sent.length = 0; steps[step](); log[step] = sent.slice(); }
console.log(JSON.stringify(log));
"""


def test_live_scale_script_sends_the_song_scale_the_daemon_reads(tmp_path):
    harness = tmp_path / "harness.js"
    harness.write_text(NODE_HARNESS)
    result = subprocess.run(["node", str(harness), str(PATCHES / "musicbridge_scale.js")], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    log = {step: [(n, v) for n, v in sent] for step, sent in json.loads(result.stdout).items()}
    specs = {step: [v for n, v in sent if n == 0] for step, sent in log.items()}
    assert specs["restored_on"] == []  # the Live API is not ready yet while the device loads
    assert [parse_scale(s).name for s in specs["ready"]] == ["D dorian"]  # once, though two observers start
    assert (1, "scale: D Dorian") in log["ready"]
    assert [parse_scale(s).name for s in specs["root_e"]] == ["E dorian"]  # observed: follows Live at once
    assert [parse_scale(s).name for s in specs["major"]] == ["E major"]
    assert [parse_scale(s).name for s in specs["push"]] == ["E major"]  # sent again to a reconnected daemon
    assert specs["off"] == ["off"] and parse_scale("off") is None
    assert specs["root_while_off"] == []  # no longer observed
    assert specs["live11"] == [] and (1, "Live 12 needed for its scale") in log["live11"]
