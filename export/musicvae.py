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
  Scan over the steps. All step-independent work happens once, before the Scan: the token part of the first
  layer's input projection is a (vocab + 2, 4H) table (one Gather per step), the condition's part one (N, 4H)
  term, the initial state one Gemm, the head's bias folded into the noise. Lookback: the (vocab, 4H) lookback
  table gathered by the lookback input into (segment, N, 4H), plus the condition's term, before the Scan, which
  hands each step its slice (as it does the sampler's noise). Each node of the body runs once per step, so the
  body holds as few as the arithmetic allows (_DecoderCell; docs/export.md, decision 7).
- A parallel decoder (config "decoder_type": "parallel", a continuation; models/musicvae.py ParallelDecoder)
  has no recurrence on its own tokens: the lookback phrase's embeddings (+ positions) beside z go through ONNX
  LSTM nodes (bidirectional) over the whole phrase, then the head's two matmuls give every step's logits at once,
  and the sampler chooses every step's token from them + noise + logit_mask in one pass; no Scan.
- Hierarchical: the conductor runs once, one output per segment of segment_bars bars (models/musicvae.py
  Layout); all segments then decode as ONE batch of B·segments sequences. A linear conductor is one Gemm; a
  segments encoder reads the B·segments segments as one batch, then mixes their codes into z with two Gemms.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from musicbridge.export.graph import FLOAT, INT64, Graph
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


def _bidirectional_stack(g: Graph, x: str, w: dict, prefix: str, hidden: int, layers: int) -> tuple[str, str]:
    """torch's bidirectional LSTM `prefix` of `layers` layers over x (T, B, In): its output (T, B, 2H) — each
    layer reading the one below's [forward, backward] features, as in torch — and the last layer's Y_h (2, B, H)."""
    y_h = None
    for layer in range(layers):
        y, y_h = _lstm_layer(g, x, w, prefix, layer, hidden, bidirectional=True)
        x = g.op("Reshape", g.op("Transpose", y, perm=[0, 2, 1, 3]), g.const([0, 0, 2 * hidden], dtype=np.int64))
    return x, y_h


def encoder_graph(g: Graph, w: dict, config: dict) -> None:
    hidden = config["enc_size"]
    tokens = g.input("tokens", INT64, ["batch", config["bars"] * config["steps_per_bar"]])
    # A segments encoder (models/musicvae.py SegmentEncoder) reads every segment as a sequence of its own: the
    # B · segments rows of (B · segments, segment), batch-major, as in torch.
    segments = config.get("encoder_type", "sequence") == "segments"  # configs from before the field: "sequence"
    read = g.op("Reshape", tokens, g.const([-1, _segment(config)], dtype=np.int64)) if segments else tokens
    x = g.op("Transpose", g.op("Gather", g.const(w["encoder.embed.weight"], "embed"), read), perm=[1, 0, 2])
    _, y_h = _bidirectional_stack(g, x, w, "encoder.rnn", hidden, config["enc_layers"])
    final = g.op("Reshape", g.op("Transpose", y_h, perm=[1, 0, 2]), g.const([0, -1], dtype=np.int64))  # (B, 2H)
    mu = g.op("Gemm", final, g.const(w["encoder.mu.weight"]), g.const(w["encoder.mu.bias"]), transB=1)
    pre_sigma = g.op("Gemm", final, g.const(w["encoder.sigma.weight"]), g.const(w["encoder.sigma.bias"]), transB=1)
    if segments:  # each segment's code (B · S, C) → one row of S · C per sequence → the mixes into z
        width = g.const([-1, _segments(config) * config["segment_code_size"]], dtype=np.int64)
        mu = g.op("Gemm", g.op("Reshape", mu, width), g.const(w["encoder.mix_mu.weight"]),
                  g.const(w["encoder.mix_mu.bias"]), transB=1)
        pre_sigma = g.op("Gemm", g.op("Reshape", pre_sigma, width), g.const(w["encoder.mix_sigma.weight"]),
                         g.const(w["encoder.mix_sigma.bias"]), transB=1)
    sigma = g.op("Softplus", pre_sigma)
    g.output(mu, "mu", FLOAT, ["batch", config["z_size"]])
    g.output(sigma, "sigma", FLOAT, ["batch", config["z_size"]])


def _conditions(g: Graph, w: dict, config: dict, z: str) -> str:
    """The decoder's condition per segment (N, C): z, or the conductor's output for every segment
    (N = B·segments)."""
    if not config["hierarchical"]:
        return z
    hidden, layers, segments = config["conductor_size"], config["conductor_layers"], _segments(config)
    if config.get("conductor_type", "lstm") == "linear":  # (B, S · C) → (B · S, C), batch-major
        out = g.op("Gemm", z, g.const(w["conductor.out.weight"]), g.const(w["conductor.out.bias"]), transB=1)
        return g.op("Reshape", out, g.const([-1, hidden], dtype=np.int64))
    hs, cs = _split_state(g, w, "conductor.init", z, layers, hidden)
    axis0 = g.const([0], dtype=np.int64)
    x = g.op("Tile", g.op("Unsqueeze", z, axis0), g.const([segments, 1, 1], dtype=np.int64))  # z at every segment
    for layer in range(layers):
        initial = (g.op("Unsqueeze", hs[layer], axis0), g.op("Unsqueeze", cs[layer], axis0))
        y, _ = _lstm_layer(g, x, w, "conductor.rnn", layer, hidden, bidirectional=False, initial=initial)
        x = g.op("Squeeze", y, g.const([1], dtype=np.int64))  # (segments, B, H)
    return g.op("Reshape", g.op("Transpose", x, perm=[1, 0, 2]), g.const([-1, hidden], dtype=np.int64))


def _ifgo_to_ifoc(array: np.ndarray) -> np.ndarray:
    """PyTorch's gate order (input, forget, cell, output) → (input, forget, output, cell) for the decoder's
    spelled-out cell: the three sigmoid gates side by side, so one Sigmoid node and one Tanh node activate a step."""
    i, f, g, o = np.split(array, 4, axis=0)
    return np.concatenate([i, f, o, g], axis=0)


class _DecoderCell:
    """The bottom decoder's step with every step-independent term computed once, in the enclosing graph.

    The step is the Scan body run once per token, so it holds as few nodes as the arithmetic allows (each node
    costs onnxruntime a fixed dispatch per step, comparable to a small matmul — docs/export.md): gates in
    (input, forget, output, cell) order, the first layer's condition (+ lookback) term precomputed for every
    step, the head's bias left to the caller (folded into the noise, or added to all steps at once)."""

    def __init__(self, g: Graph, w: dict, config: dict, cond: str):
        embed_size, hidden, layers = config["embed_size"], config["dec_size"], config["dec_layers"]
        self.hidden, self.layers = hidden, layers
        w0 = _ifgo_to_ifoc(w["decoder.rnn.weight_ih_l0"])
        bias0 = _ifgo_to_ifoc(w["decoder.rnn.bias_ih_l0"] + w["decoder.rnn.bias_hh_l0"])
        cond_column = embed_size * (2 if config.get("lookback") else 1)  # c's columns follow the lookback's
        self.token_gates = g.const(w["decoder.embed.weight"] @ w0[:, :embed_size].T, "token_gates")  # (V+2, 4H)
        self.cond_gates = g.op("Gemm", cond, g.const(w0[:, cond_column:]), g.const(bias0), transB=1)  # (N, 4H)
        self.lookback_table = None  # (V, 4H): the lookback columns applied to every lookback token's embedding
        if config.get("lookback"):
            self.lookback_table = g.const(w["decoder.lookback_embed.weight"] @ w0[:, embed_size:cond_column].T,
                                          "lookback_gates")
        self.w_hh0 = g.const(_ifgo_to_ifoc(w["decoder.rnn.weight_hh_l0"]).T, "w_hh0")
        # Layers above the first: one matmul of [x, h] with [W_ih; W_hh] instead of two (fewer nodes per step).
        self.w_cat = [g.const(_ifgo_to_ifoc(np.concatenate([w[f"decoder.rnn.weight_ih_l{i}"],
                                                            w[f"decoder.rnn.weight_hh_l{i}"]], 1)).T, f"w_cat{i}")
                      for i in range(1, layers)]
        self.b_cat = [g.const(_ifgo_to_ifoc(w[f"decoder.rnn.bias_ih_l{i}"] + w[f"decoder.rnn.bias_hh_l{i}"]), f"b{i}")
                      for i in range(1, layers)]
        self.w_head = g.const(w["decoder.head.weight"].T, "w_head")
        self.b_head = g.const(w["decoder.head.bias"], "b_head")
        self.initial = _split_state(g, w, "decoder.init", cond, layers, hidden)
        self._splits: dict[int, tuple[str, str]] = {}  # per graph: the gate split sizes (see _activate)

    def __call__(self, g: Graph, tokens: str, hs: list[str], cs: list[str], step_gates: str):
        """(N,) previous tokens, per-layer (N, H) states and this step's first-layer term `step_gates` (N, 4H:
        the condition's, plus a lookback model's; see step_gates) → the head's output before its bias (N, V)
        and the new states."""
        new_h, new_c = [], []
        x = None
        for i in range(self.layers):
            if i == 0:
                gates = g.op("Add", g.op("Add", g.op("Gather", self.token_gates, tokens), step_gates),
                             g.op("MatMul", hs[0], self.w_hh0))
            else:
                gates = g.op("Add", g.op("MatMul", g.op("Concat", x, hs[i], axis=1), self.w_cat[i - 1]), self.b_cat[i - 1])
            x, c = self._activate(g, gates, cs[i])
            new_h.append(x)
            new_c.append(c)
        return g.op("MatMul", x, self.w_head), new_h, new_c

    def _activate(self, g: Graph, gates: str, c: str) -> tuple[str, str]:
        """LSTM activations of gates (N, 4H) in (input, forget, output, cell) order and the cell state c → h, c."""
        if id(g) not in self._splits:
            # The split sizes live in the graph that reads them: the int8 quantiser's shape inference does not
            # see a Scan body's outer scope, and would guess an even split of the unequal [3H, H].
            self._splits[id(g)] = (g.const([3 * self.hidden, self.hidden], dtype=np.int64),
                                   g.const([self.hidden] * 3, dtype=np.int64))
        gates_split, sigmoid_split = self._splits[id(g)]
        sigmoid_part, cell_part = g.op("Split", gates, gates_split, axis=1, outputs=2)  # (N, 3H), (N, H)
        in_gate, forget_gate, out_gate = g.op("Split", g.op("Sigmoid", sigmoid_part), sigmoid_split, axis=1, outputs=3)
        c = g.op("Add", g.op("Mul", forget_gate, c), g.op("Mul", in_gate, g.op("Tanh", cell_part)))
        return g.op("Mul", out_gate, g.op("Tanh", c)), c

    def step_gates(self, g: Graph, lookback_terms: str | None) -> tuple[str, bool]:
        """The first layer's step-dependent input term besides the token: the condition's (N, 4H), the same at
        every step (False), or with a lookback model's `lookback_terms` (segment, N, 4H) added, one per step
        (True), which the Scan slices: no node per step."""
        if lookback_terms is None:
            return self.cond_gates, False
        return g.op("Add", lookback_terms, self.cond_gates), True  # (segment, N, 4H) + (N, 4H)


def _decode(g: Graph, cell: _DecoderCell, first_tokens: str, step_gates: tuple[str, bool],
            step_inputs: list[tuple[str, int, list]], per_step, n_steps: int, out_rank: int, unroll: bool) -> str:
    """Run the cell n_steps times from `first_tokens` (N,) in an ONNX Scan: `step_gates` is cell.step_gates(...) (a
    term for every step or one for all); `step_inputs` are step-major tensors (n_steps, N, ...), each with its
    slice's element type and shape, that the Scan hands the step one slice of (as it does a stepwise gate term:
    no Gather node per step); `per_step(graph, head, slices) -> (next tokens (N,), output)`, head the head's
    output before its bias (N, V). Returns the outputs stacked step-major: (n_steps, N) for rank-1 outputs,
    (n_steps, N, V) for rank 2."""
    hs, cs = cell.initial
    terms, stepwise = step_gates
    scanned = ([terms] if stepwise else []) + [name for name, _, _ in step_inputs]
    if unroll:
        tokens, outputs = first_tokens, []
        for step in range(n_steps):
            at = g.const(step, dtype=np.int64)
            slices = [g.op("Gather", tensor, at, axis=0) for tensor in scanned]
            head, hs, cs = cell(g, tokens, hs, cs, slices.pop(0) if stepwise else terms)
            tokens, out = per_step(g, head, slices)
            outputs.append(g.op("Unsqueeze", out, g.const([0], dtype=np.int64)))
        return g.op("Concat", *outputs, axis=0)
    body = g.subgraph("decoder_step")
    tokens = body.input(body.fresh("tokens"), INT64, ["n"])
    state_in = [body.input(body.fresh("state"), FLOAT, ["n", cell.hidden]) for _ in range(2 * cell.layers)]
    slice_types = ([(FLOAT, ["n", 4 * cell.hidden])] if stepwise else []) + [(t, shape) for _, t, shape in step_inputs]
    slices = [body.input(body.fresh("slice"), elem_type, shape) for elem_type, shape in slice_types]
    head, new_h, new_c = cell(body, tokens, state_in[: cell.layers], state_in[cell.layers :],
                              slices.pop(0) if stepwise else terms)
    next_tokens, out = per_step(body, head, slices)
    # Outputs under the names their nodes gave them (no Identity per output); a value is output once, so one that
    # is both the next input and the scan output (the sampler's token) gets one Identity.
    out = body.op("Identity", out) if out == next_tokens else out
    body.output(next_tokens, next_tokens, INT64, ["n"])
    for value in new_h + new_c:
        body.output(value, value, FLOAT, ["n", cell.hidden])
    body.output(out, out, INT64 if out_rank == 1 else FLOAT, ["n"] if out_rank == 1 else ["n", "v"])
    results = g.op("Scan", first_tokens, *hs, *cs, *scanned, outputs=2 + 2 * cell.layers, body=body.make(),
                   num_scan_inputs=len(scanned))
    return results[-1]  # (n_steps, N, ...)


def _segment(config: dict) -> int:
    """Steps the decoder runs per sequence it starts: segment_bars bars (hierarchical; 1 in configs that predate
    the field) or the whole sequence (flat)."""
    bars = config.get("segment_bars", 1) if config["hierarchical"] else config["bars"]
    return bars * config["steps_per_bar"]


def _segments(config: dict) -> int:
    """Sequences the decoder starts per phrase: the conductor's count of outputs (1 for a flat model)."""
    return config["bars"] * config["steps_per_bar"] // _segment(config)


def lookback_gates(g: Graph, cell: _DecoderCell, steps: int, segment: int) -> str | None:
    """A lookback model's input lookback (B, T) int64 — the phrase it continues — gathered once, before the
    Scan, into every step's first-layer gate term, step-major (segment, N, 4H); None (and no input) for others."""
    if cell.lookback_table is None:
        return None
    lookback = g.input("lookback", INT64, ["batch", steps])
    segments = g.op("Reshape", lookback, g.const([-1, segment], dtype=np.int64))  # (N, segment)
    return g.op("Gather", cell.lookback_table, g.op("Transpose", segments, perm=[1, 0]))  # (segment, N, 4H)


def sampler_noise(g: Graph, steps: int, vocab: int) -> str:
    """The sampler's inputs noise (B, T, V) and logit_mask (V,), summed once, before the decoder's Scan: what every
    step adds to its logits before the ArgMax. A zero mask leaves the noise bit for bit as it was; the runtime
    does the same sum in numpy for graphs exported before this input existed."""
    noise = g.input("noise", FLOAT, ["batch", steps, vocab])
    mask = g.input("logit_mask", FLOAT, [vocab])
    return g.op("Add", noise, mask)  # (B, T, V) + (V,)


def choose_token(g: Graph, scores: str, rule: str, note_on: int | None) -> str:
    """Tokens (N,) from one step's scores (N, V) by `rule` — the graph form of musicvae.choose_tokens.

    event_first: classes = [scores[:, :note_on], logsumexp(scores[:, note_on:])], token = the class, or
    note_on + the best pitch when the class is note-on. Written as ONE ArgMax over the events and the pitches
    shifted by logsumexp − max (the same shift for every pitch keeps their order and lifts the best one to the
    logsumexp): an event beats the note-on class exactly when it beats the best shifted pitch, and ties go to the
    event, the lower index, as in torch's argmax over the classes. max − logsumexp is the largest LogSoftmax of
    the pitches (TopK: a per-row max whose axis is an attribute in every opset, unlike ReduceMax's). A masked
    note-on (−1e9) adds exp(−1e9 − max) = 0 to the sum and never wins while another note-on is free."""
    if rule == "argmax":
        return g.op("ArgMax", scores, axis=1, keepdims=0)
    axis1, first_pitch = g.const([1], dtype=np.int64), g.const([note_on], dtype=np.int64)
    events = g.op("Slice", scores, g.const([0], dtype=np.int64), first_pitch, axis1)  # (N, note_on)
    pitches = g.op("Slice", scores, first_pitch, g.const([np.iinfo(np.int64).max], dtype=np.int64), axis1)  # (N, P)
    top, _ = g.op("TopK", g.op("LogSoftmax", pitches, axis=1), axis1, axis=1, outputs=2)  # (N, 1): max − logsumexp
    shifted = g.op("Sub", pitches, top)  # (N, P): the best pitch now scores the pitches' logsumexp
    return g.op("ArgMax", g.op("Concat", events, shifted, axis=1), axis=1, keepdims=0)


def _parallel_logits(g: Graph, w: dict, config: dict, z: str, steps: int) -> str:
    """A parallel decoder's logits (B, T, V) for z (B, Z) and the lookback input (B, T) — ParallelDecoder.forward."""
    hidden = config["dec_size"]
    lookback = g.input("lookback", INT64, ["batch", steps])
    looked = g.op("Gather", g.const(w["decoder.lookback_embed.weight"], "lookback_embed"), lookback)  # (B, T, E)
    placed = g.op("Add", looked, g.const(w["decoder.position_embed.weight"], "position_embed"))  # + (T, E)
    cond = g.op("Expand", g.op("Unsqueeze", z, g.const([1], dtype=np.int64)),
                g.const([1, steps, 1], dtype=np.int64))  # (B, T, Z)
    x = g.op("Transpose", g.op("Concat", placed, cond, axis=2), perm=[1, 0, 2])  # (T, B, E + Z)
    x, _ = _bidirectional_stack(g, x, w, "decoder.rnn", hidden, config["dec_layers"])  # (T, B, 2H)
    features = g.op("Concat", g.op("Transpose", x, perm=[1, 0, 2]), looked, axis=2)  # (B, T, 2H + E)
    hidden_out = g.op("Relu", g.op("Add", g.op("MatMul", features, g.const(w["decoder.hidden_layer.weight"].T)),
                                   g.const(w["decoder.hidden_layer.bias"])))  # (B, T, H)
    return g.op("Add", g.op("MatMul", hidden_out, g.const(w["decoder.head.weight"].T)),
                g.const(w["decoder.head.bias"]))  # (B, T, V)


def sampler_graph(g: Graph, w: dict, config: dict, unroll: bool = False, rule: str = "argmax") -> None:
    """The autoregressive decoder in one ONNX Scan (unroll=True writes the steps out instead: measured no faster,
    and 25–60× slower to load — docs/export.md); each step picks its token by `rule` (choose_token)."""
    note_on = first_note_on(config["representation"]) if check_rule(rule) == "event_first" else None
    vocab, steps, segment = config["vocab_size"], config["bars"] * config["steps_per_bar"], _segment(config)
    z = g.input("z", FLOAT, ["batch", config["z_size"]])
    noise = sampler_noise(g, steps, vocab)
    if config.get("decoder_type") == "parallel":  # every step's token from its own scores, in one pass
        scores = g.op("Add", _parallel_logits(g, w, config, z, steps), noise)  # (B, T, V)
        tokens = choose_token(g, g.op("Reshape", scores, g.const([-1, vocab], dtype=np.int64)), rule, note_on)
        g.output(g.op("Reshape", tokens, g.const([-1, steps], dtype=np.int64)), "tokens", INT64, ["batch", steps])
        return
    cond = _conditions(g, w, config, z)
    cell = _DecoderCell(g, w, config, cond)
    step_gates = cell.step_gates(g, lookback_gates(g, cell, steps, segment))
    # Every step's addend to the head's output, step-major: noise + mask + the head's bias (N, segment, V) →
    # (segment, N, V), so the step adds its slice once.
    noise = g.op("Add", g.op("Reshape", noise, g.const([-1, segment, vocab], dtype=np.int64)), cell.b_head)
    noise = g.op("Transpose", noise, perm=[1, 0, 2])
    rows = g.op("Slice", g.op("Shape", cond), g.const([0], dtype=np.int64), g.const([1], dtype=np.int64))
    start = g.op("ConstantOfShape", rows, value=helper.make_tensor("value", INT64, [1], [vocab]))  # start token

    def token_step(graph: Graph, head: str, slices: list[str]):
        token = choose_token(graph, graph.op("Add", head, slices[0]), rule, note_on)  # + this step's noise (N, V)
        return token, token

    tokens = _decode(g, cell, start, step_gates, [(noise, FLOAT, ["n", vocab])], token_step, segment, 1,
                     unroll)  # (segment, N)
    tokens = g.op("Transpose", tokens, perm=[1, 0])  # (N, segment)
    g.output(g.op("Reshape", tokens, g.const([-1, steps], dtype=np.int64)), "tokens", INT64, ["batch", steps])


def teacher_forced_graph(g: Graph, w: dict, config: dict, unroll: bool = False) -> None:
    """Logits (B, T, V) for given decoder inputs: the same cell, fed the true previous tokens."""
    vocab, steps, segment = config["vocab_size"], config["bars"] * config["steps_per_bar"], _segment(config)
    z = g.input("z", FLOAT, ["batch", config["z_size"]])
    inputs = g.input("inputs", INT64, ["batch", steps])
    if config.get("decoder_type") == "parallel":  # no teacher forcing to do: `inputs` is read by nothing
        g.output(_parallel_logits(g, w, config, z, steps), "logits", FLOAT, ["batch", steps, vocab])
        return
    cond = _conditions(g, w, config, z)
    cell = _DecoderCell(g, w, config, cond)
    step_gates = cell.step_gates(g, lookback_gates(g, cell, steps, segment))
    inputs = g.op("Reshape", inputs, g.const([-1, segment], dtype=np.int64))  # (N, segment)
    # The input each step passes on (inputs[:, 0] is the start token, read first): step t passes inputs[:, t + 1];
    # the last step's is never read (it repeats the last input), step-major (segment, N).
    axis1 = g.const([1], dtype=np.int64)
    following = g.op("Concat", g.op("Slice", inputs, g.const([1], dtype=np.int64), g.const([segment], dtype=np.int64), axis1),
                     g.op("Slice", inputs, g.const([segment - 1], dtype=np.int64), g.const([segment], dtype=np.int64),
                          axis1), axis=1)
    following = g.op("Transpose", following, perm=[1, 0])

    def logits_step(graph: Graph, head: str, slices: list[str]):
        return graph.op("Identity", slices[0]), head  # the given input passes on (a body output is a node's)

    first = g.op("Gather", inputs, g.const(0, dtype=np.int64), axis=1)
    heads = _decode(g, cell, first, step_gates, [(following, INT64, ["n"])], logits_step, segment, 2,
                    unroll)  # (segment, N, V)
    logits = g.op("Add", g.op("Transpose", heads, perm=[1, 0, 2]), cell.b_head)  # (N, segment, V): every step's bias
    g.output(g.op("Reshape", logits, g.const([-1, steps, vocab], dtype=np.int64)), "logits", FLOAT,
             ["batch", steps, vocab])
