"""PyTorch models, each with its config beside it, and their named presets (MusicVAE, the Transformer VAE,
the vsae)."""

from musicbridge.models.architectures import (
    ARCHITECTURES,
    ModelConfig,
    build_model,
    config_from_dict,
    config_to_dict,
)
from musicbridge.models.config import ArchitectureConfig
from musicbridge.models.musicvae import MusicVAE, MusicVAEConfig, count_parameters
from musicbridge.models.presets import (
    PRESETS,
    Preset,
    TrainConfig,
    apply_overrides,
    get_preset,
    load_toml_overrides,
    preset_from_dict,
    preset_names,
)
from musicbridge.models.transformer_vae import TransformerVAE, TransformerVAEConfig
from musicbridge.models.vsae import VSAE, VSAEConfig

__all__ = [
    "ARCHITECTURES",
    "PRESETS",
    "ArchitectureConfig",
    "ModelConfig",
    "MusicVAE",
    "MusicVAEConfig",
    "Preset",
    "TrainConfig",
    "TransformerVAE",
    "TransformerVAEConfig",
    "VSAE",
    "VSAEConfig",
    "apply_overrides",
    "build_model",
    "config_from_dict",
    "config_to_dict",
    "count_parameters",
    "get_preset",
    "load_toml_overrides",
    "preset_from_dict",
    "preset_names",
]
