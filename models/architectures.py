"""The architectures by name: each one's config class and model, and configs to and from checkpoint dicts.

    config = config_from_dict(checkpoint["config"]["model"])   # any checkpoint, old or new
    model = build_model(config)                                # MusicVAE, TransformerVAE or VSAE

A config is stored as {"architecture": name, **its fields} (config_to_dict). Checkpoints and exports written
before the configs were split hold one union of every architecture's fields (UNION_FIELDS), with or without an
"architecture" key (none: a MusicVAE); config_from_dict drops the fields of the union that the named
architecture does not have — they rode along and never changed its model — and refuses any other unknown key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from musicbridge.models.config import ArchitectureConfig
from musicbridge.models.musicvae import MusicVAE, MusicVAEConfig
from musicbridge.models.transformer_vae import TransformerVAE, TransformerVAEConfig
from musicbridge.models.vsae import VSAE, VSAEConfig

# name → (config class, model class); the name is the config class's `architecture`.
ARCHITECTURES: dict[str, tuple[type[ArchitectureConfig], type[nn.Module]]] = {
    config.architecture: (config, model)
    for config, model in ((MusicVAEConfig, MusicVAE), (TransformerVAEConfig, TransformerVAE), (VSAEConfig, VSAE))
}
DEFAULT_ARCHITECTURE = "musicvae"  # what a stored config without an "architecture" key describes
# The fields of the one ModelConfig every checkpoint held until the configs were split (and still may).
UNION_FIELDS = frozenset((
    "representation", "vocab_size", "steps_per_bar", "bars", "hierarchical", "embed_size", "enc_size", "enc_layers",
    "z_size", "conductor_size", "conductor_layers", "dec_size", "dec_layers", "lookback", "architecture", "d_model",
    "heads", "ff_size", "dropout", "positions", "latent", "latent_frames", "memory_tokens", "z_in_inputs"))


def config_class(architecture: str) -> type[ArchitectureConfig]:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture][0]


def config_to_dict(config: ArchitectureConfig) -> dict[str, Any]:
    """The stored form of a config: its architecture's name, then its fields."""
    return {"architecture": config.architecture, **dataclasses.asdict(config)}


def config_from_dict(data: dict[str, Any]) -> ArchitectureConfig:
    """The config a stored dict describes (config_to_dict's, or the old union's: see the module docstring)."""
    architecture = data.get("architecture", DEFAULT_ARCHITECTURE)
    cls = config_class(architecture)
    own = set(cls.field_names())
    unknown = sorted(key for key in data if key not in own and key not in UNION_FIELDS)
    if unknown:
        raise KeyError(f"unknown {architecture} settings: {', '.join(unknown)}")
    return cls(**{key: value for key, value in data.items() if key in own})


def build_model(config: ArchitectureConfig | dict) -> nn.Module:
    """The model a config (or its stored dict, as in checkpoints under config["model"]) describes."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    config_class(config.architecture)  # a ValueError for an architecture no class here builds
    config.validate()
    return ARCHITECTURES[config.architecture][1](config)


def ModelConfig(architecture: str = DEFAULT_ARCHITECTURE, **fields) -> ArchitectureConfig:
    """The config of `architecture` from its fields — the signature of the one ModelConfig class this module
    replaced, kept so code written against it still runs. New code names the class: MusicVAEConfig(...)."""
    return config_class(architecture)(**fields)
