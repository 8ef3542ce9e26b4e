"""MusicVAE → ONNX graphs, written node by node from the checkpoint's weights (exact, no tracing).

Three graphs, all batch-dynamic:
- encoder:        tokens (B, T) int64 → mu (B, Z), sigma (B, Z)
- sampler:        z (B, Z), noise (B, T, V), logit_mask (V,) → tokens (B, T) int64: every step of the
                  autoregressive decoder in ONE session.run; token = argmax(logits + noise + logit_mask), so noise
                  = 0 is greedy and noise = temperature · Gumbel is a categorical sample at that temperature
                  (argmax(l/t + g) = argmax(l + t·g)); logit_mask is 0 (free) or musicbridge.scales.LOCKED on
                  the tokens a scale lock forbids. Exported with rule="event_first", the step applies that rule
                  (musicbridge.models.musicvae.choose_tokens) to the same scores logits + noise + logit_mask.
- teacher_forced: z (B, Z), inputs (B, T) int64 → logits (B, T, V), for parity and evaluation.
A lookback model (config "lookback", a continuation; models/musicvae.py Layout) has one more input in the sampler
and teacher_forced graphs: lookback (B, T) int64, the phrase it continues; model.json says "lookback": true.

Recurrences (see docs/export.md for the measurements behind these choices):
- The encoder and the conductor see their whole input at once, so they use ONNX's LSTM operator, whose
  onnxruntime kernel does the input projection of all steps as one GEMM before the recurrence.
- The decoder feeds its own output back, so its cell is spelled out (gather, matmul, gates) inside an ONNX
  Loop over the steps. All step-independent work happens once, before the Loop: the token part of the first
  layer's input projection is a (vocab + 2, 4H) table (one Gather per step), the condition's part one (N, 4H)
  term, the initial state one Gemm. Lookback: the (vocab, 4H) lookback table gathered by the lookback input into
  (N, segment, 4H) before the Loop, and that Gathered at `step` inside it (the pattern of the sampler's noise).
- Hierarchical: the conductor runs once; all bars then decode as ONE batch of B·bars sequences.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from musicbridge.export.graph import BOOL, FLOAT, INT64, Graph
from musicbridge.models.musicvae import check_rule, first_note_on


def weights_of(model) -> dict[str, np.ndarray]:
    return {name: tensor.detach().cpu().float().numpy() for name, tensor in model.state_dict().items()}


def _ifgo_to_iofc(array: np.ndarray) -> np.ndarray:
    """PyTorch stacks LSTM gates as (input, forget, cell, output); ONNX's LSTM wants (input, output, forget, cell)."""
    i, f, g, o = np.split(array, 4, axis=0)
    return np.concatenate([i, o, f, g], axis=0)


def _lstm_layer(g: Graph, x: str, w: dict, prefix: str, layer: int, hidden: int, bidirectional: bool,
                initial: tuple[str, str] | None = None) -> tuple[str, str]:
    """ONNX LSTM over x (T, B, In) for torch's layer `layer`: returns Y (T, dirs, B, H) and Y_h (dirs, B, H)."""
    suffixes = [f"l{layer}", f"l{layer}_reverse"] if bidirectional else [f"l{layer}"]
    w_ih = np.stack([_ifgo_to_iofc(w[f"{prefix}.weight_ih_{s}"]) for s in suffixes])
    w_hh = np.stack([_ifgo_to_iofc(w[f"{prefix}.weight_hh_{s}"]) for s in suffixes])
    bias = np.stack([np.concatenate([_ifgo_to_iofc(w[f"{prefix}.bias_ih_{s}"]), _ifgo_to_iofc(w[f"{prefix}.bias_hh_{s}"])])
                     for s in suffixes])
    inputs = [x, g.const(w_ih, "lstm_w"), g.const(w_hh, "lstm_r"), g.const(bias, "lstm_b")]
    if initial is not None:
        inputs += ["", initial[0], initial[1]]
    y, y_h = g.op("LSTM", *inputs, outputs=2, hidden_size=hidden,
                  direction="bidirectional" if bidirectional else "forward")
    return y, y_h


def _split_state(g: Graph, w: dict, prefix: str, cond: str, layers: int, hidden: int) -> tuple[list[str], list[str]]:
    """tanh(init(cond)) viewed as (N, 2, layers, H) → [h per layer], [c per layer], each (N, H)."""
    state = g.op("Tanh", g.op("Gemm", cond, g.const(w[f"{prefix}.weight"]), g.const(w[f"{prefix}.bias"]), transB=1))
    parts = g.op("Split", state, g.const([hidden] * (2 * layers), dtype=np.int64), axis=1, outputs=2 * layers)
    parts = parts if isinstance(parts, list) else [parts]
    return parts[:layers], parts[layers:]


def encoder_graph(g: Graph, w: dict, config: dict) -> None:
    hidden = config["enc_size"]
    tokens = g.input("tokens", INT64, ["batch", config["bars"] * config["steps_per_bar"]])
    x = g.op("Transpose", g.op("Gather", g.const(w["encoder.embed.weight"], "embed"), tokens), perm=[1, 0, 2])
    y_h = None
    for layer in range(config["enc_layers"]):
        y, y_h = _lstm_layer(g, x, w, "encoder.rnn", layer, hidden, bidirectional=True)
        # (T, 2, B, H) → (T, B, 2H): the next layer reads [forward, backward] features, as in torch.
        x = g.op("Reshape", g.op("Transpose", y, perm=[0, 2, 1, 3]), g.const([0, 0, 2 * hidden], dtype=np.int64))
    final = g.op("Reshape", g.op("Transpose", y_h, perm=[1, 0, 2]), g.const([0, -1], dtype=np.int64))  # (B, 2H)
    mu = g.op("Gemm", final, g.const(w["encoder.mu.weight"]), g.const(w["encoder.mu.bias"]), transB=1)
    sigma = g.op("Softplus", g.op("Gemm", final, g.const(w["encoder.sigma.weight"]), g.const(w["encoder.sigma.bias"]),
                                  transB=1))
    g.output(mu, "mu", FLOAT, ["batch", config["z_size"]])
    g.output(sigma, "sigma", FLOAT, ["batch", config["z_size"]])


def _conditions(g: Graph, w: dict, config: dict, z: str) -> str:
    """The decoder's condition per segment (N, C): z, or the conductor's output for every bar (N = B·bars)."""
    if not config["hierarchical"]:
        return z
    hidden, layers, bars = config["conductor_size"], config["conductor_layers"], config["bars"]
    hs, cs = _split_state(g, w, "conductor.init", z, layers, hidden)
    axis0 = g.const([0], dtype=np.int64)
    x = g.op("Tile", g.op("Unsqueeze", z, axis0), g.const([bars, 1, 1], dtype=np.int64))  # z at every bar
    for layer in range(layers):
        initial = (g.op("Unsqueeze", hs[layer], axis0), g.op("Unsqueeze", cs[layer], axis0))
        y, _ = _lstm_layer(g, x, w, "conductor.rnn", layer, hidden, bidirectional=False, initial=initial)
        x = g.op("Squeeze", y, g.const([1], dtype=np.int64))  # (bars, B, H)
    return g.op("Reshape", g.op("Transpose", x, perm=[1, 0, 2]), g.const([-1, hidden], dtype=np.int64))


class _DecoderCell:
    """The bottom decoder's step with every step-independent term computed once, in the enclosing graph."""

    def __init__(self, g: Graph, w: dict, config: dict, cond: str):
        embed_size, hidden, layers = config["embed_size"], config["dec_size"], config["dec_layers"]
        self.hidden, self.layers = hidden, layers
        w0 = w["decoder.rnn.weight_ih_l0"]
        bias0 = w["decoder.rnn.bias_ih_l0"] + w["decoder.rnn.bias_hh_l0"]
        cond_column = embed_size * (2 if config.get("lookback") else 1)  # c's columns follow the lookback's
        self.token_gates = g.const(w["decoder.embed.weight"] @ w0[:, :embed_size].T, "token_gates")  # (V+2, 4H)
        self.cond_gates = g.op("Gemm", cond, g.const(w0[:, cond_column:]), g.const(bias0), transB=1)  # (N, 4H)
        self.lookback_table = None  # (V, 4H): the lookback columns applied to every lookback token's embedding
        if config.get("lookback"):
            self.lookback_table = g.const(w["decoder.lookback_embed.weight"] @ w0[:, embed_size:cond_column].T,
                                          "lookback_gates")
        self.w_hh0 = g.const(w["decoder.rnn.weight_hh_l0"].T, "w_hh0")
        # Layers above the first: one matmul of [x, h] with [W_ih; W_hh] instead of two (fewer nodes per step).
        self.w_cat = [g.const(np.concatenate([w[f"decoder.rnn.weight_ih_l{i}"], w[f"decoder.rnn.weight_hh_l{i}"]], 1).T,
                              f"w_cat{i}") for i in range(1, layers)]
        self.b_cat = [g.const(w[f"decoder.rnn.bias_ih_l{i}"] + w[f"decoder.rnn.bias_hh_l{i}"], f"b{i}")
                      for i in range(1, layers)]
        self.w_head = g.const(w["decoder.head.weight"].T, "w_head")
        self.b_head = g.const(w["decoder.head.bias"], "b_head")
        self.split = g.const([hidden] * 4, dtype=np.int64)
        self.initial = _split_state(g, w, "decoder.init", cond, layers, hidden)

    def __call__(self, g: Graph, tokens: str, hs: list[str], cs: list[str], lookback_gates: str | None = None):
        """(N,) previous tokens and per-layer (N, H) states → logits (N, V) and the new states; `lookback_gates`
        (N, 4H): a lookback model's term of this step."""
        new_h, new_c = [], []
        x = None
        for i in range(self.layers):
            if i == 0:
                gates = g.op("Add", g.op("Gather", self.token_gates, tokens), self.cond_gates)
                if lookback_gates is not None:
                    gates = g.op("Add", gates, lookback_gates)
                gates = g.op("Add", gates, g.op("MatMul", hs[0], self.w_hh0))
            else:
                gates = g.op("Add", g.op("MatMul", g.op("Concat", x, hs[i], axis=1), self.w_cat[i - 1]), self.b_cat[i - 1])
            in_gate, forget_gate, cell_gate, out_gate = g.op("Split", gates, self.split, axis=1, outputs=4)
            c = g.op("Add", g.op("Mul", g.op("Sigmoid", forget_gate), cs[i]),
                     g.op("Mul", g.op("Sigmoid", in_gate), g.op("Tanh", cell_gate)))
            x = g.op("Mul", g.op("Sigmoid", out_gate), g.op("Tanh", c))
            new_h.append(x)
            new_c.append(c)
        logits = g.op("Add", g.op("MatMul", x, self.w_head), self.b_head)
        return logits, new_h, new_c


def _decode(g: Graph, cell: _DecoderCell, first_tokens: str, n_steps: int, per_step, out_rank: int,
            unroll: bool, lookback_gates: str | None = None) -> str:
    """Run the cell n_steps times from `first_tokens` (N,); `per_step(graph, logits, step) -> (next tokens (N,),
    output)`; `lookback_gates` (N, n_steps, 4H): a lookback model's terms, step t reading [:, t].
    Returns the outputs stacked on axis 1: (N, n_steps) for rank-1 outputs, (N, n_steps, V) for rank 2."""
    hs, cs = cell.initial

    def looked(graph: Graph, step: str) -> str | None:
        return None if lookback_gates is None else graph.op("Gather", lookback_gates, step, axis=1)  # (N, 4H)

    if unroll:
        tokens, outputs = first_tokens, []
        for step in range(n_steps):
            at = None if lookback_gates is None else g.const(step, dtype=np.int64)
            logits, hs, cs = cell(g, tokens, hs, cs, None if at is None else looked(g, at))
            tokens, out = per_step(g, logits, g.const(step, dtype=np.int64))
            outputs.append(g.op("Unsqueeze", out, g.const([1], dtype=np.int64)))
        return g.op("Concat", *outputs, axis=1)
    body = g.subgraph("decoder_step")
    step = body.input(body.fresh("step"), INT64, [])
    keep_going = body.input(body.fresh("cond_in"), BOOL, [])
    tokens = body.input(body.fresh("tokens"), INT64, ["n"])
    state_in = [body.input(body.fresh("state"), FLOAT, ["n", cell.hidden]) for _ in range(2 * cell.layers)]
    logits, new_h, new_c = cell(body, tokens, state_in[: cell.layers], state_in[cell.layers :], looked(body, step))
    next_tokens, out = per_step(body, logits, step)
    body.output(body.op("Identity", keep_going), body.fresh("cond_out"), BOOL, [])
    body.output(next_tokens, body.fresh("tokens_out"), INT64, ["n"])
    for value in new_h + new_c:
        body.output(value, body.fresh("state_out"), FLOAT, ["n", cell.hidden])
    body.output(out, body.fresh("scan"), INT64 if out_rank == 1 else FLOAT, ["n"] if out_rank == 1 else ["n", "v"])
    results = g.op("Loop", g.const(n_steps, dtype=np.int64), g.const(True, dtype=bool), first_tokens, *hs, *cs,
                   outputs=2 + 2 * cell.layers, body=body.make())
    return g.op("Transpose", results[-1], perm=[1, 0] if out_rank == 1 else [1, 0, 2])  # (n_steps, N, ...) → (N, ...)


def _segment(config: dict) -> int:
    """Steps the decoder runs per sequence it starts: one bar (hierarchical) or the whole sequence (flat)."""
    return config["steps_per_bar"] if config["hierarchical"] else config["bars"] * config["steps_per_bar"]


def lookback_gates(g: Graph, cell: _DecoderCell, steps: int, segment: int) -> str | None:
    """A lookback model's input lookback (B, T) int64 — the phrase it continues — gathered once, before the
    Loop, into every step's first-layer gate term (N, segment, 4H); None (and no input) for other models."""
    if cell.lookback_table is None:
        return None
    lookback = g.input("lookback", INT64, ["batch", steps])
    segments = g.op("Reshape", lookback, g.const([-1, segment], dtype=np.int64))  # (N, segment)
    return g.op("Gather", cell.lookback_table, segments)  # (N, segment, 4H)


def sampler_noise(g: Graph, steps: int, vocab: int) -> str:
    """The sampler's inputs noise (B, T, V) and logit_mask (V,), summed once, before the decoder's Loop: what every
    step adds to its logits before the ArgMax. A zero mask leaves the noise bit for bit as it was; the runtime
    does the same sum in numpy for graphs exported before this input existed."""
    noise = g.input("noise", FLOAT, ["batch", steps, vocab])
    mask = g.input("logit_mask", FLOAT, [vocab])
    return g.op("Add", noise, mask)  # (B, T, V) + (V,)


def _logsumexp(g: Graph, x: str, top: str) -> str:
    """logsumexp over axis 1 of x (N, P), (N, 1), given top (N, 1) = its row maxima: top + log Σ exp(x − top).
    Written out because ReduceLogSumExp takes its axes as an attribute up to opset 17 and as an input from 18;
    ReduceSum's axes input is the same in every opset the exporter writes, so one graph serves them all."""
    total = g.op("ReduceSum", g.op("Exp", g.op("Sub", x, top)), g.const([1], dtype=np.int64), keepdims=1)
    return g.op("Add", top, g.op("Log", total))


def choose_token(g: Graph, scores: str, rule: str, note_on: int | None) -> str:
    """Tokens (N,) from one step's scores (N, V) by `rule` — the graph form of musicvae.choose_tokens.

    event_first: classes = [scores[:, :note_on], logsumexp(scores[:, note_on:])], token = the class, or
    note_on + the best pitch when the class is note-on. A masked note-on (−1e9) adds exp(−1e9 − top) = 0 to
    the sum and never wins the pitch ArgMax while another note-on is free."""
    if rule == "argmax":
        return g.op("ArgMax", scores, axis=1, keepdims=0)
    vocab_end = g.const([np.iinfo(np.int64).max], dtype=np.int64)
    axis1 = g.const([1], dtype=np.int64)
    first_pitch = g.const([note_on], dtype=np.int64)
    events = g.op("Slice", scores, g.const([0], dtype=np.int64), first_pitch, axis1)  # (N, note_on)
    pitches = g.op("Slice", scores, first_pitch, vocab_end, axis1)  # (N, P)
    best = g.op("ArgMax", pitches, axis=1, keepdims=1)  # (N, 1)
    top = g.op("GatherElements", pitches, best, axis=1)  # (N, 1)
    classes = g.op("Concat", events, _logsumexp(g, pitches, top), axis=1)  # (N, note_on + 1)
    event = g.op("ArgMax", classes, axis=1, keepdims=0)  # (N,)
    pitch = g.op("Add", g.op("Squeeze", best, axis1), g.const(note_on, dtype=np.int64))  # (N,)
    return g.op("Where", g.op("Equal", event, g.const(note_on, dtype=np.int64)), pitch, event)


def sampler_graph(g: Graph, w: dict, config: dict, unroll: bool = False, rule: str = "argmax") -> None:
    """The autoregressive decoder in one ONNX Loop (unroll=True writes the steps out instead: measured no faster,
    and 25–60× slower to load — docs/export.md); each step picks its token by `rule` (choose_token)."""
    note_on = first_note_on(config["representation"]) if check_rule(rule) == "event_first" else None
    vocab, steps, segment = config["vocab_size"], config["bars"] * config["steps_per_bar"], _segment(config)
    z = g.input("z", FLOAT, ["batch", config["z_size"]])
    noise = sampler_noise(g, steps, vocab)
    cond = _conditions(g, w, config, z)
    cell = _DecoderCell(g, w, config, cond)
    looked = lookback_gates(g, cell, steps, segment)
    noise = g.op("Reshape", noise, g.const([-1, segment, vocab], dtype=np.int64))  # (N, segment, V)
    rows = g.op("Slice", g.op("Shape", cond), g.const([0], dtype=np.int64), g.const([1], dtype=np.int64))
    start = g.op("ConstantOfShape", rows, value=helper.make_tensor("value", INT64, [1], [vocab]))  # start token

    def token_step(graph: Graph, logits: str, step: str):
        token = choose_token(graph, graph.op("Add", logits, graph.op("Gather", noise, step, axis=1)), rule, note_on)
        return token, token

    tokens = _decode(g, cell, start, segment, token_step, 1, unroll, looked)
    g.output(g.op("Reshape", tokens, g.const([-1, steps], dtype=np.int64)), "tokens", INT64, ["batch", steps])


def teacher_forced_graph(g: Graph, w: dict, config: dict, unroll: bool = False) -> None:
    """Logits (B, T, V) for given decoder inputs: the same cell, fed the true previous tokens."""
    vocab, steps, segment = config["vocab_size"], config["bars"] * config["steps_per_bar"], _segment(config)
    z = g.input("z", FLOAT, ["batch", config["z_size"]])
    inputs = g.input("inputs", INT64, ["batch", steps])
    cond = _conditions(g, w, config, z)
    cell = _DecoderCell(g, w, config, cond)
    looked = lookback_gates(g, cell, steps, segment)
    inputs = g.op("Reshape", inputs, g.const([-1, segment], dtype=np.int64))  # (N, segment)
    last = g.const(segment - 1, dtype=np.int64)

    def logits_step(graph: Graph, logits: str, step: str):
        # The next step reads the given input, not the prediction (inputs[:, 0] is the start token).
        following = graph.op("Min", graph.op("Add", step, graph.const(1, dtype=np.int64)), last)
        return graph.op("Gather", inputs, following, axis=1), logits

    first = g.op("Gather", inputs, g.const(0, dtype=np.int64), axis=1)
    logits = _decode(g, cell, first, segment, logits_step, 2, unroll, looked)
    g.output(g.op("Reshape", logits, g.const([-1, steps, vocab], dtype=np.int64)), "logits", FLOAT,
             ["batch", steps, vocab])

