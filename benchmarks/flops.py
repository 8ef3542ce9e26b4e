"""Work of the runtime's operations in FLOPs (2 per multiply-add; table lookups free), per architecture.

`op_flops(config, op, batch)` reads an exported model's model.json "config" (any layout: models/architectures.py)
and answers None for an architecture without a formula here — `bench` then leaves its GFLOP/s columns out
rather than apply another architecture's formula:
- musicvae: the LSTM encoder, conductor and decoder, counted as the exported graphs do their work (the decoder's
  token table is a constant of the graph, so it costs nothing per call); tests/test_runtime_bench.py checks it
  against torch's own count; a parallel decoder (a continuation's) is its bidirectional LSTM and head over the
  whole phrase at once;
- vsae: its encoder and decoder ARE a flat MusicVAE's (models/vsae.py; the discriminator never runs at inference),
  so the same formula on the same sizes;
- transformer: none. Its exported samplers attend over fixed-size (T) key buffers with a mask (cached) or rerun the
  whole decoder every step (recompute), so the work depends on the decoding and differs from torch's; no formula
  has been checked against either yet.
"""

from __future__ import annotations

from collections.abc import Callable


def architecture_of(config: dict) -> str:
    return config.get("architecture", "musicvae")  # configs from before the architectures had names


def lstm_op_flops(config: dict, op: str, batch: int) -> float:
    """FLOPs of one call of a MusicVAE-shaped model (bidirectional LSTM encoder; LSTM decoder, flat or under a
    conductor) from its sizes."""
    steps, bars, spb = config["bars"] * config["steps_per_bar"], config["bars"], config["steps_per_bar"]

    segment_bars = config.get("segment_bars", 1) if config.get("hierarchical", False) else bars
    segments = bars // segment_bars  # conductor outputs (1 for a flat model)

    def bidirectional(h, inputs, layers):
        """Multiply-adds of a bidirectional LSTM stack over every step (whole or by segments), per sequence."""
        total = 0
        for _ in range(layers):
            total += 2 * 4 * h * (inputs + h) * steps  # two directions
            inputs = 2 * h
        return total

    def encoder(b):
        h = config["enc_size"]
        total = bidirectional(h, config["embed_size"], config["enc_layers"])
        if config.get("encoder_type", "sequence") == "segments":  # μ and σ heads per segment, then the two mixes
            code = config["segment_code_size"]
            return 2 * b * (total + segments * 2 * 2 * h * code + 2 * segments * code * config["z_size"])
        return 2 * b * (total + 2 * 2 * h * config["z_size"])

    def decoder(b):
        z, h, layers, vocab = config["z_size"], config["dec_size"], config["dec_layers"], config["vocab_size"]
        if config.get("decoder_type", "autoregressive") == "parallel":  # a bidirectional LSTM over the phrase, the head
            total = bidirectional(h, config["embed_size"] + z, layers)
            return 2 * b * (total + steps * ((2 * h + config["embed_size"]) * h + h * vocab))
        total, cond, rows, segment = 0, z, b, steps
        if config.get("hierarchical", False):
            hc, inputs = config["conductor_size"], z
            if config.get("conductor_type", "lstm") == "linear":
                total += b * z * segments * hc
            else:
                total += b * z * 2 * config["conductor_layers"] * hc
                for _ in range(config["conductor_layers"]):
                    total += b * segments * 4 * hc * (inputs + hc)
                    inputs = hc
            cond, rows, segment = hc, b * segments, spb * segment_bars
        total += rows * cond * (2 * layers * h + 4 * h)  # initial state, the condition's gate term
        per_step = 4 * h * h + (layers - 1) * 4 * h * 2 * h + h * vocab
        return 2 * (total + rows * segment * per_step)

    return {"encode": lambda: encoder(batch), "continue": lambda: encoder(batch) + decoder(batch),
            "interpolate": lambda: encoder(2) + decoder(batch), "sample_prior": lambda: decoder(batch)}[op]()


def lstm_largest_matvec(config: dict) -> tuple[int, int]:
    """The decoder's biggest per-step matrix: [x, h] (2H) × 4H with two or more layers, else H × 4H."""
    h = config["dec_size"]
    return (2 * h if config["dec_layers"] > 1 else h, 4 * h)


FORMULAS: dict[str, tuple[Callable[[dict, str, int], float], Callable[[dict], tuple[int, int]]]] = {
    "musicvae": (lstm_op_flops, lstm_largest_matvec),
    "vsae": (lstm_op_flops, lstm_largest_matvec),
}


def op_flops(config: dict, op: str, batch: int) -> float | None:
    """FLOPs of one `op` call at `batch`, or None for an architecture without a formula (module docstring)."""
    formula = FORMULAS.get(architecture_of(config))
    return None if formula is None else formula[0](config, op, batch)


def largest_matvec(config: dict) -> tuple[int, int] | None:
    """The (rows, cols) of the matrix-vector product a batch-1 step is bound by, or None (no formula)."""
    formula = FORMULAS.get(architecture_of(config))
    return None if formula is None else formula[1](config)
