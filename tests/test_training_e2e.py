"""CI end-to-end on tiny data: MIDI files → `data build` → `train` (50 steps) → `evaluate --json` → `plot`."""

import json

import mido
import numpy as np
import torch
from typer.testing import CliRunner

from musicbridge.cli import app

torch.set_num_threads(1)

MAJOR = [0, 2, 4, 5, 7, 9, 11]


def write_tunes(folder, count=60, bars=8, seed=0):
    """Random-walk melodies in a random major key, eighth and quarter notes, one file per tune."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for index in range(count):
        midi = mido.MidiFile(type=0, ticks_per_beat=480)
        track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100 + index))])
        key, degree, ticks, rest = int(rng.integers(55, 67)), 7, 0, 0
        while ticks < bars * 4 * 480:
            degree = int(np.clip(degree + rng.integers(-2, 3), 0, 13))
            pitch = key + 12 * (degree // 7) + MAJOR[degree % 7]
            length = int(rng.choice([240, 480, 480, 960]))
            track.append(mido.Message("note_on", note=pitch, velocity=80, time=rest))
            track.append(mido.Message("note_off", note=pitch, velocity=0, time=length))
            rest = int(rng.choice([0, 0, 0, 240]))
            ticks += length + rest
        midi.tracks.append(track)
        midi.save(folder / f"tune{index:02d}.mid")


def test_build_train_evaluate_plot(tmp_path):
    runner = CliRunner()
    write_tunes(tmp_path / "midi")
    data, run = tmp_path / "mel_2bar", tmp_path / "runs" / "tiny"

    built = runner.invoke(app, ["data", "build", str(tmp_path / "midi"), "-o", str(data), "--representation", "melody",
                                "--bars", "2", "--workers", "1", "--cache-dir", str(tmp_path / "cache")])
    assert built.exit_code == 0, built.output
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["splits"]["train"]["windows"] > 100 and manifest["splits"]["test"]["windows"] >= 2

    trained = runner.invoke(app, ["train", "--preset", "mel_2bar", "--data", str(data), "--out", str(run),
                                  "--steps", "50", "--batch-size", "16", "--device", "cpu", "--no-progress",
                                  "--set", "embed_size=16", "--set", "enc_size=32", "--set", "dec_size=48",
                                  "--set", "z_size=16", "--set", "eval_every=25", "--set", "log_every=10"])
    assert trained.exit_code == 0, trained.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in records if r["kind"] == "valid"] == [25, 50]
    assert train[-1]["loss"] < train[0]["loss"]  # it learns something in 50 steps
    assert {"best.pt", "last.pt", "loss.png", "kl.png", "beta.png", "accuracy.png"} <= {p.name for p in run.iterdir()}

    evaluated = runner.invoke(app, ["evaluate", str(run), "--data", str(data), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["n_sequences"] == manifest["splits"]["test"]["windows"] and report["z_size"] == 16
    assert report["recon_acc_sampled"] > 0.2  # holds and note-offs alone are a large share of steps

    for png in run.glob("*.png"):
        png.unlink()
    plotted = runner.invoke(app, ["plot", str(run)])
    assert plotted.exit_code == 0, plotted.output
    for name in ("loss.png", "kl.png", "beta.png", "accuracy.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
