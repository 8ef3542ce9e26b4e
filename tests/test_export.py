"""Checkpoint → ONNX: parity with torch for flat/hierarchical melody/drums models, metadata, variants, the CLI."""

import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from musicbridge.codecs import UnknownRepresentationError, get_codec
from musicbridge.data.build import dataset_hash
from musicbridge.export.checkpoint import export_checkpoint
from musicbridge.export.exporter import export_model
from musicbridge.export.parity import check_parity, torch_sample_with_noise
from musicbridge.export.testing import save_model_checkpoint, tiny_model
from musicbridge.runtime import load_model
from musicbridge.training.checkpoint import CheckpointError, load_trained_model

torch.set_num_threads(1)

CASES = [(False, "melody"), (True, "melody"), (False, "drums"), (True, "drums")]


def random_windows(model, n=48, seed=0):
    return np.random.default_rng(seed).integers(0, model.config.vocab_size, (n, model.steps))


@pytest.mark.parametrize("hierarchical,representation", CASES)
def test_exported_graphs_match_torch(tmp_path, hierarchical, representation):
    model = tiny_model(representation, hierarchical, bars=2)
    export_model(model, tmp_path, preset="tiny")
    report = check_parity(model, tmp_path, random_windows(model), batch_size=16)
    assert report["mu_sigma_max_diff"] <= 1e-4
    assert report["logits_max_diff"] <= 1e-3
    assert report["greedy_identical"] >= 0.99
    assert report["sampled_identical"] >= 0.99  # the same Gumbel noise through both engines
    assert report["passed"]


@pytest.mark.parametrize("hierarchical", [False, True])
def test_sampler_with_noise_matches_torch_reference_exactly(tmp_path, hierarchical):
    model = tiny_model("melody", hierarchical, bars=4)
    export_model(model, tmp_path, preset="tiny")
    runtime = load_model(tmp_path)
    z = np.random.default_rng(1).standard_normal((8, model.z_size)).astype(np.float32)
    noise = runtime.noise(8, 0.8, np.random.default_rng(2))
    ours = runtime.run_sampler(z, noise)
    reference = torch_sample_with_noise(model, torch.from_numpy(z), torch.from_numpy(noise)).numpy()
    assert np.array_equal(ours, reference)
    assert np.array_equal(runtime.sample(z, temperature=0.0), model.decode(torch.from_numpy(z), temperature=0.0).numpy())


def test_metadata_round_trip(tmp_path):
    model = tiny_model("drums", hierarchical=True, bars=2)
    written = export_model(model, tmp_path, preset="tiny", dataset_hash="ab" * 32, checkpoint_step=7)
    on_disk = json.loads((tmp_path / "model.json").read_text())
    assert on_disk == written
    assert on_disk["representation"] == get_codec("drums").describe()
    assert (on_disk["bars"], on_disk["steps_per_bar"], on_disk["steps"], on_disk["z_size"]) == (2, 16, 32, 6)
    assert on_disk["hierarchical"] is True and on_disk["preset"] == "tiny" and on_disk["checkpoint_step"] == 7
    assert on_disk["opset"] == 17 and on_disk["musicbridge_version"] and on_disk["exported_at"]
    for role, name in on_disk["variants"]["fp32"].items():
        graph = onnx.load(tmp_path / name)
        onnx.checker.check_model(graph, full_check=True)
        assert graph.opset_import[0].version == 17
        props = {p.key: json.loads(p.value) for p in graph.metadata_props}
        assert props["musicbridge.role"] == role and props["musicbridge.variant"] == "fp32"
        for key in ("representation", "bars", "steps_per_bar", "z_size", "hierarchical", "preset", "dataset_hash",
                    "musicbridge_version", "exported_at", "opset"):
            assert props[f"musicbridge.{key}"] == on_disk[key], key
    runtime = load_model(tmp_path)
    assert runtime.metadata == on_disk
    assert (runtime.codec.name, runtime.bars, runtime.steps, runtime.z_size) == ("drums", 2, 32, 6)


def test_int8_and_fp16_variants_load_and_run(tmp_path):
    model = tiny_model("melody", bars=2)
    metadata = export_model(model, tmp_path, preset="tiny", variants=("int8", "fp16"))
    assert metadata["default_variant"] == "int8"
    assert set(metadata["variants"]) == {"fp32", "int8", "fp16"}
    int8 = load_model(tmp_path)
    assert int8.variant == "int8"
    ops = {node.op_type for node in onnx.load(tmp_path / "encoder.int8.onnx").graph.node}
    assert ops & {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul"}, ops
    tokens = random_windows(model, 4)
    for variant in ("int8", "fp16"):
        runtime = load_model(tmp_path, variant=variant)
        mu, sigma = runtime.encode(tokens)
        reference, _ = model.encode(torch.from_numpy(tokens))
        assert np.abs(mu - reference.detach().numpy()).max() < 0.2  # close, not equal: that is the point
        assert runtime.sample(mu, temperature=0.0).shape == (4, 32)
        assert runtime.continue_(tokens[0], variations=2, seed=1).shape == (2, 32)


def test_newer_opset_exports_and_checks(tmp_path):
    model = tiny_model("melody", hierarchical=True)
    export_model(model, tmp_path, preset="tiny", opset=21)
    assert check_parity(model, tmp_path, random_windows(model, 16))["passed"]
    with pytest.raises(ValueError, match="opset 12"):
        export_model(model, tmp_path / "old", preset="tiny", opset=12)


def test_unrolled_decoder_computes_the_same_as_the_loop():
    """The unrolled variant (kept for the measurements in docs/export.md) is the same function."""
    import onnxruntime as ort

    from musicbridge.export.graph import Graph, make_model
    from musicbridge.export.musicvae import sampler_graph, weights_of

    model = tiny_model("drums", hierarchical=True)
    sessions = {}
    for unroll in (False, True):
        graph = Graph("sampler")
        sampler_graph(graph, weights_of(model), vars(model.config), unroll=unroll)
        onnx_model = make_model(graph, 17, {})
        assert ("Scan" in {n.op_type for n in onnx_model.graph.node}) is not unroll
        sessions[unroll] = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"z": rng.standard_normal((3, 6)).astype(np.float32),
            "noise": rng.gumbel(size=(3, model.steps, 512)).astype(np.float32), "logit_mask": np.zeros(512, np.float32)}
    assert np.array_equal(sessions[False].run(None, feed)[0], sessions[True].run(None, feed)[0])


def test_decoder_step_is_lean_and_quantised(tmp_path):
    """Every node of the decoder's Scan body runs once per token (at batch 1 the step is node-bound, docs/export.md
    decision 7): the richest step — lookback, event_first, two layers — stays within its node budget (outputs carry
    no Identity per value; the Scan slices the noise and lookback terms, so the token table is the one Gather),
    and int8 quantises every matmul inside the body (the quantiser's EnableSubgraph)."""
    model = tiny_model("melody", lookback=True)
    export_model(model, tmp_path, preset="tiny", task="continue", rule="event_first", variants=("fp32", "int8"))

    def body(name):
        scan = next(n for n in onnx.load(tmp_path / name).graph.node if n.op_type == "Scan")
        return [n.op_type for n in next(a.g for a in scan.attribute if a.name == "body").node]

    fp32, int8 = body("sampler.onnx"), body("sampler.int8.onnx")
    assert len(fp32) <= 35 and fp32.count("Identity") == 1 and fp32.count("Gather") == 1, fp32
    assert "MatMul" not in int8 and int8.count("MatMulInteger") == fp32.count("MatMul") == 3, int8


def test_checkpoint_round_trip_and_refusals(tmp_path):
    model = tiny_model("melody", hierarchical=True)
    path = save_model_checkpoint(model, tmp_path / "ok.pt", step=42)
    loaded, checkpoint = load_trained_model(path)
    assert checkpoint["step"] == 42
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    assert export_checkpoint(path, tmp_path / "out")["checkpoint_step"] == 42

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable musicbridge checkpoint"):
        load_trained_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_trained_model(tmp_path / "missing.pt")
    data = torch.load(path, weights_only=True)
    data["representation"]["version"] = "99"
    torch.save(data, tmp_path / "future.pt")
    with pytest.raises(UnknownRepresentationError, match="version '99'"):
        load_trained_model(tmp_path / "future.pt")


def cli(*args):
    from musicbridge.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def write_dataset(path, model, n=40):
    codec = get_codec(model.config.representation)
    rng = np.random.default_rng(3)
    arrays = {split: rng.integers(0, codec.vocab_size, (n, model.steps)).astype(np.uint16)
              for split in ("train", "valid", "test")}
    path.mkdir()
    for split, array in arrays.items():
        np.save(path / f"{split}.npy", array)
    manifest = {"format": 1, "representation": codec.describe(), "bars": model.config.bars, "hop": 1,
                "steps": model.steps, "hash": dataset_hash(codec, arrays)}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return manifest["hash"]


def test_export_command_checks_parity_on_the_test_split(tmp_path):
    model = tiny_model("melody")
    data_hash = write_dataset(tmp_path / "data", model)
    checkpoint = save_model_checkpoint(model, tmp_path / "best.pt", dataset_hash=data_hash)
    result = cli("export", checkpoint, "-o", tmp_path / "out", "--quantize", "int8", "--data", tmp_path / "data",
                 "--parity-sequences", 32, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and [r["variant"] for r in report["parity"]] == ["fp32", "int8"]
    assert report["parity"][0]["sequences"] == 32
    metadata = json.loads((tmp_path / "out" / "model.json").read_text())
    assert metadata["dataset_hash"] == data_hash and "test" in metadata["parity"]["checked_on"]
    assert load_model(tmp_path / "out").variant == "int8"


def test_export_command_refuses_bad_input_clearly(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    result = cli("export", tmp_path / "junk.pt", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "not a readable musicbridge checkpoint" in result.output
    model = tiny_model("melody")
    checkpoint = save_model_checkpoint(model, tmp_path / "ok.pt")
    result = cli("export", checkpoint, "-o", tmp_path / "out", "--quantize", "int4")
    assert result.exit_code == 1 and "int8" in result.output
    drums = tiny_model("drums")
    write_dataset(tmp_path / "drums_data", drums)
    result = cli("export", checkpoint, "-o", tmp_path / "out", "--data", tmp_path / "drums_data")
    assert result.exit_code == 1 and "drums windows" in result.output


def test_other_architectures_are_refused_clearly(tmp_path):
    model = tiny_model("melody")
    model.config.architecture = "gru"
    with pytest.raises(ValueError, match="'gru' architecture is not supported"):
        export_model(model, tmp_path, preset="tiny")
