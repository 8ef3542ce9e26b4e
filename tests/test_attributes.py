"""Latent attribute knobs (musicbridge.attributes): vectors fitted at export point the right way, are listed, hashed
and refused when damaged, move z by α·v in the runtime (and by nothing at α = 0), drive `generate --attribute` and
are measured by `evaluate --attributes`."""

import hashlib
import io
import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from musicbridge.attributes import (
    ATTRIBUTES,
    ATTRIBUTES_FILE,
    CODE_METHODS,
    attribute_values,
    fit_vectors,
    parse_attribute,
)
from musicbridge.cli import app
from musicbridge.codecs import get_codec
from musicbridge.data.build import dataset_hash
from musicbridge.export.attributes import ATTRIBUTES_SEED
from musicbridge.export.prior import choose_windows
from musicbridge.export.ship import ship
from musicbridge.export.testing import save_model_checkpoint, tiny_model
from musicbridge.generate import continue_sequence, sample_sequences
from musicbridge.music_stats import phrase_stats
from musicbridge.notes import Note, NoteSequence
from musicbridge.runtime import ModelLoadError, load_model

torch.set_num_threads(1)
MELODY = get_codec("melody")
STEPS = 32  # two bars
TRAIN_WINDOWS = 48
ATTRIBUTE_WINDOWS = 40  # fewer than the train split: the export picks a seeded subset


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def melody(pitches, every: int = 2) -> np.ndarray:
    """Two bars of melody tokens: `pitches` one after another, each `every` steps long (None = a rest)."""
    tokens = np.zeros(STEPS, np.int64)
    for index, pitch in enumerate(pitches):
        step = index * every
        tokens[step] = 1 if pitch is None else pitch - 19
    return tokens


def random_phrases(rng, n: int) -> np.ndarray:
    """n melodies of varied density, register, range and motion (every one with at least two notes)."""
    rows = []
    for _ in range(n):
        count = int(rng.integers(2, 16))
        start = int(rng.integers(45, 80))
        moves = rng.choice([-7, -4, -2, -1, 0, 1, 2, 4, 7], size=count - 1)
        pitches = np.clip(start + np.concatenate([[0], np.cumsum(moves)]), 30, 100)
        rows.append(melody(pitches, every=STEPS // count))
    return np.stack(rows)


def write_dataset(path, n=TRAIN_WINDOWS) -> str:
    """A melody dataset of real phrases (random_phrases); returns its hash."""
    rng = np.random.default_rng(3)
    arrays = {split: random_phrases(rng, n).astype(np.uint16) for split in ("train", "valid", "test")}
    path.mkdir()
    for split, array in arrays.items():
        np.save(path / f"{split}.npy", array)
    manifest = {"format": 1, "representation": MELODY.describe(), "bars": 2, "hop": 1, "steps": STEPS,
                "hash": dataset_hash(MELODY, arrays)}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return manifest["hash"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny melody MusicVAE exported (fp32) with --data: it has attribute vectors (and a prior)."""
    tmp = tmp_path_factory.mktemp("attributes")
    model = tiny_model("melody")
    checkpoint = save_model_checkpoint(model, tmp / "best.pt", dataset_hash=write_dataset(tmp / "data"))
    result = cli("export", checkpoint, "-o", tmp / "out", "--data", tmp / "data", "--parity-sequences", 8,
                 "--prior-windows", 8, "--attribute-windows", ATTRIBUTE_WINDOWS, "--attribute-method", "quartiles")
    assert result.exit_code == 0, result.output
    return tmp / "out"


def copy_model(source, target, data: bytes | None = None):
    """A copy of the model directory; with `data`, its attributes.npz replaced (and model.json's sha256 updated, so
    only the contents can be wrong)."""
    shutil.copytree(source, target)
    if data is not None:
        (target / ATTRIBUTES_FILE).write_bytes(data)
        edit_metadata(target, lambda m: m["sha256"].update({ATTRIBUTES_FILE: hashlib.sha256(data).hexdigest()}))
    return target


def edit_metadata(folder, change):
    metadata = json.loads((folder / "model.json").read_text())
    change(metadata)
    (folder / "model.json").write_text(json.dumps(metadata))


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# -- the attributes and the fit -------------------------------------------------------------------------------


def test_the_attributes_are_music_stats_statistics():
    c_d_e_g = melody([60, 62, 64, 67], every=4)  # intervals 2, 2, 3: two steps of three
    repeat_leap = melody([60, 60, 72, None], every=8)  # a repeated note is a step, an octave is not
    values = attribute_values(np.stack([c_d_e_g, repeat_leap, melody([])]), 16)
    density, register, pitch_range, stepwise = values.T
    np.testing.assert_allclose(density, [2.0, 1.5, 0.0])
    np.testing.assert_allclose(register[:2], [63.25, 64.0])
    np.testing.assert_allclose(pitch_range[:2], [7, 12])
    np.testing.assert_allclose(stepwise[:2], [2 / 3, 1 / 2])
    assert np.isnan(values[2, 1:]).all()  # no notes: only the density is defined
    stats = phrase_stats(c_d_e_g[None])
    assert stats["step_intervals"][0] == 2 and stats["intervals"][0] == 3


def constructed_codes(rng, tokens, z_size=12, noise=0.05):
    """Codes that hold each attribute along a known direction: μ = Σ_k standardised a_k · d_k + noise, with
    directions d (K, Z) orthonormal. Returns (μ, d, values)."""
    values = attribute_values(tokens, 16)
    standard = (values - np.nanmean(values, 0)) / np.nanstd(values, 0)
    directions = np.linalg.qr(rng.standard_normal((z_size, len(ATTRIBUTES))))[0].T  # (K, Z) orthonormal rows
    mu = np.nan_to_num(standard) @ directions + noise * rng.standard_normal((len(tokens), z_size))
    return mu, directions, values


@pytest.mark.parametrize("method", CODE_METHODS)
def test_vectors_fitted_on_constructed_codes_point_along_their_attribute(method):
    rng = np.random.default_rng(0)
    tokens = random_phrases(rng, 2000)
    mu, directions, values = constructed_codes(rng, tokens)
    vectors, low, high = fit_vectors(mu, values, method)
    assert vectors.shape == directions.shape and np.all(high > low)
    cosine = (vectors * directions).sum(1) / np.linalg.norm(vectors, axis=1)
    assert np.all(cosine > 0.5), cosine  # each points the way its attribute grows
    if method == "regression":  # the joint fit finds each attribute's own direction, the others held
        assert np.all(cosine > 0.97), cosine
    if method == "orthogonal":  # each is orthogonal to the other attributes' quartile vectors
        quartiles, _, _ = fit_vectors(mu, values, "quartiles")
        overlap = vectors @ quartiles.T / np.outer(np.linalg.norm(vectors, axis=1), np.linalg.norm(quartiles, axis=1))
        assert np.abs(overlap[~np.eye(len(overlap), dtype=bool)]).max() < 1e-9


def test_regression_separates_attributes_that_go_together_and_quartiles_do_not():
    rng = np.random.default_rng(1)
    tokens = random_phrases(rng, 2000)
    _, directions, values = constructed_codes(rng, tokens)
    # A code that holds only the register, in data where the range grows with the register.
    values[:, 2] = values[:, 1] - np.nanmean(values[:, 1]) + rng.normal(0, 2.0, len(values))
    standard = (values - np.nanmean(values, 0)) / np.nanstd(values, 0)
    mu = np.nan_to_num(standard[:, [1]]) @ directions[[1]] + 0.05 * rng.standard_normal((len(tokens), 12))
    quartiles, _, _ = fit_vectors(mu, values, "quartiles")
    regression, _, _ = fit_vectors(mu, values, "regression")
    along = [np.linalg.norm(v[2]) / np.linalg.norm(v[1]) for v in (quartiles, regression)]
    assert along[0] > 0.5 and along[1] < 0.1  # the range's vector: the register's again, or (nearly) nothing


def test_fit_vectors_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="unknown attribute method 'pca'; choose one of quartiles"):
        fit_vectors(np.zeros((8, 3)), np.zeros((8, 4)), "pca")
    with pytest.raises(ValueError, match="needs at least 4 windows that define each attribute .found 3."):
        fit_vectors(np.zeros((3, 3)), np.ones((3, 4)), "quartiles")
    with pytest.raises(ValueError, match="calibrated attribute vectors need the decoder: fit them with"):
        fit_vectors(np.zeros((8, 3)), np.ones((8, 4)), "calibrated")  # tests/test_attributes_calibrated.py


def test_parse_attribute_reads_name_equals_value():
    assert parse_attribute("density=+1.0") == ("density", 1.0)
    assert parse_attribute(" register = -0.5") == ("register", -0.5)
    for bad in ("density", "density=", "=1", "density=much", "density=nan"):
        with pytest.raises(ValueError, match="is not NAME=VALUE with a number"):
            parse_attribute(bad)


# -- export and load --------------------------------------------------------------------------------------------


def test_export_lists_hashes_and_fits_the_vectors_of_training_windows(exported):
    metadata = json.loads((exported / "model.json").read_text())
    assert metadata["attributes"] == {"kind": "attribute_vectors", "file": ATTRIBUTES_FILE, "method": "quartiles",
                                      "windows": ATTRIBUTE_WINDOWS, "seed": ATTRIBUTES_SEED,
                                      "source": "μ of training windows against their musicbridge.music_stats "
                                                "attributes"}
    assert metadata["sha256"][ATTRIBUTES_FILE] == hashlib.sha256((exported / ATTRIBUTES_FILE).read_bytes()).hexdigest()
    with np.load(exported / ATTRIBUTES_FILE, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["high", "low", "names", "vectors"]
    vectors = load_model(exported).attributes
    assert vectors.names == tuple(ATTRIBUTES) and vectors.vectors.shape == (4, 6)
    # The vectors are fit_vectors of the torch encoder's μ of the seeded windows, against their own attributes.
    train = np.load(exported.parent / "data" / "train.npy").astype(np.int64)
    chosen = train[choose_windows(TRAIN_WINDOWS, ATTRIBUTE_WINDOWS, ATTRIBUTES_SEED)]
    with torch.no_grad():
        mu, _ = tiny_model("melody").encode(torch.as_tensor(chosen))
    expected, low, high = fit_vectors(mu.double().numpy(), attribute_values(chosen, 16), "quartiles")
    np.testing.assert_allclose(vectors.vectors, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(vectors.low, low, rtol=1e-6)
    np.testing.assert_allclose(vectors.high, high, rtol=1e-6)


def test_export_without_data_or_windows_has_no_vectors(exported, tmp_path):
    checkpoint = exported.parent / "best.pt"
    result = cli("export", checkpoint, "-o", tmp_path / "none", "--data", exported.parent / "data",
                 "--parity-sequences", 8, "--attribute-windows", 0)
    assert result.exit_code == 0, result.output
    assert "attributes" not in json.loads((tmp_path / "none" / "model.json").read_text())
    assert load_model(tmp_path / "none").attributes is None
    write_dataset(tmp_path / "three", n=3)  # fewer windows than a quartile needs: the export goes on without them
    few = cli("export", checkpoint, "-o", tmp_path / "few", "--data", tmp_path / "three", "--parity-sequences", 3)
    assert few.exit_code == 0 and "no attribute vectors: fitting attribute vectors needs at least 4 windows" in few.output
    assert load_model(tmp_path / "few").attributes is None and load_model(tmp_path / "few").prior is not None
    bad = cli("export", checkpoint, "-o", tmp_path / "bad", "--attribute-method", "pca")
    assert bad.exit_code == 1 and "--attribute-method takes quartiles, regression, orthogonal, calibrated, not 'pca'" in bad.output


def test_ship_carries_the_vectors(exported, tmp_path):
    shipped = load_model(ship(exported, tmp_path / "shipped", "fp32"))
    np.testing.assert_array_equal(shipped.attributes.vectors, load_model(exported).attributes.vectors)


def test_damaged_or_unusable_vectors_are_refused_with_a_sentence(exported, tmp_path):
    good = load_model(exported).attributes
    flipped = bytearray((exported / ATTRIBUTES_FILE).read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    damaged = copy_model(exported, tmp_path / "damaged")
    (damaged / ATTRIBUTES_FILE).write_bytes(bytes(flipped))
    with pytest.raises(ModelLoadError, match=r"attributes\.npz is corrupt or truncated .* export the model again"):
        load_model(damaged)
    missing = copy_model(exported, tmp_path / "missing")
    (missing / ATTRIBUTES_FILE).unlink()
    with pytest.raises(ModelLoadError, match="missing attribute vectors file .*attributes.npz; the export is incomplete"):
        load_model(missing)
    unhashed = copy_model(exported, tmp_path / "unhashed")
    edit_metadata(unhashed, lambda m: m["sha256"].pop(ATTRIBUTES_FILE))
    with pytest.raises(ModelLoadError, match="lists the attribute vectors attributes.npz without its sha256"):
        load_model(unhashed)
    outside = copy_model(exported, tmp_path / "outside")
    edit_metadata(outside, lambda m: m["attributes"].update(file="../attributes.npz"))
    with pytest.raises(ModelLoadError, match="names no usable attribute vectors file"):
        load_model(outside)
    unknown = copy_model(exported, tmp_path / "unknown")
    edit_metadata(unknown, lambda m: m["attributes"].update(kind="concept_sliders"))
    with pytest.raises(ModelLoadError, match="kind 'concept_sliders' is unknown to this musicbridge"):
        load_model(unknown)
    names, low, high = np.array(good.names), good.low, good.high
    nan = good.vectors.copy()
    nan[0, 0] = np.nan
    cases = {"nan": (npz(names=names, vectors=nan, low=low, high=high), "its vectors hold NaN"),
             "short": (npz(names=names, vectors=good.vectors[:, :-1], low=low, high=high),
                       "its vectors have 5 dimensions and the model's codes 6"),
             "twice": (npz(names=np.array(["density"] * 4), vectors=good.vectors, low=low, high=high),
                       "its names .* are not distinct"),
             "no_high": (npz(names=names, vectors=good.vectors, low=low), "it lacks the array.s. high"),
             "pickle": (b"\x80\x04\x95" + b"\x00" * 64, "it is not a readable .npz file of arrays .ValueError: This "
                        "file contains pickled .object. data\\)")}
    for name, (data, message) in cases.items():
        with pytest.raises(ModelLoadError, match=f"attributes.npz holds no usable attribute vectors: {message}.* "
                                                 f"export the model"):
            load_model(copy_model(exported, tmp_path / name, data))


# -- the runtime's knobs ----------------------------------------------------------------------------------------


def test_knobs_at_zero_decode_bit_for_bit_what_no_knob_does(exported):
    model = load_model(exported)
    zero = {name: 0.0 for name in ATTRIBUTES}
    z = np.random.default_rng(0).standard_normal((8, model.z_size)).astype(np.float32)
    phrase = random_phrases(np.random.default_rng(1), 3)
    for temperature in (0.0, 1.0):
        np.testing.assert_array_equal(model.sample(z, temperature, seed=4, attributes=zero),
                                      model.sample(z, temperature, seed=4))
        np.testing.assert_array_equal(model.sample_prior(8, temperature, seed=4, attributes=zero),
                                      model.sample_prior(8, temperature, seed=4))
        np.testing.assert_array_equal(model.continue_(phrase, 4, temperature, 2, 0.5, seed=4, attributes=zero),
                                      model.continue_(phrase, 4, temperature, 2, 0.5, seed=4))
    assert model.shift(z, zero) is z


def test_a_knob_decodes_z_plus_alpha_v(exported):
    model = load_model(exported)
    vectors = model.attributes
    z = np.random.default_rng(0).standard_normal((8, model.z_size)).astype(np.float32)
    moved = z + np.float32(1.5) * vectors.vector("density") + np.float32(-2.0) * vectors.vector("register")
    knobs = {"density": 1.5, "register": -2.0, "range": 0.0}
    np.testing.assert_allclose(model.shift(z, knobs), moved, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(model.sample(z, 1.0, seed=2, attributes=knobs), model.sample(model.shift(z, knobs),
                                                                                               1.0, seed=2))
    rng = np.random.default_rng(6)
    expected = model.sample(vectors.shift(model.prior_z(5, rng), knobs), 1.0, rng=rng)
    np.testing.assert_array_equal(model.sample_prior(5, 1.0, seed=6, attributes=knobs), expected)
    big = model.sample(z, 0.0, attributes={"density": 40.0})  # far along the vector the decoder plays otherwise
    assert not np.array_equal(big, model.sample(z, 0.0))
    with pytest.raises(ValueError, match="unknown attribute 'tempo'; this model knows density, register, range"):
        model.sample(z, attributes={"tempo": 1.0})
    with pytest.raises(ValueError, match="attribute density: α must be a finite number"):
        model.sample(z, attributes={"density": float("inf")})


def test_a_model_without_vectors_takes_knobs_at_zero_only(exported, tmp_path):
    stripped = copy_model(exported, tmp_path / "stripped")
    edit_metadata(stripped, lambda m: m.pop("attributes"))
    model = load_model(stripped)
    assert model.attributes is None
    z = np.zeros((2, model.z_size), np.float32)
    np.testing.assert_array_equal(model.sample(z, 0.0, attributes={"density": 0.0}), model.sample(z, 0.0))
    with pytest.raises(ValueError, match="has no attribute vectors; export it with --data DATASET"):
        model.sample_prior(2, attributes={"density": 1.0})


# -- generate --attribute, evaluate --attributes -----------------------------------------------------------------


def test_generate_attribute_end_to_end(exported, tmp_path):
    model = load_model(exported)
    knobs = {"density": 1.5, "register": -1.0}
    result = cli("generate", "sample", "-m", exported, "-o", tmp_path / "s.mid", "-n", 3, "--seed", 5,
                 "--attribute", "density=+1.5", "-a", "register=-1")
    assert result.exit_code == 0, result.output
    expected = sample_sequences(model, 3, 1.0, 5, attributes=knobs)
    assert notes_of(NoteSequence.from_midi(tmp_path / "s.mid")) == notes_of(expected)
    source = tmp_path / "in.mid"
    NoteSequence([Note(60 + 2 * i, 100, i * 1.0, i * 1.0 + 0.9) for i in range(8)]).save(source)
    result = cli("generate", "continue", source, "-m", exported, "-o", tmp_path / "c.mid", "--seed", 5,
                 "--temperature", 0, "--attribute", "stepwise=2")
    assert result.exit_code == 0, result.output
    expected = continue_sequence(model, NoteSequence.from_midi(source), None, 0.0, 1, 1.0, 5,
                                 attributes={"stepwise": 2.0})
    assert notes_of(NoteSequence.from_midi(tmp_path / "c.mid")) == notes_of(expected)


def notes_of(sequence) -> list[tuple[int, float, float]]:
    return sorted((n.pitch, round(n.start, 3), round(n.end, 3)) for n in sequence.notes)


def test_generate_attribute_refuses_with_a_sentence(exported, tmp_path):
    out = tmp_path / "x.mid"
    bad = cli("generate", "sample", "-m", exported, "-o", out, "--attribute", "density")
    assert bad.exit_code == 2 and "is not NAME=VALUE with a number" in bad.output
    twice = cli("generate", "sample", "-m", exported, "-o", out, "-a", "density=1", "-a", "density=2")
    assert twice.exit_code == 2 and "density is given twice" in twice.output
    unknown = cli("generate", "sample", "-m", exported, "-o", out, "-a", "tempo=1")
    assert unknown.exit_code == 1 and "--attribute: unknown attribute 'tempo'; this model knows density" in unknown.output
    stripped = copy_model(exported, tmp_path / "stripped")
    edit_metadata(stripped, lambda m: m.pop("attributes"))
    plain = cli("generate", "sample", "-m", stripped, "-o", out, "-a", "density=1")
    assert plain.exit_code == 1 and "has no attribute vectors; export it with --data DATASET" in plain.output
    assert not out.exists()


def test_evaluate_attributes_reports_each_knob(exported):
    data = exported.parent / "data"
    result = cli("evaluate", exported, "--data", data, "--limit", 12, "--attributes", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["attributes"]
    assert report["method"] == "quartiles" and report["n_inputs"] == 12 and len(report["alphas"]) == 9
    assert report["alphas"][0] == -2.0 and report["alphas"][4] == 0.0 and report["alphas"][-1] == 2.0
    assert set(report["inputs"]) == set(report["input_std"]) == set(ATTRIBUTES)
    assert set(report["knobs"]) == set(ATTRIBUTES)
    for knob, row in report["knobs"].items():
        assert set(row) == {"means", "spearman", "min_step", "monotonic", "own_range_std", "relative_range",
                            "max_relative_range"}
        assert set(row["means"]) == set(ATTRIBUTES) and all(len(v) == 9 for v in row["means"].values())
        assert set(row["relative_range"]) == set(ATTRIBUTES) - {knob}
        assert row["spearman"] is None or -1.0 <= row["spearman"] <= 1.0
    # α = 0 decodes μ itself, the same for every knob.
    assert len({json.dumps([row["means"][name][4] for name in ATTRIBUTES]) for row in report["knobs"].values()}) == 1
    table = cli("evaluate", exported, "--data", data, "--limit", 12, "--attributes")
    assert table.exit_code == 0 and "knobs" in table.output and "stepwise" in table.output
    checkpoint = cli("evaluate", exported.parent / "best.pt", "--data", data, "--limit", 12, "--attributes")
    assert checkpoint.exit_code == 1 and "has none; export it with --data DATASET" in checkpoint.output
