"""musicbridge: generative music models played live from a DAW."""

__version__ = "0.1.0"
DEFAULT_MODEL = "mel_2bar"  # the shipped model `serve` and `generate` play when none is named
