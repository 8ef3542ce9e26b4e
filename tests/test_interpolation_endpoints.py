"""Interpolation starts on A and ends on B: the path's ends are the captured phrases themselves, the points between
move away from A and towards B (Hamming distances, on the shipped model), through the runtime, `generate
interpolate` (which prints the distances) and the bridge's interpolate request."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import numpy as np
import pytest
from midi_factory import write_type0, write_type1_multitrack

from musicbridge.bridge.generator import Request, run_model
from musicbridge.generate import interpolate_sequences, interpolation_path, phrase_tokens
from musicbridge.notes import NoteSequence
from musicbridge.runtime import load_model, path_distances

PAIRS = 32
STEPS = 8


@pytest.fixture(scope="module")
def shipped():
    return load_model("mel_2bar")


@pytest.fixture(scope="module")
def pairs(shipped):
    """A and B phrases: samples of the model at temperature 1 (busier and less regular than its greedy ones)."""
    return shipped.sample_prior(PAIRS, temperature=1.0, seed=1), shipped.sample_prior(PAIRS, temperature=1.0, seed=2)


def test_the_path_starts_on_a_and_ends_on_b(shipped, pairs):
    a, b = pairs
    path = shipped.interpolate(a, b, STEPS)  # (PAIRS, STEPS, T)
    assert path.shape == (PAIRS, STEPS, shipped.steps)
    assert np.array_equal(path[:, 0], a) and np.array_equal(path[:, -1], b)
    single = shipped.interpolate(a[3], b[3], STEPS)  # one pair alone, no batch axis
    assert single.shape == (STEPS, shipped.steps) and np.array_equal(single[[0, -1]], np.stack([a[3], b[3]]))
    assert np.array_equal(shipped.interpolate(a[0], b[0], 2), np.stack([a[0], b[0]]))  # the ends alone
    # ends="decoded": the ends are decodings of μ(A) and μ(B): near A and B, but not always A and B themselves —
    # why the default ends are the inputs (the shipped mel_2bar changes some steps of 12 of these 32 A phrases).
    decoded = shipped.interpolate(a, b, STEPS, ends="decoded")
    to_a, to_b = path_distances(decoded, a, b)
    assert to_a[:, 0].mean() < to_b[:, 0].mean() / 4 and to_b[:, -1].mean() < to_a[:, -1].mean() / 4
    assert (to_a[:, 0] > 0).any()


def test_distances_grow_from_a_and_shrink_towards_b(shipped, pairs):
    a, b = pairs
    to_a, to_b = path_distances(shipped.interpolate(a, b, STEPS), a, b)  # (PAIRS, STEPS) each
    assert (to_a[:, 0] == 0).all() and (to_b[:, -1] == 0).all()
    assert np.array_equal(to_a[:, -1], (a != b).sum(axis=1))
    mean_a, mean_b = to_a.mean(axis=0), to_b.mean(axis=0)
    inner = np.arange(1, STEPS - 1)
    assert np.polyfit(inner, mean_a[inner], 1)[0] > 0  # away from A along the path
    assert np.polyfit(inner, mean_b[inner], 1)[0] < 0  # towards B
    half = len(inner) // 2
    assert mean_a[inner[:half]].mean() < mean_a[inner[half:]].mean()
    assert mean_b[inner[:half]].mean() > mean_b[inner[half:]].mean()


def test_path_distances_count_differing_steps():
    a, b = np.zeros(8, np.int64), np.full(8, 2)
    path = np.stack([a, np.array([2, 2, 0, 0, 0, 0, 0, 0]), b])
    to_a, to_b = path_distances(path, a, b)
    assert to_a.tolist() == [0, 2, 8] and to_b.tolist() == [8, 6, 0]
    batched_a, _ = path_distances(np.stack([path, path]), np.stack([a, a]), np.stack([b, b]))
    assert batched_a.shape == (2, 3)


def test_the_bridges_interpolation_plays_a_and_b_themselves(shipped, pairs):
    a, b = pairs[0][0], pairs[1][0]
    request = Request("interpolate", 0.0, 2, tokens=a, other=b, steps=5)
    first, path = run_model(shipped, request)
    assert len(path) == 5 and np.array_equal(first[0], a)
    assert np.array_equal(path[0], a) and np.array_equal(path[-1], b)


def test_generate_writes_a_then_b_verbatim_and_prints_the_distances(shipped, tmp_path):
    first = NoteSequence.from_midi(write_type0(tmp_path / "a.mid"))
    second = NoteSequence.from_midi(write_type1_multitrack(tmp_path / "b.mid"))
    a, b = phrase_tokens(shipped, first), phrase_tokens(shipped, second)
    path = interpolation_path(shipped, first, second, steps=4)
    assert path.shape == (6, shipped.steps) and np.array_equal(path[0], a) and np.array_equal(path[-1], b)
    out = interpolate_sequences(shipped, first, second, steps=4)
    phrase_beats = shipped.bars * 4

    def phrase(k: int) -> np.ndarray:
        """The tokens of the file's k-th phrase."""
        begin = k * phrase_beats
        notes = [replace(n, start=n.start - begin, end=n.end - begin) for n in out.notes
                 if begin <= n.start < begin + phrase_beats]
        return shipped.codec.encode(notes, shipped.steps)

    assert np.array_equal(phrase(0), a) and np.array_equal(phrase(5), b)  # A's own notes open it, B's close it

    command = ["musicbridge", "generate", "interpolate", "a.mid", "b.mid", "-o", "p.mid", "--steps", "4"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0] + line.split()[1]: line.split()[2:] for line in result.stderr.splitlines()
            if line.startswith(("to A", "to B"))}
    header = next(line.split()[1:] for line in result.stderr.splitlines() if line.startswith("phrase"))
    assert header == ["A", "1", "2", "3", "4", "B"]
    to_a, to_b = path_distances(path, a, b)
    assert rows == {"toA": [str(d) for d in to_a], "toB": [str(d) for d in to_b]}
    assert rows["toA"][0] == "0" and rows["toB"][-1] == "0"
