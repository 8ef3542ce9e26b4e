"""What every architecture's config shares: the representation and length it reads and writes, and its latent.

Each architecture keeps its own config beside its model (MusicVAEConfig in musicvae.py, TransformerVAEConfig in
transformer_vae.py, VSAEConfig in vsae.py), a subclass of ArchitectureConfig that adds the fields only it reads
and validates them. `architecture` is a class attribute, not a field: a config cannot claim another architecture,
and a checkpoint names it beside the fields (models/architectures.py config_to_dict).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar


@dataclass
class ArchitectureConfig:
    """The fields the data, the exporter and the runtime read from any model (see the subclasses for the rest)."""

    architecture: ClassVar[str] = ""  # the name checkpoints and exports store (models/architectures.py)

    representation: str = "melody"  # the codec the model reads and writes (musicbridge.codecs)
    vocab_size: int = 90  # the codec's token count (its start and mask tokens come after it)
    steps_per_bar: int = 16
    bars: int = 2  # the window the model encodes and decodes: bars · steps_per_bar steps
    z_size: int = 128  # dimensions of the latent z the encoder writes and the decoder reads

    def __post_init__(self) -> None:
        self.validate()

    @property
    def steps(self) -> int:
        return self.bars * self.steps_per_bar

    def validate(self) -> None:
        """A ValueError naming the field to change, for a config no model can be built from. Subclasses extend it;
        apply_overrides calls it once all overrides are in (one at a time they may pass through invalid states)."""
        require_positive(self, "vocab_size", "steps_per_bar", "bars", "z_size")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def require_positive(config: ArchitectureConfig, *names: str) -> None:
    """A ValueError for the first of `names` below 1 (sizes, layer counts), saying how to set it."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1 for the {config.architecture} "
                             f"architecture, got {value!r}; set it with --set {name}=N")
