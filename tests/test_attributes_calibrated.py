"""Calibrated attribute knobs (musicbridge.export.attributes.calibrate): the regression's vectors scaled and mixed
by what the decoder makes of them. The choice of a mix on measured sweeps, and on a tiny model: the export records
what the decoder did, the stored vectors are the recorded scales and mixes of the regression's (so they are not the
regression's own), the recorded sweeps are what the exported decoder plays, and a refit rewrites only them."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from test_attributes import ATTRIBUTE_WINDOWS, TRAIN_WINDOWS, cli, write_dataset

from musicbridge.attributes import ATTRIBUTES, ATTRIBUTES_FILE, attribute_values, fit_vectors, mean_values
from musicbridge.export.attributes import (
    ADMIXTURE_PRICE,
    ATTRIBUTES_SEED,
    CALIBRATED_SOURCE,
    CALIBRATION_WINDOWS,
    choose_mix,
    judge,
    refit,
    unclean_knobs,
)
from musicbridge.export.prior import choose_windows
from musicbridge.export.testing import save_model_checkpoint, tiny_model
from musicbridge.runtime import load_model
from musicbridge.training.evaluate import ATTRIBUTE_ALPHAS

torch.set_num_threads(1)
ALPHAS = np.array(ATTRIBUTE_ALPHAS)
NAMES = tuple(ATTRIBUTES)


def constructed_sweep(own: float, coupled: float) -> np.ndarray:
    """A sweep (A, K) of the `stepwise` knob: its own attribute rises by `own` from α = −2 to +2, the range falls
    by `coupled` (the decoder plays fewer steps as a wider range), the others stay."""
    sweep = np.zeros((len(ALPHAS), len(NAMES)))
    sweep[:, NAMES.index("stepwise")] = own * ALPHAS / 4
    sweep[:, NAMES.index("range")] = -coupled * ALPHAS / 4
    return sweep


def test_judge_reads_a_sweep_as_evaluate_does():
    stepwise = NAMES.index("stepwise")
    ratio, margin = judge(constructed_sweep(own=1.0, coupled=1.2), stepwise)
    assert ratio == pytest.approx(1.2) and margin == pytest.approx(1.0)  # evenly rising: every step the mean one
    bent = constructed_sweep(own=1.0, coupled=0.0)
    bent[:, NAMES.index("register")] = np.abs(ALPHAS) / 4  # an even move counts by its whole range, as in evaluate
    assert judge(bent, stepwise)[0] == pytest.approx(0.5)
    bent[5, stepwise] = bent[4, stepwise]  # flat between α = 0 and +0.5: not rising everywhere
    assert judge(bent, stepwise)[1] == 0.0
    assert judge(constructed_sweep(own=-1.0, coupled=0.0), stepwise)[1] == pytest.approx(-1.0)  # it falls
    assert judge(constructed_sweep(own=0.0, coupled=1.0), stepwise) == (np.inf, -np.inf)


def test_choose_mix_cancels_the_coupled_attribute_but_not_the_knob():
    stepwise = NAMES.index("stepwise")
    sweep = constructed_sweep(own=1.0, coupled=1.2)
    widen = constructed_sweep(own=0.0, coupled=-0.6)  # one amount of a vector that widens the range, nothing else
    cancel = constructed_sweep(own=-1.2, coupled=-1.2)  # one amount of a vector that undoes the knob faster
    mix = choose_mix(sweep, np.stack([widen, cancel]), stepwise)
    np.testing.assert_allclose(mix, [1.0, 0.0])  # the range's move halved; even 0.25 of the other takes 30 % of it
    mixed_ratio = judge(sweep + widen, stepwise)[0]
    assert mixed_ratio + ADMIXTURE_PRICE < judge(sweep, stepwise)[0]  # bought because it clearly helps
    # A mix that would help only as much as it costs is not bought.
    np.testing.assert_allclose(choose_mix(sweep, np.stack([widen * 0.2]), stepwise), [0.0])


def responsive_model():
    """A tiny untrained MusicVAE whose codes spread like a trained one's: an untrained encoder puts every window so
    near the others that all decode to the same phrase and no knob moves anything; ×10 they decode differently."""
    model = tiny_model("melody")
    with torch.no_grad():
        model.encoder.mu.weight.mul_(10.0)
        model.encoder.mu.bias.zero_()
    return model


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A tiny melody MusicVAE exported (fp32) with --attribute-method calibrated, and its checkpoint."""
    tmp = tmp_path_factory.mktemp("calibrated")
    model = responsive_model()
    checkpoint = save_model_checkpoint(model, tmp / "best.pt", dataset_hash=write_dataset(tmp / "data"))
    result = cli("export", checkpoint, "-o", tmp / "out", "--data", tmp / "data", "--parity-sequences", 8,
                 "--prior-windows", 8, "--attribute-windows", ATTRIBUTE_WINDOWS, "--attribute-method", "calibrated")
    assert result.exit_code == 0, result.output
    (tmp / "export.log").write_text(result.output)
    return tmp / "out"


def regression_of(folder):
    """The regression's vectors of the export's seeded training windows (torch μ), and those μ."""
    train = np.load(folder.parent / "data" / "train.npy").astype(np.int64)
    chosen = train[choose_windows(TRAIN_WINDOWS, ATTRIBUTE_WINDOWS, ATTRIBUTES_SEED)]
    with torch.no_grad():
        mu, _ = responsive_model().encode(torch.as_tensor(chosen))
    mu = mu.double().numpy()
    vectors, _, _ = fit_vectors(mu, attribute_values(chosen, 16), "regression")
    return vectors, mu


def test_calibrated_vectors_are_the_recorded_scales_and_mixes_of_the_regressions(calibrated):
    entry = json.loads((calibrated / "model.json").read_text())["attributes"]
    assert entry["method"] == "calibrated" and entry["source"] == CALIBRATED_SOURCE
    record = entry["calibration"]
    assert record["decoder"] == "onnxruntime (fp32)" and record["alphas"] == list(ATTRIBUTE_ALPHAS)
    assert record["windows"] == min(CALIBRATION_WINDOWS, ATTRIBUTE_WINDOWS) and record["decodes"] > 0
    assert set(record["knobs"]) == set(NAMES)
    assert any(knob["mixed_in"] for knob in record["knobs"].values())  # this model's decoder couples attributes
    regression, _ = regression_of(calibrated)
    stored = load_model(calibrated).attributes.vectors
    for k, name in enumerate(NAMES):
        knob = record["knobs"][name]
        expected = knob["scale"] * regression[k] + sum(amount * regression[NAMES.index(other)]
                                                       for other, amount in knob["mixed_in"].items())
        np.testing.assert_allclose(stored[k], expected, rtol=1e-3, atol=1e-4)
    # Calibration is not skipped: the knobs are not the regression's vectors.
    assert not np.allclose(stored, regression, rtol=1e-2, atol=1e-3)
    # The export names the knobs that did not come out clean on the training windows (this model's do not all).
    unclean = unclean_knobs(record)
    log = " ".join((calibrated.parent / "export.log").read_text().split())
    assert unclean and f"calibrated knobs that are not clean on the training windows: {', '.join(unclean)}" in log


def test_the_recorded_sweeps_are_what_the_exported_decoder_plays(calibrated):
    """Each knob's record holds the mean of its own attribute over the calibration windows moved by α·v, decoded
    greedily by the exported graphs: decoding them again with the stored vectors gives the same means."""
    record = json.loads((calibrated / "model.json").read_text())["attributes"]["calibration"]
    model = load_model(calibrated)
    _, mu = regression_of(calibrated)
    codes = mu[choose_windows(len(mu), record["windows"], ATTRIBUTES_SEED)]
    for k, name in enumerate(NAMES):
        vector = model.attributes.vector(name).astype(np.float64)
        means = [mean_values(attribute_values(model.sample((codes + alpha * vector).astype(np.float32), 0.0), 16))[k]
                 for alpha in ATTRIBUTE_ALPHAS]
        np.testing.assert_allclose(means, record["knobs"][name]["means"], rtol=1e-3, atol=1e-3)
        assert record["knobs"][name]["monotonic"] == bool(np.all(np.diff(means) > 0))


def test_refit_rewrites_only_the_attribute_vectors(calibrated, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(calibrated, folder)
    before = json.loads((folder / "model.json").read_text())
    entry = refit(calibrated.parent / "best.pt", folder, calibrated.parent / "data", method="regression",
                  windows=ATTRIBUTE_WINDOWS)
    after = json.loads((folder / "model.json").read_text())
    assert entry["method"] == after["attributes"]["method"] == "regression" and "calibration" not in entry
    assert after["sha256"][ATTRIBUTES_FILE] == hashlib.sha256((folder / ATTRIBUTES_FILE).read_bytes()).hexdigest()
    graphs = {name for name in before["sha256"] if name.endswith(".onnx")}
    assert graphs and all(after["sha256"][name] == before["sha256"][name] for name in graphs)
    assert {key: value for key, value in after.items() if key not in ("attributes", "sha256")} == \
        {key: value for key, value in before.items() if key not in ("attributes", "sha256")}
    regression, _ = regression_of(calibrated)
    np.testing.assert_allclose(load_model(folder).attributes.vectors, regression, rtol=1e-4, atol=1e-5)
    other = save_model_checkpoint(tiny_model("melody"), tmp_path / "other.pt", step=7,
                                  dataset_hash=before["dataset_hash"])
    with pytest.raises(ValueError, match=r"was exported with step 0, not 7 .* give the checkpoint and dataset it "
                                         r"was exported from"):
        refit(other, folder, calibrated.parent / "data")
