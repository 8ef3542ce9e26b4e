"""Transformer VAE → ONNX graphs, written node by node from the checkpoint's weights (exact, no tracing).

The same three graphs, inputs and outputs as export/musicvae.py, so the runtime drives either model unchanged:
- encoder:        tokens (B, T) int64 → mu (B, Z), sigma (B, Z)
- sampler:        z (B, Z), noise (B, T, V), logit_mask (V,) → tokens (B, T) int64, every step in ONE
                  session.run (an ONNX Loop); token = argmax(logits + noise + logit_mask) (noise 0 = greedy,
                  temperature · Gumbel = sampling; the mask is the scale lock, 0 = free)
- teacher_forced: z (B, Z), inputs (B, T) int64 → logits (B, T, V): one causal pass, no loop.

Two samplers (docs/transformer.md has the measurements that chose the default):
- decoding="cached" (default): each step runs one new position through the blocks; the keys and values of
  earlier positions live in fixed-size (B, heads, ·, T) buffers carried by the Loop (position t written through
  a one-hot row, later positions hidden by a −1e9 attention bias), so every shape is static;
- decoding="recompute": every step reruns the whole causal decoder over a (B, T) buffer of the tokens so far
  and reads position t — T× the arithmetic, about as many nodes.
Everything that does not depend on the step — z's memory tokens, their cross-attention keys and values, z's
input term, the position table — is computed once, before the Loop.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import helper

from musicbridge.export.graph import BOOL, FLOAT, INT64, Graph
from musicbridge.export.musicvae import sampler_noise
from musicbridge.models.transformer_vae import sinusoidal

NEGATIVE = -1e9  # attention bias of positions a query may not see
DECODINGS = ("cached", "recompute")


class _Params:
    """Weights as initializers of the main graph (a Loop body reads them by name), each written once."""

    def __init__(self, g: Graph, w: dict, config: dict):
        self.g, self.w, self.config = g, w, config
        self.d, self.heads = config["d_model"], config["heads"]
        self._names: dict[tuple, str] = {}

    def get(self, key: str, transpose: bool = False) -> str:
        if (key, transpose) not in self._names:
            value = self.w[key].T if transpose else self.w[key]
            self._names[key, transpose] = self.g.const(np.ascontiguousarray(value), key.replace(".", "_"))
        return self._names[key, transpose]

    def scaled(self, key: str, factor: float, transpose: bool = False) -> str:
        """A weight times a constant, folded at export (the attention's 1/√(d/h) into the query projection)."""
        if (key, transpose, factor) not in self._names:
            value = (self.w[key].T if transpose else self.w[key]) * np.float32(factor)
            self._names[key, transpose, factor] = self.g.const(np.ascontiguousarray(value), key.replace(".", "_"))
        return self._names[key, transpose, factor]

    def positions(self, prefix: str) -> str:
        """(T, d): absolute (learned or sinusoidal) + position-in-bar, as Positions.forward."""
        steps, spb = self.config["bars"] * self.config["steps_per_bar"], self.config["steps_per_bar"]
        if self.config["positions"] == "learned":
            absolute = self.w[f"{prefix}.positions.absolute"]
        else:
            absolute = sinusoidal(steps, self.d).numpy()
        table = absolute + self.w[f"{prefix}.positions.in_bar.weight"][np.arange(steps) % spb]
        return self.g.const(table.astype(np.float32), f"{prefix}_positions")


def _linear(g: Graph, p: _Params, x: str, name: str) -> str:
    return g.op("Add", g.op("MatMul", x, p.get(f"{name}.weight", transpose=True)), p.get(f"{name}.bias"))


def _gemm(g: Graph, p: _Params, x: str, name: str) -> str:
    """The same linear layer for 2-D x (N, in): one Gemm node instead of MatMul + Add (the step's hot path)."""
    return g.op("Gemm", x, p.get(f"{name}.weight", transpose=True), p.get(f"{name}.bias"))


def _query(g: Graph, p: _Params, x: str, name: str, two_d: bool = False) -> str:
    """q / √(d/h), the scale folded into the weights."""
    scale = 1 / math.sqrt(p.d // p.heads)
    weight, bias = p.scaled(f"{name}.q.weight", scale, transpose=True), p.scaled(f"{name}.q.bias", scale)
    if two_d:
        return g.op("Gemm", x, weight, bias)
    return g.op("Add", g.op("MatMul", x, weight), bias)


def _norm(g: Graph, p: _Params, x: str, name: str) -> str:
    return g.op("LayerNormalization", x, p.get(f"{name}.weight"), p.get(f"{name}.bias"), axis=-1, epsilon=1e-5)


def _gelu(g: Graph, x: str) -> str:
    """Exact GELU, x · Φ(x) = 0.5 · x · (1 + erf(x / √2)) (Gelu is an ONNX op only from opset 20)."""
    erf = g.op("Erf", g.op("Mul", x, g.const(np.float32(1 / math.sqrt(2)))))
    return g.op("Mul", g.op("Mul", x, g.const(np.float32(0.5))), g.op("Add", erf, g.const(np.float32(1.0))))


def _heads(g: Graph, p: _Params, x: str) -> str:
    """(N, S, d) → (N, heads, S, d/heads)."""
    shape = g.const([0, 0, p.heads, p.d // p.heads], dtype=np.int64)
    return g.op("Transpose", g.op("Reshape", x, shape), perm=[0, 2, 1, 3])


def _keys_values(g: Graph, p: _Params, source: str, name: str) -> tuple[str, str]:
    keys, values = g.op("Split", _linear(g, p, source, f"{name}.kv"), g.const([p.d, p.d], dtype=np.int64), axis=-1,
                        outputs=2)
    return _heads(g, p, keys), _heads(g, p, values)


def _attend(g: Graph, p: _Params, x: str, keys: str, values: str, name: str, bias: str | None = None) -> str:
    """softmax(q kᵀ / √(d/h) + bias) v for queries from x (N, S, d); keys, values (N, h, Sk, d/h) → (N, S, d)."""
    q = _heads(g, p, _query(g, p, x, name))
    scores = g.op("MatMul", q, g.op("Transpose", keys, perm=[0, 1, 3, 2]))
    if bias is not None:
        scores = g.op("Add", scores, bias)
    y = g.op("MatMul", g.op("Softmax", scores, axis=-1), values)
    merged = g.op("Reshape", g.op("Transpose", y, perm=[0, 2, 1, 3]), g.const([0, 0, p.d], dtype=np.int64))
    return _linear(g, p, merged, f"{name}.out")


def _feed_forward(g: Graph, p: _Params, x: str, name: str) -> str:
    h = _gelu(g, _linear(g, p, _norm(g, p, x, f"{name}.norm3"), f"{name}.ff.0"))
    return g.op("Add", x, _linear(g, p, h, f"{name}.ff.2"))


# -- encoder ------------------------------------------------------------------------------------------------------


def encoder_graph(g: Graph, w: dict, config: dict) -> None:
    p, steps = _Params(g, w, config), config["bars"] * config["steps_per_bar"]
    tokens = g.input("tokens", INT64, ["batch", steps])
    x = g.op("Add", g.op("Gather", p.get("encoder.embed.weight"), tokens), p.positions("encoder"))
    for i in range(config["enc_layers"]):
        name = f"encoder.blocks.{i}"
        h = _norm(g, p, x, f"{name}.norm1")
        x = g.op("Add", x, _attend(g, p, h, *_keys_values(g, p, h, f"{name}.attn"), f"{name}.attn"))
        x = _feed_forward(g, p, x, name)
    x = _norm(g, p, x, "encoder.norm")  # (N, T, d)
    if config["latent"] == "vector":
        mean = g.const(np.full((1, steps), 1 / steps, np.float32), "mean_over_steps")
        features = g.op("Reshape", g.op("MatMul", mean, x), g.const([-1, p.d], dtype=np.int64))  # (N, d)
    else:
        features = g.op("Transpose", x, perm=[0, 2, 1])  # (N, d, T)
        convs = sorted({int(key.split(".")[2]) for key in w if key.startswith("latent.down.")})
        for j, index in enumerate(convs):
            if j:
                features = _gelu(g, features)
            features = g.op("Conv", features, p.get(f"latent.down.{index}.weight"), p.get(f"latent.down.{index}.bias"),
                            kernel_shape=[4], strides=[2], pads=[1, 1])
        features = g.op("Transpose", features, perm=[0, 2, 1])  # (N, L, d)
    flat = g.const([0, config["z_size"]], dtype=np.int64)
    mu = g.op("Reshape", _linear(g, p, features, "latent.mu"), flat)
    sigma = g.op("Reshape", g.op("Softplus", _linear(g, p, features, "latent.sigma")), flat)
    g.output(mu, "mu", FLOAT, ["batch", config["z_size"]])
    g.output(sigma, "sigma", FLOAT, ["batch", config["z_size"]])


# -- decoder ------------------------------------------------------------------------------------------------------


class _Condition:
    """What z gives the decoder, computed once: per block the cross-attention keys/values of z's memory tokens,
    and z's term added to every input embedding ((N, d), or None)."""

    def __init__(self, g: Graph, p: _Params, config: dict, z: str):
        frames = 1 if config["latent"] == "vector" else config["latent_frames"]
        memory_tokens = frames * config["memory_tokens"]
        chunks = g.op("Reshape", z, g.const([0, frames, config["z_size"] // frames], dtype=np.int64))
        memory = g.op("Reshape", _linear(g, p, chunks, "decoder.memory"), g.const([0, memory_tokens, p.d], dtype=np.int64))
        memory = g.op("Add", memory, p.get("decoder.memory_positions"))
        self.memory_kv = [_keys_values(g, p, memory, f"decoder.blocks.{i}.cross") for i in range(config["dec_layers"])]
        self.extra = _gemm(g, p, z, "decoder.z_to_inputs") if config["z_in_inputs"] else None
        # The cached step reads the memory's keys transposed, (N, h, d/h, M).
        self.memory_kv_step = [(g.op("Transpose", k, perm=[0, 1, 3, 2]), v) for k, v in self.memory_kv]


def _decoder_block(g: Graph, p: _Params, x: str, i: int, keys: str, values: str, self_bias: str | None,
                   condition: _Condition, h: str) -> str:
    """One block given its self-attention keys/values (of h = norm1(x), or the cache holding them)."""
    name = f"decoder.blocks.{i}"
    x = g.op("Add", x, _attend(g, p, h, keys, values, f"{name}.attn", self_bias))
    x = g.op("Add", x, _attend(g, p, _norm(g, p, x, f"{name}.norm2"), *condition.memory_kv[i], f"{name}.cross"))
    return _feed_forward(g, p, x, name)


def _logits(g: Graph, p: _Params, x: str) -> str:
    return _linear(g, p, _norm(g, p, x, "decoder.norm"), "decoder.head")


def _decoder_pass(g: Graph, p: _Params, config: dict, inputs: str, positions: str, causal: str,
                  condition: _Condition) -> str:
    """Teacher-forced logits (N, T, V) of inputs (N, T): the whole causal decoder in one pass."""
    x = g.op("Add", g.op("Gather", p.get("decoder.embed.weight"), inputs), positions)
    if condition.extra is not None:
        x = g.op("Add", x, g.op("Unsqueeze", condition.extra, g.const([1], dtype=np.int64)))
    for i in range(config["dec_layers"]):
        h = _norm(g, p, x, f"decoder.blocks.{i}.norm1")
        x = _decoder_block(g, p, x, i, *_keys_values(g, p, h, f"decoder.blocks.{i}.attn"), causal, condition, h)
    return _logits(g, p, x)


def _causal_bias(steps: int) -> np.ndarray:
    return np.triu(np.full((steps, steps), NEGATIVE, np.float32), k=1)  # row t: 0 up to t, −1e9 after


def teacher_forced_graph(g: Graph, w: dict, config: dict) -> None:
    p, steps, vocab = _Params(g, w, config), config["bars"] * config["steps_per_bar"], config["vocab_size"]
    z = g.input("z", FLOAT, ["batch", config["z_size"]])
    inputs = g.input("inputs", INT64, ["batch", steps])
    condition = _Condition(g, p, config, z)
    logits = _decoder_pass(g, p, config, inputs, p.positions("decoder"), g.const(_causal_bias(steps), "causal"),
                           condition)
    g.output(logits, "logits", FLOAT, ["batch", steps, vocab])


def _cached_step(g: Graph, p: _Params, config: dict, condition: _Condition, positions: str, tokens: str, step: str,
                 state: list[str]) -> tuple[str, list[str]]:
    """One position per sequence, in 2-D (N, d) so every linear layer is one Gemm and the heads are reshapes
    (with a single query, (N, 1, h, d/h) and (N, h, 1, d/h) are the same memory). The cache holds per block the
    keys transposed (N, h, d/h, T) and the values (N, h, T, d/h), position t written through a one-hot row."""
    steps, heads, size = config["bars"] * config["steps_per_bar"], p.heads, p.d // p.heads
    as_query = g.const([0, heads, 1, size], dtype=np.int64)
    merge = g.const([0, p.d], dtype=np.int64)
    x = g.op("Add", g.op("Gather", p.get("decoder.embed.weight"), tokens), g.op("Gather", positions, step))
    if condition.extra is not None:
        x = g.op("Add", x, condition.extra)
    one_hot = g.op("Gather", p.g.const(np.eye(steps, dtype=np.float32), "one_hot"), step)  # (T,)
    one_hot_column = g.op("Unsqueeze", one_hot, g.const([1], dtype=np.int64))  # (T, 1)
    bias = g.op("Gather", p.g.const(_causal_bias(steps), "causal"), step)  # (T,): hides positions after t

    def attend(h: str, keys_t: str, values: str, name: str, mask: str | None) -> str:
        scores = g.op("MatMul", g.op("Reshape", _query(g, p, h, name, two_d=True), as_query), keys_t)  # (N, h, 1, S)
        if mask is not None:
            scores = g.op("Add", scores, mask)
        y = g.op("MatMul", g.op("Softmax", scores, axis=-1), values)  # (N, h, 1, d/h)
        return _gemm(g, p, g.op("Reshape", y, merge), f"{name}.out")

    new_state = []
    for i in range(config["dec_layers"]):
        name = f"decoder.blocks.{i}"
        h = _norm(g, p, x, f"{name}.norm1")
        key, value = g.op("Split", _gemm(g, p, h, f"{name}.attn.kv"), g.const([p.d, p.d], dtype=np.int64), axis=1,
                          outputs=2)
        keys_t = g.op("Add", state[2 * i], g.op("Mul", g.op("Reshape", key, g.const([0, heads, size, 1], dtype=np.int64)),
                                                 one_hot))
        values = g.op("Add", state[2 * i + 1], g.op("Mul", g.op("Reshape", value, as_query), one_hot_column))
        new_state += [keys_t, values]
        x = g.op("Add", x, attend(h, keys_t, values, f"{name}.attn", bias))
        memory_keys, memory_values = condition.memory_kv_step[i]
        x = g.op("Add", x, attend(_norm(g, p, x, f"{name}.norm2"), memory_keys, memory_values, f"{name}.cross", None))
        ff = _gemm(g, p, _gelu(g, _gemm(g, p, _norm(g, p, x, f"{name}.norm3"), f"{name}.ff.0")), f"{name}.ff.2")
        x = g.op("Add", x, ff)
    logits = _gemm(g, p, _norm(g, p, x, "decoder.norm"), "decoder.head")
    return logits, new_state


def sampler_graph(g: Graph, w: dict, config: dict, decoding: str = "cached") -> None:
    if decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {decoding!r}; choose one of {', '.join(DECODINGS)}")
    cache = decoding == "cached"
    p, steps, vocab = _Params(g, w, config), config["bars"] * config["steps_per_bar"], config["vocab_size"]
    layers, heads = config["dec_layers"], config["heads"]
    z = g.input("z", FLOAT, ["batch", config["z_size"]])
    noise = sampler_noise(g, steps, vocab)  # (B, T, V): the noise plus the scale lock's mask
    condition = _Condition(g, p, config, z)
    positions = p.positions("decoder")
    rows = g.op("Slice", g.op("Shape", z), g.const([0], dtype=np.int64), g.const([1], dtype=np.int64))
    start = g.op("ConstantOfShape", rows, value=helper.make_tensor("value", INT64, [1], [vocab]))  # (N,) start token

    body = g.subgraph("decoder_step")
    step = body.input(body.fresh("step"), INT64, [])
    keep_going = body.input(body.fresh("cond_in"), BOOL, [])
    if cache:
        tokens = body.input(body.fresh("tokens"), INT64, ["n"])
        key_shape, value_shape = ["n", heads, p.d // heads, steps], ["n", heads, steps, p.d // heads]
        state = [body.input(body.fresh("cache"), FLOAT, shape) for _ in range(layers)
                 for shape in (key_shape, value_shape)]
        logits, new_state = _cached_step(body, p, config, condition, positions, tokens, step, state)
    else:
        buffer = body.input(body.fresh("inputs"), INT64, ["n", steps])
        all_logits = _decoder_pass(body, p, config, buffer, positions, g.const(_causal_bias(steps), "causal"), condition)
        logits = body.op("Gather", all_logits, step, axis=1)
    token = body.op("ArgMax", body.op("Add", logits, body.op("Gather", noise, step, axis=1)), axis=1, keepdims=0)
    body.output(body.op("Identity", keep_going), body.fresh("cond_out"), BOOL, [])
    if cache:
        body.output(token, body.fresh("tokens_out"), INT64, ["n"])
        for i, value in enumerate(new_state):
            body.output(value, body.fresh("cache_out"), FLOAT, key_shape if i % 2 == 0 else value_shape)
        zeros = [g.op("ConstantOfShape", g.op("Concat", rows, g.const(shape[1:], dtype=np.int64), axis=0),
                      value=helper.make_tensor("value", FLOAT, [1], [0.0])) for shape in (key_shape, value_shape)]
        carried = [start] + zeros * layers
    else:
        # The token decoded at step t is the input of position t + 1 (row T − 1 of the table writes nothing).
        next_slot = g.const(np.eye(steps, k=1, dtype=bool), "next_slot")
        written = body.op("Where", body.op("Gather", next_slot, step), body.op("Unsqueeze", token, body.const([1], dtype=np.int64)),
                          buffer)
        body.output(written, body.fresh("inputs_out"), INT64, ["n", steps])
        carried = [g.op("Tile", g.op("Unsqueeze", start, g.const([1], dtype=np.int64)), g.const([1, steps], dtype=np.int64))]
    body.output(token, body.fresh("scan"), INT64, ["n"])
    results = g.op("Loop", g.const(steps, dtype=np.int64), g.const(True, dtype=bool), *carried,
                   outputs=len(carried) + 1, body=body.make())
    g.output(g.op("Transpose", results[-1], perm=[1, 0]), "tokens", INT64, ["batch", steps])


GRAPHS = {"encoder": encoder_graph, "sampler": sampler_graph, "teacher_forced": teacher_forced_graph}
