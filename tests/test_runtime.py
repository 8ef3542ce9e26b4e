"""The torch-free runtime: the sampling API on real onnxruntime sessions, and refusal of broken model dirs."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from musicbridge import runtime
from musicbridge.export.exporter import export_model
from musicbridge.export.testing import tiny_model
from musicbridge.runtime import ModelLoadError, load_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(torch model, exported dir) of a tiny flat melody model."""
    model = tiny_model("melody", bars=2)
    path = tmp_path_factory.mktemp("model")
    export_model(model, path, preset="tiny")
    return model, path


@pytest.fixture
def broken(exported, tmp_path):
    """A fresh copy of the exported model to damage."""
    target = tmp_path / "model"
    shutil.copytree(exported[1], target)
    return target


def windows(n, steps=32, seed=0):
    return np.random.default_rng(seed).integers(0, 90, (n, steps))


def test_encode_and_sample_shapes_and_greedy_equals_torch(exported):
    model, path = exported
    rt = load_model(path)
    mu, sigma = rt.encode(windows(3))
    assert mu.shape == sigma.shape == (3, 6) and mu.dtype == np.float32 and (sigma > 0).all()
    assert rt.encode(windows(1)[0])[0].shape == (1, 6)  # one phrase without a batch axis
    greedy = rt.sample(mu, temperature=0.0)
    assert greedy.dtype == np.int64 and greedy.shape == (3, 32)
    assert np.array_equal(greedy, model.decode(torch.from_numpy(mu), temperature=0.0).numpy())


def test_sampling_is_reproducible_for_a_seed_and_varies_without(exported):
    rt = load_model(exported[1])
    z = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    assert np.array_equal(rt.sample(z, 1.0, seed=5), rt.sample(z, 1.0, seed=5))
    assert not np.array_equal(rt.sample(z, 1.5, seed=5), rt.sample(z, 1.5, seed=6))
    assert np.array_equal(rt.sample_prior(3, seed=2), rt.sample_prior(3, seed=2))
    assert rt.sample_prior(16, temperature=0.5).shape == (16, 32)
    samples = rt.sample_prior(64, temperature=1.0, seed=1)
    assert samples.min() >= 0 and samples.max() < 90  # never the start token


def test_temperature_moves_samples_away_from_greedy(exported):
    rt = load_model(exported[1])
    z = np.zeros((64, 6), np.float32)
    greedy = rt.sample(z, 0.0)
    cold = (rt.sample(z, 0.05, seed=1) == greedy).mean()
    hot = (rt.sample(z, 3.0, seed=1) == greedy).mean()
    assert cold > hot


def test_continue_variations_bars_and_novelty(exported):
    model, path = exported
    rt = load_model(path)
    phrase = windows(1)[0]
    out = rt.continue_(phrase, variations=4, seed=3)
    assert out.shape == (4, 32)
    assert np.array_equal(out, rt.continue_(phrase, variations=4, seed=3))
    # novelty 0 and temperature 0: every variation is the greedy decode of μ.
    mu, _ = rt.encode(phrase)
    greedy = rt.sample(mu, 0.0)[0]
    assert all(np.array_equal(row, greedy) for row in rt.continue_(phrase, variations=3, novelty=0.0, temperature=0.0))
    assert rt.continue_(windows(2), bars=1, seed=1).shape == (2, 16)
    assert rt.continue_(windows(2), bars=5, variations=3, seed=1).shape == (6, 80)  # chained chunks
    assert rt.continue_(phrase[:16], seed=1).shape == (1, 32)  # one bar in: repeated to the model's two
    assert rt.continue_(windows(1, steps=64)[0], seed=1).shape == (1, 32)  # longer: the last two bars
    with pytest.raises(ValueError):
        rt.continue_(phrase, variations=0)


def test_interpolate_walks_from_a_to_b(exported):
    rt = load_model(exported[1])
    a, b = windows(2)
    path = rt.interpolate(a, b, 5)
    assert path.shape == (5, 32)
    assert np.array_equal(path[0], a) and np.array_equal(path[-1], b)  # the phrases themselves
    mu, _ = rt.encode(np.stack([a, b]))
    decoded = rt.interpolate(a, b, 5, ends="decoded")  # every point from the latent path, the ends too
    assert np.array_equal(decoded[0], rt.sample(mu[:1], 0.0)[0])
    assert np.array_equal(decoded[-1], rt.sample(mu[1:], 0.0)[0])
    with pytest.raises(ValueError, match="steps must be ≥ 2"):
        rt.interpolate(a, b, 1)
    assert rt.interpolate(windows(3), windows(3, seed=1), 4).shape == (3, 4, 32)
    unit = runtime.slerp(np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.5]))
    assert np.allclose(unit, [[np.sqrt(0.5), np.sqrt(0.5)]])


def test_teacher_forced_logits_match_torch(exported):
    model, path = exported
    rt = load_model(path)
    tokens = windows(4)
    inputs = rt.decoder_inputs(tokens)
    assert np.array_equal(inputs, model.decoder_inputs(torch.from_numpy(tokens)).numpy())
    z = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    with torch.no_grad():
        reference = model.teacher_forced_logits(torch.from_numpy(z), torch.from_numpy(inputs)).numpy()
    assert np.abs(rt.teacher_forced_logits(tokens, z) - reference).max() < 1e-4
    with pytest.raises(ValueError, match=r"\(4, 6\)"):
        rt.teacher_forced_logits(tokens, z[:3])


def test_bad_calls_are_refused_clearly(exported):
    rt = load_model(exported[1])
    with pytest.raises(ValueError, match=r"\(batch, 32\)"):
        rt.encode(np.zeros((2, 31), np.int64))
    with pytest.raises(ValueError, match=r"\[0, 90\)"):
        rt.encode(np.full((1, 32), 90))
    with pytest.raises(ValueError, match="integers"):
        rt.encode(np.zeros((1, 32), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, 6\)"):
        rt.sample(np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match="temperature"):
        rt.sample(np.zeros((1, 6), np.float32), temperature=-1)


def test_providers_cpu_unless_a_gpu_is_really_there():
    assert runtime.choose_providers("cpu") == ["CPUExecutionProvider"]
    auto = runtime.choose_providers("auto")
    assert auto[0] == ("CUDAExecutionProvider" if runtime.gpu_present() else "CPUExecutionProvider")
    with pytest.raises(ValueError, match="unknown device"):
        runtime.choose_providers("tpu")


def test_loaded_model_uses_one_thread_and_opens_what_sampling_needs(exported):
    rt = load_model(exported[1])
    assert rt.threads == 1 and rt.providers == ["CPUExecutionProvider"]
    assert set(rt._sessions) == {"encoder", "sampler"}  # teacher_forced opens on first use


def test_warm_up_runs_the_graphs_at_load(broken):
    """Warm-up runs encoder and sampler once while loading (so the first real call is not the slow one): a
    sampler that opens but cannot run loads without warm-up — nothing has run it — and is refused with it."""
    rename_noise_input(broken)
    cold = load_model(broken, warmup=False)
    assert set(cold._sessions) == {"encoder", "sampler"}
    with pytest.raises(ModelLoadError, match="fail on a test input"):
        load_model(broken)


# -- refusals ---------------------------------------------------------------------------------------------------


def rewrite_metadata(path, **changes):
    metadata = json.loads((path / "model.json").read_text())
    metadata.update(changes)
    (path / "model.json").write_text(json.dumps(metadata))
    return metadata


def test_missing_directory_and_unknown_name(tmp_path):
    with pytest.raises(ModelLoadError, match="no shipped model called 'no_such_model'"):
        load_model("no_such_model")
    with pytest.raises(ModelLoadError, match="no model directory"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="no model.json"):
        load_model(tmp_path)
    (tmp_path / "file.onnx").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(tmp_path / "file.onnx")


def test_truncated_graph_is_refused(broken):
    data = (broken / "sampler.onnx").read_bytes()
    (broken / "sampler.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="sampler.onnx is corrupt or truncated"):
        load_model(broken)


def test_corrupt_graph_with_a_matching_checksum_is_refused_by_onnxruntime(broken):
    garbage = bytes(range(256)) * 64
    (broken / "encoder.onnx").write_bytes(garbage)
    metadata = json.loads((broken / "model.json").read_text())
    metadata["sha256"]["encoder.onnx"] = hashlib.sha256(garbage).hexdigest()
    (broken / "model.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match="encoder.onnx is not a usable ONNX graph"):
        load_model(broken)


def test_missing_graph_file_is_refused(broken):
    (broken / "encoder.onnx").unlink()
    with pytest.raises(ModelLoadError, match="missing graph file .*encoder.onnx"):
        load_model(broken)


def test_unknown_representation_version_is_refused(broken):
    metadata = json.loads((broken / "model.json").read_text())
    rewrite_metadata(broken, representation=metadata["representation"] | {"version": "7"})
    with pytest.raises(ModelLoadError, match="version '7' is not known"):
        load_model(broken)
    rewrite_metadata(broken, representation=metadata["representation"] | {"name": "lute_tablature"})
    with pytest.raises(ModelLoadError, match="unknown representation 'lute_tablature'"):
        load_model(broken)


def test_wrong_metadata_is_refused(broken):
    original = json.loads((broken / "model.json").read_text())
    rewrite_metadata(broken, z_size=7)
    with pytest.raises(ModelLoadError, match="z_size"):
        load_model(broken)
    rewrite_metadata(broken, **(original | {"bars": 3}))
    with pytest.raises(ModelLoadError, match="steps 32 != bars"):
        load_model(broken)
    rewrite_metadata(broken, **(original | {"format": 2}))
    with pytest.raises(ModelLoadError, match="format 2"):
        load_model(broken)
    rewrite_metadata(broken, **(original | {"vocab_size": "ninety"}))
    with pytest.raises(ModelLoadError, match="'vocab_size' missing or not of type int"):
        load_model(broken)
    rewrite_metadata(broken, **original)
    with pytest.raises(ModelLoadError, match="no 'int8' variant"):
        load_model(broken, variant="int8")
    (broken / "model.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(broken)


def test_graphs_from_different_exports_are_refused(broken, tmp_path):
    other = tmp_path / "other"
    export_model(tiny_model("melody", bars=2, z_size=5), other, preset="tiny")
    shutil.copy(other / "sampler.onnx", broken / "sampler.onnx")
    metadata = json.loads((broken / "model.json").read_text())
    metadata["sha256"]["sampler.onnx"] = json.loads((other / "model.json").read_text())["sha256"]["sampler.onnx"]
    (broken / "model.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match="different exports"):
        load_model(broken)


def test_shipped_model_names_resolve(monkeypatch, tmp_path, exported):
    shipped = tmp_path / "shipped"
    shutil.copytree(exported[1], shipped / "tiny_melody")
    monkeypatch.setattr(runtime, "SHIPPED_DIR", shipped)
    assert runtime.shipped_models() == ["tiny_melody"]
    assert load_model("tiny_melody").path == shipped / "tiny_melody"
    with pytest.raises(ModelLoadError, match="shipped models: tiny_melody"):
        load_model("tiny_drums")


def test_graph_names_outside_the_directory_are_refused(broken):
    metadata = json.loads((broken / "model.json").read_text())
    metadata["variants"]["fp32"]["sampler"] = "../elsewhere/sampler.onnx"
    (broken / "model.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match="no usable sampler graph"):
        load_model(broken)


def test_graph_that_loads_but_does_not_fit_is_refused(broken, tmp_path):
    """The teacher-forced graph of the same export in the sampler's place: same metadata, wrong inputs."""
    metadata = json.loads((broken / "model.json").read_text())
    metadata["variants"]["fp32"]["sampler"] = "teacher_forced.onnx"
    (broken / "model.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match="role"):
        load_model(broken)


def rename_noise_input(path):
    """Rename the sampler's noise input (the runtime feeds "noise"), checksum updated: the graph still opens in
    onnxruntime and fails only when run."""
    import onnx

    graph = onnx.load(path / "sampler.onnx")
    graph.graph.input[1].name = "renamed_noise"
    for node in graph.graph.node:
        node.input[:] = ["renamed_noise" if name == "noise" else name for name in node.input]
    data = graph.SerializeToString()
    (path / "sampler.onnx").write_bytes(data)
    metadata = json.loads((path / "model.json").read_text())
    metadata["sha256"]["sampler.onnx"] = hashlib.sha256(data).hexdigest()
    (path / "model.json").write_text(json.dumps(metadata))


def test_graph_that_does_not_run_as_described_is_refused(broken):
    rename_noise_input(broken)
    with pytest.raises(ModelLoadError, match="fail on a test input"):
        load_model(broken)
