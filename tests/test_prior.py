"""The model's own prior (prior.npz): fitted at export from the training split's posteriors, listed and hashed in
model.json, refused when damaged, drawn by sample_prior / evaluate --music, shipped with the model (tiny models)."""

import hashlib
import io
import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from musicbridge.attributes import ATTRIBUTES_FILE
from musicbridge.cli import app
from musicbridge.codecs import get_codec
from musicbridge.data.build import dataset_hash
from musicbridge.export.prior import choose_windows
from musicbridge.export.ship import ship
from musicbridge.export.testing import save_model_checkpoint, tiny_model
from musicbridge.latent_prior import PRIOR_FILE, FittedPrior
from musicbridge.models import build_model, get_preset
from musicbridge.music_stats import summarize
from musicbridge.runtime import ModelLoadError, load_model

torch.set_num_threads(1)
TRAIN_WINDOWS = 40
PRIOR_WINDOWS = 24  # fewer than the train split: the export picks a seeded subset
TRANSFORMER = {"d_model": 16, "heads": 2, "ff_size": 32, "enc_layers": 1, "dec_layers": 2, "z_size": 8,
               "dropout": 0.0}


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def write_dataset(path, steps, n=TRAIN_WINDOWS) -> str:
    """A melody dataset of mostly-hold windows (the shape of real ones); returns its hash."""
    codec = get_codec("melody")
    rng = np.random.default_rng(3)
    arrays = {split: np.where(rng.random((n, steps)) < 0.8, 0, rng.integers(1, 90, (n, steps))).astype(np.uint16)
              for split in ("train", "valid", "test")}
    path.mkdir()
    for split, array in arrays.items():
        np.save(path / f"{split}.npy", array)
    manifest = {"format": 1, "representation": codec.describe(), "bars": 2, "hop": 1, "steps": steps,
                "hash": dataset_hash(codec, arrays)}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return manifest["hash"]


def export_with_prior(tmp_path, model, *options):
    data_hash = write_dataset(tmp_path / "data", model.steps)
    checkpoint = save_model_checkpoint(model, tmp_path / "best.pt", dataset_hash=data_hash)
    result = cli("export", checkpoint, "-o", tmp_path / "out", "--data", tmp_path / "data", "--parity-sequences", 8,
                 *options)
    assert result.exit_code == 0, result.output
    return tmp_path / "out"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny melody MusicVAE exported (fp32 + int8) with --data: it has a fitted prior."""
    return export_with_prior(tmp_path_factory.mktemp("prior"), tiny_model("melody"), "--quantize", "int8",
                             "--prior-windows", PRIOR_WINDOWS)


def tiny_transformer():
    torch.manual_seed(0)
    return build_model(get_preset("mel_2bar_transformer", TRANSFORMER).model).eval()


def copy_model(source, target, prior: FittedPrior | bytes | None = None):
    """A copy of the model directory `source`; with `prior`, its prior.npz replaced (and model.json's sha256
    updated, so only the contents can be wrong)."""
    shutil.copytree(source, target)
    if prior is not None:
        data = prior.to_bytes() if isinstance(prior, FittedPrior) else prior
        (target / PRIOR_FILE).write_bytes(data)
        metadata = json.loads((target / "model.json").read_text())
        metadata["sha256"][PRIOR_FILE] = hashlib.sha256(data).hexdigest()
        (target / "model.json").write_text(json.dumps(metadata))
    return target


def edit_metadata(folder, change):
    metadata = json.loads((folder / "model.json").read_text())
    change(metadata)
    (folder / "model.json").write_text(json.dumps(metadata))


# -- export ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["musicvae", "transformer"])
def test_export_with_data_writes_the_posteriors_of_training_windows(tmp_path, architecture):
    model = tiny_model("melody") if architecture == "musicvae" else tiny_transformer()
    out = export_with_prior(tmp_path, model, "--prior-windows", PRIOR_WINDOWS)
    metadata = json.loads((out / "model.json").read_text())
    entry = metadata["prior"]
    assert entry == {"kind": "gaussian_mixture", "file": PRIOR_FILE, "windows": PRIOR_WINDOWS, "components":
                     PRIOR_WINDOWS, "source": "aggregate posterior of the training split", "seed": 0}
    assert metadata["sha256"][PRIOR_FILE] == hashlib.sha256((out / PRIOR_FILE).read_bytes()).hexdigest()
    with np.load(out / PRIOR_FILE, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["means", "scales", "weights"]
    prior = load_model(out).prior
    assert prior.means.shape == prior.scales.shape == (PRIOR_WINDOWS, model.z_size)
    np.testing.assert_allclose(prior.weights, 1 / PRIOR_WINDOWS, rtol=1e-3)
    # Each component is q(z | x) of one seeded training window, computed by the torch encoder on its own tokens.
    train = np.load(tmp_path / "data" / "train.npy").astype(np.int64)
    with torch.no_grad():
        mu, sigma = model.encode(torch.as_tensor(train[choose_windows(TRAIN_WINDOWS, PRIOR_WINDOWS)]))
    np.testing.assert_allclose(prior.means, mu.numpy(), rtol=2e-3, atol=2e-3)  # stored as float16
    np.testing.assert_allclose(prior.scales, sigma.numpy(), rtol=2e-3, atol=2e-3)


def test_export_without_data_or_with_no_windows_has_no_prior(tmp_path):
    model = tiny_model("melody")
    out = export_with_prior(tmp_path, model, "--prior-windows", 0)
    assert "prior" not in json.loads((out / "model.json").read_text()) and not (out / PRIOR_FILE).exists()
    assert load_model(out).prior is None
    result = cli("export", tmp_path / "best.pt", "-o", tmp_path / "plain", "--parity-sequences", 8)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "plain" / PRIOR_FILE).exists() and load_model(tmp_path / "plain").prior is None


# -- load -----------------------------------------------------------------------------------------------------


def test_a_damaged_or_unusable_prior_is_refused_with_a_sentence(exported, tmp_path):
    good = load_model(exported).prior
    flipped = bytearray((exported / PRIOR_FILE).read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    damaged = copy_model(exported, tmp_path / "damaged")
    (damaged / PRIOR_FILE).write_bytes(bytes(flipped))
    with pytest.raises(ModelLoadError, match=r"prior\.npz is corrupt or truncated .* export the model again"):
        load_model(damaged)
    missing = copy_model(exported, tmp_path / "missing")
    (missing / PRIOR_FILE).unlink()
    with pytest.raises(ModelLoadError, match="missing prior file .*prior.npz; the export is incomplete"):
        load_model(missing)
    unhashed = copy_model(exported, tmp_path / "unhashed")
    edit_metadata(unhashed, lambda m: m["sha256"].pop(PRIOR_FILE))
    with pytest.raises(ModelLoadError, match="lists the prior prior.npz without its sha256"):
        load_model(unhashed)
    outside = copy_model(exported, tmp_path / "outside")
    edit_metadata(outside, lambda m: m["prior"].update(file="../prior.npz"))
    with pytest.raises(ModelLoadError, match="names no usable prior file"):
        load_model(outside)
    unknown = copy_model(exported, tmp_path / "unknown")
    edit_metadata(unknown, lambda m: m["prior"].update(kind="normalizing_flow"))
    with pytest.raises(ModelLoadError, match="kind 'normalizing_flow' is unknown to this musicbridge"):
        load_model(unknown)
    # Files whose checksum matches but whose contents are no usable prior (a hand-made or foreign file).
    nan_means = good.means.copy()
    nan_means[0, 0] = np.nan
    cases = {"nan": (npz(weights=good.weights, means=nan_means, scales=good.scales), "its means hold NaN"),
             "short": (npz(weights=[1.0], means=good.means[:1, :-1], scales=good.scales[:1, :-1]),
                       "its codes have 5 dimensions and the model's 6"),
             "no_scales": (npz(weights=good.weights, means=good.means), "it lacks the array.s. scales"),
             "pickle": (b"\x80\x04\x95" + b"\x00" * 64, "it is not a readable .npz file of arrays .ValueError: This "
                        "file contains pickled .object. data\\)"),
             "one_array": (npy(good.means), "it is not a readable .npz file of arrays .ValueError: it holds a single array")}
    for name, (data, message) in cases.items():
        with pytest.raises(ModelLoadError, match=f"prior.npz is not a usable prior: {message}.* export the model"):
            load_model(copy_model(exported, tmp_path / name, data))


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(array, np.float32) for name, array in arrays.items()})
    return buffer.getvalue()


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# -- sampling -------------------------------------------------------------------------------------------------


def test_sample_prior_draws_from_the_fitted_prior(exported, tmp_path):
    z_size = load_model(exported).z_size
    far = np.stack([np.full(z_size, 6.0), np.linspace(-9.0, 9.0, z_size)])  # (2, Z): nothing N(0, I) would draw
    hand_made = FittedPrior([0.25, 0.75], far, np.full((2, z_size), 0.01))
    model = load_model(copy_model(exported, tmp_path / "far", hand_made))
    z = model.prior_z(4000, np.random.default_rng(0))
    nearest = np.linalg.norm(z[:, None, :] - far[None], axis=-1)  # (n, 2)
    assert nearest.min(axis=1).max() < 0.1  # every draw lies at one of the two means
    assert abs((nearest.argmin(axis=1) == 0).mean() - 0.25) < 0.03  # in the weights' proportions
    # sample_prior decodes exactly those draws: its rng draws z first, then the sampling noise.
    for temperature in (0.0, 1.0):
        rng = np.random.default_rng(5)
        expected = model.sample(model.prior_z(64, rng), temperature, rng=rng)
        np.testing.assert_array_equal(model.sample_prior(64, temperature, seed=5), expected)
        np.testing.assert_array_equal(model.sample_prior(64, temperature, seed=5, prior="fitted"), expected)
    # With a scale lock too: no note-on outside C major.
    locked = model.sample_prior(64, 1.0, seed=5, scale="C:major")
    assert np.all(np.isin((locked[locked >= 2] + 19) % 12, (0, 2, 4, 5, 7, 9, 11)))


def test_standard_prior_and_models_without_a_prior_are_unchanged(exported, tmp_path):
    with_prior = load_model(exported)
    stripped = copy_model(exported, tmp_path / "stripped")
    edit_metadata(stripped, lambda m: m.pop("prior"))
    without = load_model(stripped)
    assert with_prior.prior is not None and without.prior is None
    for temperature in (0.0, 1.0):
        rng = np.random.default_rng(7)  # what sample_prior always did: z ~ N(0, I), then the sampling noise
        expected = without.sample(rng.standard_normal((32, without.z_size)).astype(np.float32), temperature, rng=rng)
        np.testing.assert_array_equal(without.sample_prior(32, temperature, seed=7), expected)
        np.testing.assert_array_equal(without.sample_prior(32, temperature, seed=7, prior="standard"), expected)
        np.testing.assert_array_equal(with_prior.sample_prior(32, temperature, seed=7, prior="standard"), expected)
    assert not np.array_equal(with_prior.prior_z(32, np.random.default_rng(7)),
                              with_prior.prior_z(32, np.random.default_rng(7), "standard"))
    with pytest.raises(ValueError, match="has no fitted prior; export it with --data DATASET"):
        without.sample_prior(4, prior="fitted")
    with pytest.raises(ValueError, match="unknown prior 'learned'; choose one of auto, fitted, standard"):
        with_prior.sample_prior(4, prior="learned")


# -- evaluate --music and ship --------------------------------------------------------------------------------


def test_evaluate_music_reports_the_fitted_and_the_standard_prior(exported, tmp_path):
    data = exported.parent / "data"
    result = cli("evaluate", exported, "--data", data, "--variant", "fp32", "--music", "--json", "--samples", 16)
    assert result.exit_code == 0, result.output
    music = json.loads(result.stdout)["music"]
    assert music["prior_kind"] == "gaussian_mixture"
    model = load_model(exported, variant="fp32")
    fitted = model.sample(model.prior_z(16, np.random.default_rng(0)), 1.0, seed=0)
    standard = model.sample(np.random.default_rng(0).standard_normal((16, model.z_size)).astype(np.float32), 1.0,
                            seed=0)
    assert music["prior"] == summarize(fitted) and music["prior_standard"] == summarize(standard)
    table = cli("evaluate", exported, "--data", data, "--music", "--samples", 8)
    assert table.exit_code == 0 and "prior_standard" in table.stdout and "gaussian_mixture prior" in table.stdout
    stripped = copy_model(exported, tmp_path / "stripped")
    edit_metadata(stripped, lambda m: m.pop("prior"))
    result = cli("evaluate", stripped, "--data", data, "--music", "--json", "--samples", 16)
    assert result.exit_code == 0, result.output
    music = json.loads(result.stdout)["music"]
    assert music["prior_standard"] is None and music["prior_kind"] == "standard"


def test_ship_carries_the_prior_and_drops_a_stale_one(exported, tmp_path):
    target = ship(exported, tmp_path / "shipped", "int8")
    metadata = json.loads((target / "model.json").read_text())
    # The attribute vectors (--data fits them too, tests/test_attributes.py) travel with the prior.
    assert sorted(metadata["sha256"]) == sorted([*metadata["variants"]["int8"].values(), PRIOR_FILE, ATTRIBUTES_FILE])
    assert (target / PRIOR_FILE).read_bytes() == (exported / PRIOR_FILE).read_bytes()
    assert load_model(target).prior is not None
    stripped = copy_model(exported, tmp_path / "stripped")
    edit_metadata(stripped, lambda m: m.pop("prior"))
    ship(stripped, target, "int8")  # shipping a model without a prior over it leaves none behind
    assert not (target / PRIOR_FILE).exists() and load_model(target).prior is None
