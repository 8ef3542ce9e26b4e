"""musicbridge: generative music models played live from a DAW."""

__version__ = "0.1.0"
