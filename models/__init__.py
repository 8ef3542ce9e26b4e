"""PyTorch models and their named presets (MusicVAE, the Transformer VAE)."""

from musicbridge.models.musicvae import MusicVAE, build_model, count_parameters
from musicbridge.models.presets import (
    PRESETS,
    ModelConfig,
    Preset,
    TrainConfig,
    apply_overrides,
    get_preset,
    load_toml_overrides,
    preset_from_dict,
    preset_names,
)
from musicbridge.models.transformer_vae import TransformerVAE

__all__ = [
    "PRESETS",
    "ModelConfig",
    "MusicVAE",
    "Preset",
    "TrainConfig",
    "TransformerVAE",
    "apply_overrides",
    "build_model",
    "count_parameters",
    "get_preset",
    "load_toml_overrides",
    "preset_from_dict",
    "preset_names",
]
