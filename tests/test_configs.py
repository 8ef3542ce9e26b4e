"""Per-architecture configs: validation, overrides, the stored layout that names the architecture, checkpoints
written with the one union config (before the split) still loading and computing what they did, and bench's
FLOPs per architecture.

tests/data/union_config_{musicvae,transformer}.pt were written by musicbridge as it was before the split (commit
e51f0bb: `export.testing.save_model_checkpoint` of a tiny model, config["model"] the union of every field);
union_config_outputs.json holds μ, σ and the greedy decoding of μ each computed then for two phrases.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import write_dataset
from typer.testing import CliRunner

from musicbridge.benchmarks.flops import largest_matvec, op_flops
from musicbridge.cli import app
from musicbridge.export.exporter import export_model
from musicbridge.export.testing import save_model_checkpoint, tiny_model
from musicbridge.models import (
    ARCHITECTURES,
    MusicVAE,
    MusicVAEConfig,
    Preset,
    TransformerVAE,
    TransformerVAEConfig,
    build_model,
    config_from_dict,
    get_preset,
    load_toml_overrides,
    preset_from_dict,
    preset_names,
)
from musicbridge.runtime import load_model
from musicbridge.training.checkpoint import (
    CHECKSUM_KEY,
    load_checkpoint,
    load_trained_model,
    save_checkpoint,
    tensors_digest,
)
from musicbridge.training.trainer import Trainer

torch.set_num_threads(1)

DATA = Path(__file__).parent / "data"
OLD = {"musicvae": DATA / "union_config_musicvae.pt", "transformer": DATA / "union_config_transformer.pt"}
# The union ModelConfig's transformer fields at their defaults, as every MusicVAE checkpoint of that time held them.
UNION_TRANSFORMER_DEFAULTS = {"architecture": "musicvae", "d_model": 128, "heads": 4, "ff_size": 512,
                              "dropout": 0.1, "positions": "learned", "latent": "vector", "latent_frames": 4,
                              "memory_tokens": 4, "z_in_inputs": True}
TINY_TRANSFORMER = {"d_model": 16, "heads": 2, "ff_size": 32, "enc_layers": 1, "dec_layers": 1, "z_size": 8}


# -- old checkpoints ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["musicvae", "transformer"])
def test_checkpoints_written_with_the_union_config_load_and_compute_what_they_did(architecture, tmp_path):
    checkpoint = load_checkpoint(OLD[architecture])
    assert "architecture" not in checkpoint  # written before checkpoints named it at the top level
    stored = checkpoint["config"]["model"]
    assert {"d_model", "enc_size", "hierarchical", "lookback"} <= set(stored)  # both architectures' fields
    model, _ = load_trained_model(OLD[architecture])
    assert type(model) is {"musicvae": MusicVAE, "transformer": TransformerVAE}[architecture]
    assert model.config.architecture == architecture
    # The fields of the other architecture are gone, the model's own kept their values (one added since: its default).
    defaults = {field.name: field.default for field in dataclasses.fields(model.config)}
    assert all(getattr(model.config, name) == stored.get(name, defaults[name]) for name in defaults)

    expected = json.loads((DATA / "union_config_outputs.json").read_text())
    tokens = torch.tensor(expected["tokens"])
    with torch.no_grad():
        mu, sigma = model.encode(tokens)
        greedy = model.decode(mu, temperature=0.0)
    torch.testing.assert_close(mu, torch.tensor(expected[architecture]["mu"]), atol=1e-6, rtol=0)
    torch.testing.assert_close(sigma, torch.tensor(expected[architecture]["sigma"]), atol=1e-6, rtol=0)
    assert greedy.tolist() == expected[architecture]["greedy"]

    # It exports, and the export names the architecture (model.json and every graph's metadata).
    metadata = export_model(model, tmp_path / "out", preset=checkpoint["preset"])
    assert metadata["architecture"] == architecture and metadata["config"]["architecture"] == architecture
    runtime = load_model(tmp_path / "out", device="cpu")
    props = runtime.session("encoder").get_modelmeta().custom_metadata_map
    assert json.loads(props["musicbridge.architecture"]) == architecture
    np.testing.assert_allclose(runtime.encode(tokens.numpy())[0], mu.numpy(), atol=1e-4)


def test_union_dicts_of_every_age_read_as_their_architecture():
    # Before the transformer existed: no architecture, no transformer fields, no lookback.
    pre_transformer = {"representation": "melody", "vocab_size": 90, "steps_per_bar": 16, "bars": 2,
                       "hierarchical": True, "embed_size": 8, "enc_size": 12, "enc_layers": 1, "z_size": 6,
                       "conductor_size": 10, "conductor_layers": 1, "dec_size": 16, "dec_layers": 1}
    config = config_from_dict(pre_transformer)
    assert type(config) is MusicVAEConfig and config.hierarchical and not config.lookback
    # The full union, as every checkpoint since held it.
    union = pre_transformer | {"lookback": False} | UNION_TRANSFORMER_DEFAULTS
    assert config_from_dict(union) == config
    transformer = config_from_dict(union | {"architecture": "transformer", "d_model": 16, "heads": 2})
    assert type(transformer) is TransformerVAEConfig and (transformer.d_model, transformer.enc_layers) == (16, 1)
    # A key no architecture ever had is refused, by name.
    with pytest.raises(KeyError, match="unknown musicvae settings: hidden"):
        config_from_dict(union | {"hidden": 3})
    with pytest.raises(ValueError, match="unknown architecture 'gru'"):
        config_from_dict(union | {"architecture": "gru"})


def test_a_run_saved_with_the_union_config_resumes(tmp_path):
    """last.pt of a run from before the split (its config rewritten to the union layout) resumes exactly there."""
    data = write_dataset(tmp_path / "data")
    tiny = {"embed_size": 8, "enc_size": 16, "dec_size": 16, "dec_layers": 1, "z_size": 4, "batch_size": 8,
            "log_every": 1, "eval_every": 2, "eval_sequences": 16}
    from musicbridge.data import load_dataset

    Trainer(get_preset("mel_2bar", tiny | {"steps": 2}), load_dataset(data), tmp_path / "run", device="cpu",
            show_progress=False).run()
    last = tmp_path / "run" / "last.pt"
    checkpoint = load_checkpoint(last)
    del checkpoint["architecture"]
    checkpoint["config"]["model"] |= UNION_TRANSFORMER_DEFAULTS
    checkpoint[CHECKSUM_KEY] = tensors_digest(checkpoint)
    save_checkpoint(last, checkpoint)
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--resume",
                                      "--steps", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    resumed = load_checkpoint(last)
    assert resumed["step"] == 3 and resumed["architecture"] == "musicvae"
    assert resumed["config"]["model"]["architecture"] == "musicvae" and "d_model" not in resumed["config"]["model"]


# -- the stored layout ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_round_trips_and_names_its_architecture(name):
    preset = get_preset(name)
    stored = preset.to_dict()
    assert stored["model"]["architecture"] == preset.model.architecture in ARCHITECTURES
    assert set(stored["model"]) == {"architecture", *type(preset.model).field_names()}
    assert preset_from_dict(json.loads(json.dumps(stored))) == preset
    assert build_model(stored["model"]).config == preset.model


def test_checkpoints_name_the_architecture(tmp_path):
    path = save_model_checkpoint(tiny_model("melody"), tmp_path / "tiny.pt")
    checkpoint = load_checkpoint(path)
    assert checkpoint["architecture"] == checkpoint["config"]["model"]["architecture"] == "musicvae"


def test_presets_state_only_what_they_change():
    """mel_2bar is MusicVAEConfig's defaults and mel_2bar_transformer TransformerVAEConfig's (the presets say so)."""
    assert get_preset("mel_2bar").model == MusicVAEConfig()
    assert get_preset("mel_2bar_transformer").model == TransformerVAEConfig()
    assert get_preset("mel_2bar_next_lookback").model == dataclasses.replace(MusicVAEConfig(), lookback=True)


# -- validation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls,field", [(MusicVAEConfig, "enc_size"), (MusicVAEConfig, "dec_layers"),
                                       (MusicVAEConfig, "bars"), (MusicVAEConfig, "z_size"),
                                       (TransformerVAEConfig, "d_model"), (TransformerVAEConfig, "heads"),
                                       (TransformerVAEConfig, "memory_tokens")])
def test_sizes_below_one_are_refused_naming_the_field(cls, field):
    with pytest.raises(ValueError, match=f"{field} must be a whole number of at least 1 .*--set {field}="):
        cls(**{field: 0})


def test_architecture_specific_rules_are_checked():
    MusicVAEConfig(conductor_size=0)  # flat: the conductor's sizes are not read
    with pytest.raises(ValueError, match="conductor_size must be"):
        MusicVAEConfig(hierarchical=True, conductor_size=0)
    with pytest.raises(ValueError, match="divisible by heads 3; change d_model or heads"):
        TransformerVAEConfig(d_model=16, heads=3)
    with pytest.raises(ValueError, match="dropout must lie in"):
        TransformerVAEConfig(dropout=1.0)
    with pytest.raises(ValueError, match="choose one of 32, 16, 8"):
        TransformerVAEConfig(latent="matrix", latent_frames=3)
    config = MusicVAEConfig()
    config.dec_size = -4  # configs are plain dataclasses: build_model validates again
    with pytest.raises(ValueError, match="dec_size"):
        build_model(config)


# -- overrides ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mel_2bar", "mel_16bar_hier", "mel_2bar_transformer", "mel_16bar_transformer"])
def test_overrides_work_for_every_architecture(name, tmp_path):
    preset = get_preset(name, {"z_size": "64", "model.bars": 4, "train.batch_size": 16, "steps": "2e3"})
    assert (preset.model.z_size, preset.model.bars, preset.train.batch_size, preset.train.steps) == (64, 4, 16, 2000)
    own = {"musicvae": {"dec_size": 32}, "transformer": {"d_model": 64}}[preset.model.architecture]
    toml = tmp_path / "run.toml"
    field, value = next(iter(own.items()))
    toml.write_text(f'preset = "{name}"\n[model]\n{field} = {value}\n[train]\nlr = 1e-4\n')
    preset = get_preset(name, load_toml_overrides(toml))
    assert getattr(preset.model, field) == value and preset.train.lr == 1e-4


def test_a_setting_of_another_architecture_is_refused_with_the_settings_that_exist():
    with pytest.raises(KeyError, match="setting 'd_model' belongs to the transformer architecture; preset 'mel_2bar' "
                                       "builds a musicvae model, whose settings are: .*dec_size"):
        get_preset("mel_2bar", {"d_model": 64})
    with pytest.raises(KeyError, match="setting 'hierarchical' belongs to the musicvae architecture"):
        get_preset("mel_2bar_transformer", {"model.hierarchical": True})
    with pytest.raises(KeyError, match="unknown setting 'zsize'"):
        get_preset("mel_2bar_transformer", {"zsize": 3})
    with pytest.raises(ValueError, match="divisible by heads"):  # checked once every override is in
        get_preset("mel_2bar_transformer", {"heads": 3})
    assert get_preset("mel_2bar_transformer", {"heads": 8, "d_model": 64}).model.heads == 8  # order is free


def test_architecture_override_switches_the_config_keeping_the_shared_fields():
    preset = get_preset("drums_2bar", {"architecture": "transformer", "d_model": 32, "heads": 2})
    assert type(preset.model) is TransformerVAEConfig and preset.model.d_model == 32
    assert (preset.model.representation, preset.model.vocab_size, preset.model.z_size) == ("drums", 512, 256)
    with pytest.raises(ValueError, match="unknown architecture 'rnn'"):
        get_preset("mel_2bar", {"architecture": "rnn"})


def test_the_cli_refuses_a_foreign_setting_in_one_sentence(tmp_path):
    result = CliRunner().invoke(app, ["train", "--preset", "mel_2bar", "--data", str(tmp_path / "none"),
                                      "--out", str(tmp_path / "run"), "--set", "heads=2"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "setting 'heads' belongs to the transformer architecture" in " ".join(result.output.split())


# -- bench FLOPs per architecture -----------------------------------------------------------------------------


def test_flops_per_architecture():
    musicvae = Preset("m", MusicVAEConfig()).to_dict()["model"]
    union = {key: value for key, value in musicvae.items() if key != "architecture"} | {"hierarchical": False}
    assert op_flops(musicvae, "encode", 1) == op_flops(union, "encode", 1) > 0  # an old model.json's config too
    assert largest_matvec(musicvae) == (512, 1024)
    transformer = Preset("t", TransformerVAEConfig()).to_dict()["model"]
    assert op_flops(transformer, "sample_prior", 1) is None and largest_matvec(transformer) is None
    # A vsae serves through the flat MusicVAE it is made of (its discriminator never runs): that one's FLOPs.
    vsae = get_preset("mel_2bar_vsae", {"z_size": 32, "dec_layers": 1})
    stored, autoencoder = vsae.to_dict()["model"], Preset("a", vsae.model.autoencoder()).to_dict()["model"]
    for op in ("encode", "continue", "interpolate", "sample_prior"):
        assert op_flops(stored, op, 3) == op_flops(autoencoder, op, 3) > 0
    assert largest_matvec(stored) == largest_matvec(autoencoder) == (256, 1024)


@pytest.mark.timeout(600)
def test_bench_leaves_the_flop_columns_out_for_an_architecture_without_a_formula(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_model(get_preset("mel_2bar_transformer", TINY_TRANSFORMER).model).eval()
    checkpoint = save_model_checkpoint(model, tmp_path / "tiny" / "best.pt", preset="mel_2bar_transformer")
    result = CliRunner().invoke(app, ["bench", "--model", str(checkpoint), "--runs", "2", "--batches", "1",
                                      "--ops", "encode,sample_prior", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert records and all(r["op"] != "matvec" for r in records)  # no bound to set GFLOP/s against
    assert all("gflops" not in r and "of_matvec_bound" not in r and r["p50_ms"] > 0 for r in records)
    from musicbridge.benchmarks.commands import _print

    capsys.readouterr()
    _print(records)  # the table shows a dash where the columns have nothing
    table = capsys.readouterr().out
    assert "–" in table
