"""Named presets in the spirit of Magenta's music_vae configs.py: a representation, a model config of one
architecture and training hyper-parameters, each field overridable (CLI flags or a TOML file).

    preset = get_preset("mel_2bar", overrides={"z_size": 64, "train.batch_size": 32})
    preset = preset_from_dict(checkpoint["config"])

Each architecture's config lives beside its model (MusicVAEConfig in musicvae.py, TransformerVAEConfig in
transformer_vae.py, VSAEConfig in vsae.py; models/architectures.py names them); a preset states only what it changes from that
config's defaults and from TrainConfig's. Sizes are chosen for CPU training (a few hours on a laptop);
Magenta's own configs are 10–50× larger and want a GPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musicbridge.codecs import get_codec
from musicbridge.models.architectures import (
    ARCHITECTURES,
    UNION_FIELDS,
    ModelConfig,
    config_class,
    config_from_dict,
    config_to_dict,
)
from musicbridge.models.config import ArchitectureConfig
from musicbridge.models.musicvae import MusicVAEConfig
from musicbridge.models.transformer_vae import TransformerVAEConfig
from musicbridge.models.vsae import VSAEConfig

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["PRESETS", "ModelConfig", "Preset", "TrainConfig", "apply_overrides", "check_lookback", "get_preset",
           "load_toml_overrides", "preset_from_dict", "preset_names"]


@dataclass
class TrainConfig:
    """Training hyper-parameters; every schedule is a pure function of the step (exact resume)."""

    batch_size: int = 128  # global: split over the processes of a distributed run
    steps: int = 20_000
    seed: int = 0
    # Adam with exponential decay to a floor (Magenta: (lr - min) * decay**step + min).
    lr: float = 1e-3
    lr_decay: float = 0.9999
    lr_min: float = 1e-5
    grad_clip: float = 1.0  # global gradient norm
    # KL term: beta * max(KL - free_bits, 0). free_bits is in BITS per sequence (as in Magenta); the loss
    # works in nats, so it uses free_bits * ln 2 nats.
    beta_max: float = 0.2
    beta_schedule: str = "exponential"  # exponential | linear | cyclical | constant
    beta_rate: float = 0.99999  # exponential: beta = beta_max * (1 - beta_rate**step)
    beta_warmup_steps: int = 10_000  # linear: reach beta_max after this many steps
    beta_cycle_steps: int = 5_000  # cyclical: period; beta rises over the first half of each cycle
    free_bits: float = 48.0
    # Scheduled sampling, inverse sigmoid (Magenta): p = 1 - k / (k + exp(step / k)) within [sampling_min, max].
    sampling_schedule: str = "inverse_sigmoid"  # inverse_sigmoid | constant | none
    sampling_rate: float = 1000.0  # k; for constant: p itself
    sampling_max: float = 1.0
    sampling_min: float = 0.01  # below this p counts as 0: the guide pass is skipped while it would change < 1 %
    token_dropout: float = 0.0  # fraction of decoder inputs replaced by a mask token
    token_dropout_kind: str = "mask"  # mask (word dropout) | random (a random token of the vocabulary)
    token_dropout_warmup_steps: int = 0  # the rate rises linearly from 0 over these steps (0 = from the start)
    free_bits_per: str = "sequence"  # sequence | dimension | frame: free bits shared, or split per group of z
    transpose: int = 5  # melodies: random shift in [-transpose, transpose] semitones on the fly (0 = off)
    # What the model learns: "reconstruct" its input (a VAE), or "continue" — encode the first half of each
    # dataset window (2 × bars long) and decode the second half, so z is a code of what comes next.
    task: str = "reconstruct"
    init_from: str = ""  # a checkpoint whose weights start the run (same model config), e.g. the VAE it continues
    # A hierarchical model grown from a flat one (init_from, segment = the source's whole sequence): for the first
    # N steps the encoder and conductor only learn to hand each segment the source's own code of it (loss.py
    # code_nll; no decoder pass: 1.2 steps/s against 0.75 for mel_16bar_hier on 2 threads), so the bottom decoder
    # gets conditions it can already read before the whole model trains.
    code_steps: int = 0
    # Bookkeeping.
    log_every: int = 50
    eval_every: int = 500
    eval_sequences: int = 2048  # validation windows scored at each evaluation (the first N of the split)


@dataclass
class Preset:
    name: str
    model: ArchitectureConfig = field(default_factory=MusicVAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """The stored form (checkpoints' "config"): the model config names its architecture (config_to_dict)."""
        return {"name": self.name, "model": config_to_dict(self.model), "train": dataclasses.asdict(self.train)}


def _config(cls: type[ArchitectureConfig], representation: str, bars: int, **changes) -> ArchitectureConfig:
    """`cls`'s defaults for `representation` at `bars` bars, with `changes`."""
    codec = get_codec(representation)
    return cls(representation=representation, vocab_size=codec.vocab_size, steps_per_bar=codec.steps_per_bar,
               bars=bars, **changes)


# Sizes for CPU training. Cost is dominated by the LSTMs' matrix products (~50 GFLOP/s per core measured here):
# a 2-bar step of the 2 M-parameter flat model at batch 64 took 0.7–1.4 s on a busy 2-core machine; dec_size 512
# costs ~2.7× that. The step counts are hours of CPU; a GPU run wants Magenta's sizes (dec 3×2048, z 512).
# MusicVAEConfig's defaults are mel_2bar's sizes (embed 64, encoder 1×256 per direction, z 128, decoder 2×256),
# TransformerVAEConfig's mel_2bar_transformer's; each preset below names what it changes.
PRESETS: dict[str, Preset] = {
    # 2-bar melodies, flat decoder (Magenta cat-mel_2bar at CPU size; β and free bits of the MusicVAE paper).
    "mel_2bar": Preset(
        "mel_2bar",
        _config(MusicVAEConfig, "melody", 2),
        TrainConfig(batch_size=64, steps=12_000, beta_schedule="linear", beta_warmup_steps=4_000),
    ),
    # 16-bar melodies with the conductor (Magenta hierdec-mel_16bar at CPU size: β 0.2, 256 free bits).
    # Start it from a trained mel_2bar (--set init_from=runs/mel_2bar/best.pt; models/musicvae.py grown_state):
    # its bottom decoder already writes bars, and the run passes 3,000 steps from scratch within 300.
    # With --set segment_bars=2 each conductor output makes a 2-bar phrase, as the grown mel_2bar decoder learned to,
    # and --set code_steps=1500 first teaches the encoder and conductor mel_2bar's code of each segment (at step 4,000
    # onsets 0.185 and delta_acc 0.111 against 0.139 and 0.081 without them; the shipped mel_16bar is
    # mel_16bar_segments below: 0.79 and 0.43 at step 1,500).
    "mel_16bar_hier": Preset(
        "mel_16bar_hier",
        _config(MusicVAEConfig, "melody", 16, hierarchical=True, z_size=256),
        TrainConfig(batch_size=32, beta_schedule="linear", beta_warmup_steps=5_000, free_bits=256.0),
    ),
    # The baseline that shows what the conductor buys: the same encoder, z and bottom decoder, one flat pass
    # (grown from the same mel_2bar for a fair comparison).
    "mel_16bar_flat": Preset(
        "mel_16bar_flat",
        _config(MusicVAEConfig, "melody", 16, z_size=256),
        TrainConfig(batch_size=32, beta_schedule="linear", beta_warmup_steps=5_000, free_bits=256.0),
    ),
    # Transformer VAE (models/transformer_vae.py) on the same 2-bar windows; 1.8 M parameters (mel_2bar: 1.9 M), a
    # vector z. Token dropout and z added to every decoder input make the decoder need z (docs/transformer.md).
    "mel_2bar_transformer": Preset(
        "mel_2bar_transformer",
        _config(TransformerVAEConfig, "melody", 2),
        TrainConfig(batch_size=64, steps=12_000, lr=5e-4, beta_schedule="linear", beta_warmup_steps=4_000,
                    sampling_schedule="none", token_dropout=0.3, token_dropout_warmup_steps=1_000),
    ),
    # 16 bars: a matrix latent of one 16-dim frame per bar (a 4-conv stack down-samples 256 steps to 16).
    "mel_16bar_transformer": Preset(
        "mel_16bar_transformer",
        _config(TransformerVAEConfig, "melody", 16, enc_layers=2, dec_layers=3, z_size=256, latent="matrix",
                latent_frames=16, memory_tokens=1),
        TrainConfig(batch_size=32, lr=5e-4, beta_schedule="linear", beta_warmup_steps=5_000, free_bits=256.0,
                    free_bits_per="frame", sampling_schedule="none", token_dropout=0.3,
                    token_dropout_warmup_steps=1_000),
    ),
    # The continuation of mel_2bar: the same model, trained to write bars 3–4 of 4-bar windows from bars 1–2
    # (a dataset built with --bars 4), started from mel_2bar's weights (--set init_from=…/best.pt) so it
    # inherits a decoder that already writes melodies. Shipped as the VAE's continuation/ sub-model.
    # 256 free bits instead of 48: z must carry what the input plays (tunes repeat and vary their bars) and
    # not only a style; at 48 bits its next-bar onset F1 stayed at chance (0.06 at step 500, repeat 0.17).
    "mel_2bar_next": Preset(
        "mel_2bar_next",
        _config(MusicVAEConfig, "melody", 2),
        TrainConfig(batch_size=64, steps=6_000, lr=5e-4, beta_schedule="constant", free_bits=256.0,
                    task="continue"),
    ),
    # The vector-space autoencoder (models/vsae.py) on mel_2bar's windows, with mel_2bar's encoder and decoder
    # sizes (so --set init_from=runs/mel_2bar/best.pt starts it from a decoder that already writes melodies).
    # GAN learning rates: 2e-4 for the encoder and decoder, twice that for the discriminator (disc_lr_scale).
    # Its objective reads no β, free bits, scheduled sampling or token dropout (training/objectives.py).
    "mel_2bar_vsae": Preset(
        "mel_2bar_vsae",
        _config(VSAEConfig, "melody", 2),
        TrainConfig(batch_size=64, steps=12_000, lr=2e-4),
    ),
    # 2-bar drum patterns, 9 classes → 512 categories (Magenta cat-drums_2bar_small at CPU size).
    "drums_2bar": Preset(
        "drums_2bar",
        _config(MusicVAEConfig, "drums", 2, z_size=256),
        TrainConfig(batch_size=64, steps=12_000, beta_schedule="linear", beta_warmup_steps=4_000, transpose=0),
    ),
}


def _derived(base: str, name: str, **model_changes) -> Preset:
    """Preset `base` under a new name with only `model_changes` different (a variant states what it changes)."""
    source = PRESETS[base]
    return Preset(name, dataclasses.replace(source.model, **model_changes), dataclasses.replace(source.train))


# mel_2bar_next whose decoder also reads the input phrase step by step (MusicVAEConfig.lookback), so copying with
# changes is easy to learn: mel_2bar_next's onset F1 (0.119) stayed below repeating the input (0.127). Sizes are
# mel_2bar's, so --set init_from=…/mel_2bar/best.pt works (the lookback columns start at zero).
PRESETS["mel_2bar_next_lookback"] = _derived("mel_2bar_next", "mel_2bar_next_lookback", lookback=True)

# mel_2bar_next_lookback whose decoder writes every step at once (decoder_type "parallel", ParallelDecoder): a
# bidirectional LSTM over the phrase it continues and z, one layer of mel_2bar's width. Its steps are scored on
# the truth only, so scheduled sampling (a guide pass of the decoder's own tokens) has nothing to feed; trained from
# scratch at 1e-3 (no autoregressive decoder to start from). The lookback decoder it replaces as the shipped
# continuation stayed below repeating the input (onset F1 0.115 vs 0.127 on the test split).
PRESETS["mel_2bar_next_parallel"] = Preset(
    "mel_2bar_next_parallel",
    dataclasses.replace(PRESETS["mel_2bar_next"].model, lookback=True, decoder_type="parallel", dec_layers=1),
    dataclasses.replace(PRESETS["mel_2bar_next"].train, lr=1e-3, sampling_schedule="none", steps=12_000),
)


# mel_16bar_hier whose encoder reads each 2-bar segment alone and whose conductor is one linear map (models/musicvae.py
# SegmentEncoder, LinearConductor). Grown from mel_2bar (--set init_from=…/mel_2bar/best.pt), it starts where
# mel_2bar leaves off: z is every segment's 32 most informative mel_2bar code dimensions and the conductor hands each
# segment its own (fit_segment_mix), so the bottom decoder is read as it was trained to from step 0. The LSTM
# conductor grown the same way needed 1,500 code steps to reach conditions it could read, and stayed under all-hold.
PRESETS["mel_16bar_segments"] = _derived("mel_16bar_hier", "mel_16bar_segments", segment_bars=2,
                                         encoder_type="segments", conductor_type="linear")


def check_lookback(model: ArchitectureConfig, task: str) -> None:
    """Refuse a lookback model on any task but "continue": reconstructing, its decoder would read its target."""
    if getattr(model, "lookback", False) and task != "continue":
        raise ValueError(f"lookback lets the decoder read the phrase it continues, so it needs task = \"continue\" "
                         f"(this run's task is {task!r}, where it would read its own target); use --preset "
                         f"mel_2bar_next_lookback or --set task=continue, or leave lookback off")


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str, overrides: dict[str, Any] | None = None) -> Preset:
    """A fresh copy of the named preset with `overrides` applied (see `apply_overrides`)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(preset_names())}")
    preset = preset_from_dict(PRESETS[name].to_dict())
    return apply_overrides(preset, overrides or {})


def preset_from_dict(data: dict[str, Any]) -> Preset:
    """Rebuild a preset from `Preset.to_dict()` (e.g. a checkpoint's "config", old or new: config_from_dict);
    unknown keys are refused."""
    return Preset(
        name=str(data["name"]),
        model=config_from_dict(data.get("model", {})),
        train=_dataclass_from(TrainConfig, data.get("train", {})),
    )


def apply_overrides(preset: Preset, overrides: dict[str, Any]) -> Preset:
    """Set fields from a flat or nested mapping: {"z_size": 64}, {"model.z_size": 64} or {"model": {"z_size": 64}}.

    A bare field name is looked up in the preset's model config (its architecture's), then TrainConfig (field
    names are unique across them). Values are converted to the field's type; changing the representation also
    resets vocab_size/steps_per_bar. `architecture`, applied first, changes the model to another architecture's
    config: the shared fields (representation, bars, z_size, …) are kept, the rest take that config's defaults.
    The model config is validated once every override is in.
    """
    items = list(_flatten(overrides))
    for key, value in items:
        if key in ("architecture", "model.architecture"):
            preset.model = _with_architecture(preset.model, str(value))
    for key, value in items:
        section, _, name = key.rpartition(".")
        if name == "architecture" and section in ("", "model"):
            continue
        target = _section_for(preset, section, name, key)
        current = getattr(target, name)
        setattr(target, name, _convert(value, type(current), key))
        if name == "representation":
            codec = get_codec(value)
            target.vocab_size, target.steps_per_bar = codec.vocab_size, codec.steps_per_bar
            if value != "melody":
                preset.train.transpose = 0
    preset.model.validate()
    return preset


def _with_architecture(model: ArchitectureConfig, architecture: str) -> ArchitectureConfig:
    """`model` as a config of `architecture`: the same shared fields, that architecture's defaults otherwise."""
    cls = config_class(architecture)
    if isinstance(model, cls):
        return model
    return cls(**{name: getattr(model, name) for name in ArchitectureConfig.field_names()})


def load_toml_overrides(path: str | Path) -> dict[str, Any]:
    """Overrides from a TOML file: top-level keys and/or [model] / [train] tables; `preset = "name"` allowed."""
    with open(path, "rb") as file:
        return tomllib.load(file)


def _section_for(preset: Preset, section: str, name: str, key: str):
    if section not in ("", "model", "train"):
        raise KeyError(f"unknown config section {section!r} in {key!r}; use model.* or train.*")
    model_fields, train_fields = type(preset.model).field_names(), _fields(TrainConfig)
    if section in ("", "model") and name in model_fields:
        return preset.model
    if section in ("", "train") and name in train_fields:
        return preset.train
    owners = [architecture for architecture, (cls, _) in ARCHITECTURES.items()
              if name in cls.field_names() and architecture != preset.model.architecture]
    if section != "train" and (owners or name in UNION_FIELDS):
        owned = f"belongs to the {' and '.join(owners)} architecture" if owners else "is not one of its settings"
        raise KeyError(f"setting {name!r} {owned}; preset {preset.name!r} builds a {preset.model.architecture} "
                       f"model, whose settings are: {', '.join(model_fields)} (and train settings: "
                       f"{', '.join(train_fields)})")
    known = {"model": model_fields, "train": train_fields}.get(section, model_fields + train_fields)
    where = f"{section} setting" if section else "setting"
    raise KeyError(f"unknown {where} {name!r}; known: {', '.join(known)}")


def _flatten(mapping: dict[str, Any], prefix: str = ""):
    for key, value in mapping.items():
        if key == "preset" and not prefix:
            continue  # the preset name itself, handled by the caller
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _convert(value: Any, kind: type, key: str) -> Any:
    try:
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes", "on")
        if kind is int:
            number = float(value)  # accepts "2e4" and 20000.0, refuses 0.5
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        return kind(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{key}: cannot use {value!r} as {kind.__name__}") from error


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _dataclass_from(cls, data: dict[str, Any]):
    unknown = set(data) - set(_fields(cls))
    if unknown:
        raise KeyError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    return cls(**data)
