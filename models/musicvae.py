"""MusicVAE (Roberts et al. 2018): a bidirectional LSTM encoder → q(z|x) = N(μ, σ); an autoregressive LSTM
decoder, flat or hierarchical (a conductor LSTM emits one embedding per bar, and a bottom decoder restarted from
each embedding writes that bar).

The sampling API, batch-first throughout:
    mu, sigma = model.encode(tokens)                  # (B, T) int64 → (B, Z), (B, Z)
    tokens = model.decode(z, temperature=0.0, seed=1)  # (B, Z) → (B, T); temperature 0 = greedy
    tokens = model.decode(z, temperature=0.0, rule="event_first")  # the event class first, then the pitch
Training and evaluation use `forward` / `teacher_forced_logits` (the whole sequence in one fused LSTM call).

Layout, for exporters (export/ re-expresses `LSTMDecoder.prepare` + `step` as one ONNX Loop):
- token ids: 0..vocab-1 are the representation's; `vocab` is the start token that opens every decoded sequence
  (every bar, for the hierarchical model); `vocab + 1` is the mask token of token dropout (training only).
- a decoder's initial state is tanh(init(c)) viewed as (B, 2, layers, H): [:, 0] the h of each layer, [:, 1]
  the c. The condition c is z (flat) or the bar's conductor output (hierarchical, bars decoded as a batch).
- the first decoder LSTM layer sees [embed(token), c]: its weight_ih_l0[:, :embed_size] acts on the token and
  [:, embed_size:] on c, so `prepare` folds the token part into a (vocab + 2, 4H) gate table and the c part
  into one (B, 4H) term per sequence; each step is then a gather, the recurrent matmuls, and the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musicbridge.codecs import get_codec
from musicbridge.models.presets import ModelConfig

# How a decoding step turns its scores into a token (the exported sampler graph writes the same rules,
# export/musicvae.py; model.json records which one as "decoding_rule"):
# - "argmax": the token with the highest score (the default everywhere);
# - "event_first": first the event class — each token below the representation's first note-on is a class of
#   its own (melody: hold, note-off), all note-ons together are one, scored by their logsumexp — then, when
#   that class is note-on, the pitch with the highest score. A model sure THAT a note comes but unsure WHICH
#   spreads the onset mass over many pitches, so plain argmax picks hold: the continuation model answered ~2
#   note-ons per 2 bars where the truth has 12; event_first raised its next-bar onset F1 from 0.04 to 0.13.
DECODING_RULES = ("argmax", "event_first")


def lstm_state_from(init: nn.Linear, condition: torch.Tensor, layers: int, hidden: int):
    """(h0, c0), each (layers, B, H), from tanh(init(condition))."""
    state = torch.tanh(init(condition)).view(-1, 2, layers, hidden).transpose(0, 2)  # (layers, 2, B, H)
    return state[:, 0].contiguous(), state[:, 1].contiguous()


def check_rule(rule: str) -> str:
    if rule not in DECODING_RULES:
        raise ValueError(f"unknown decoding rule {rule!r}; choose one of {', '.join(DECODING_RULES)}")
    return rule


def first_note_on(representation: str) -> int:
    """The representation's first note-on id (melody: 2), where event_first's note-on class begins; a ValueError
    for a representation without note-ons of one pitch each (drums)."""
    codec = get_codec(representation)
    if not hasattr(codec, "FIRST_NOTE_ON"):
        raise ValueError(f"the event_first decoding rule needs note-on tokens of one pitch each, which the "
                         f"{codec.name} representation has not; decode it with rule='argmax'")
    return codec.FIRST_NOTE_ON


def decoding_rule_for(config: ModelConfig, task: str) -> str:
    """The rule a model ships with: event_first for a MusicVAE trained to continue a representation with
    note-ons (its answers are what event_first was measured on), argmax for everything else."""
    melodic = hasattr(get_codec(config.representation), "FIRST_NOTE_ON")
    return "event_first" if task == "continue" and config.architecture == "musicvae" and melodic else "argmax"


def choose_tokens(scores: torch.Tensor, rule: str = "argmax", note_on: int | None = None) -> torch.Tensor:
    """Tokens (B,) from one step's scores (B, V) by `rule` (DECODING_RULES); event_first needs `note_on`, the
    first note-on id. Masked tokens (scores −1e9, a scale lock) add nothing to the note-on logsumexp and are
    never the pitch while any note-on is free."""
    if check_rule(rule) == "argmax":
        return scores.argmax(dim=-1)
    if note_on is None:
        raise ValueError("the event_first rule needs the first note-on id (musicbridge.models.musicvae.first_note_on)")
    pitches = scores[:, note_on:]  # (B, P)
    classes = torch.cat([scores[:, :note_on], pitches.logsumexp(dim=-1, keepdim=True)], dim=-1)  # (B, note_on + 1)
    event = classes.argmax(dim=-1)  # (B,) — note_on itself stands for "a note-on"
    return torch.where(event == note_on, note_on + pitches.argmax(dim=-1), event)


class Encoder(nn.Module):
    """Bidirectional LSTM; the last layer's final forward and backward states → μ and σ = softplus(·)."""

    def __init__(self, vocab_size: int, embed_size: int, hidden: int, layers: int, z_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.LSTM(embed_size, hidden, layers, batch_first=True, bidirectional=True)
        self.mu = nn.Linear(2 * hidden, z_size)
        self.sigma = nn.Linear(2 * hidden, z_size)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, (h, _) = self.rnn(self.embed(tokens))
        final = torch.cat([h[-2], h[-1]], dim=-1)  # last layer: forward, backward
        return self.mu(final), F.softplus(self.sigma(final))


class Conductor(nn.Module):
    """The hierarchical model's top decoder: one output per bar from z (z is its input at every bar)."""

    def __init__(self, z_size: int, hidden: int, layers: int):
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.init = nn.Linear(z_size, 2 * layers * hidden)
        self.rnn = nn.LSTM(z_size, hidden, layers, batch_first=True)

    def forward(self, z: torch.Tensor, bars: int) -> torch.Tensor:
        state = lstm_state_from(self.init, z, self.layers, self.hidden)
        out, _ = self.rnn(z[:, None].expand(-1, bars, -1), state)
        return out  # (B, bars, H)


class LSTMDecoder(nn.Module):
    """Autoregressive LSTM over steps conditioned on a vector c, fed [embed(previous token), c] at every step."""

    def __init__(self, vocab_size: int, embed_size: int, cond_size: int, hidden: int, layers: int):
        super().__init__()
        self.vocab_size, self.hidden, self.layers = vocab_size, hidden, layers
        self.start_token, self.mask_token = vocab_size, vocab_size + 1
        self.embed = nn.Embedding(vocab_size + 2, embed_size)
        self.init = nn.Linear(cond_size, 2 * layers * hidden)
        self.rnn = nn.LSTM(embed_size + cond_size, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, cond: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, S, V) for input tokens (B, S) that start with the start token."""
        x = torch.cat([self.embed(inputs), cond[:, None].expand(-1, inputs.shape[1], -1)], dim=-1)
        out, _ = self.rnn(x, lstm_state_from(self.init, cond, self.layers, self.hidden))
        return self.head(out)

    def prepare(self, cond: torch.Tensor):
        """Everything that does not depend on the step: token gate table, c's gate term, state, weights."""
        embed_size = self.embed.embedding_dim
        w0 = self.rnn.weight_ih_l0
        token_gates = self.embed.weight @ w0[:, :embed_size].T  # (vocab + 2, 4H)
        cond_gates = F.linear(cond, w0[:, embed_size:], self.rnn.bias_ih_l0 + self.rnn.bias_hh_l0)  # (B, 4H)
        layers = [
            (getattr(self.rnn, f"weight_ih_l{i}"), getattr(self.rnn, f"weight_hh_l{i}"),
             getattr(self.rnn, f"bias_ih_l{i}") + getattr(self.rnn, f"bias_hh_l{i}"))
            for i in range(self.layers)
        ]
        h, c = lstm_state_from(self.init, cond, self.layers, self.hidden)
        return token_gates, cond_gates, layers, (list(h.unbind(0)), list(c.unbind(0)))

    def step(self, tokens, state, token_gates, cond_gates, layers):
        """One step: previous tokens (B,) → logits (B, V) and the new state (lists of (B, H) per layer)."""
        hs, cs = state
        new_h, new_c = [], []
        x = None
        for i, (w_ih, w_hh, bias) in enumerate(layers):
            # PyTorch's gate order: input, forget, cell, output.
            gates = token_gates[tokens] + cond_gates if i == 0 else F.linear(x, w_ih, bias)
            gates = gates + F.linear(hs[i], w_hh)
            in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=-1)
            c = torch.sigmoid(forget_gate) * cs[i] + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
            x = torch.sigmoid(out_gate) * torch.tanh(c)
            new_h.append(x)
            new_c.append(c)
        return self.head(x), (new_h, new_c)

    def sample(self, cond: torch.Tensor, n_steps: int, temperature: float, generator: torch.Generator | None,
               rule: str = "argmax", note_on: int | None = None):
        """Tokens (B, n_steps) by `rule` (DECODING_RULES; event_first needs `note_on`, the first note-on id).

        argmax: argmax(logits / temperature + Gumbel noise), a categorical draw; plain argmax at temperature 0.
        event_first: the rule on logits + temperature · Gumbel noise — the scores the exported sampler graph
        sees (its noise input is temperature · Gumbel), equal to logits / temperature + Gumbel at temperature 1
        and to the logits at 0, so the note-on class keeps its pooled mass at every temperature. A near-greedy
        rule, NOT exact sampling: neither the class (a logsumexp of perturbed scores) nor the pitch (their
        argmax) is a draw from the model's distribution."""
        check_rule(rule)
        token_gates, cond_gates, layers, state = self.prepare(cond)
        tokens = torch.full((cond.shape[0],), self.start_token, dtype=torch.long, device=cond.device)
        out = []
        for _ in range(n_steps):
            logits, state = self.step(tokens, state, token_gates, cond_gates, layers)
            if temperature > 0:
                uniform = torch.rand(logits.shape, generator=generator, device=logits.device)
                gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
                logits = logits / temperature + gumbel if rule == "argmax" else logits + temperature * gumbel
            tokens = choose_tokens(logits, rule, note_on)
            out.append(tokens)
        return torch.stack(out, dim=1)


class MusicVAE(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.steps = config.steps
        self.z_size = config.z_size
        # The decoder writes segments: the whole sequence (flat) or one bar at a time (hierarchical).
        self.segment = config.steps_per_bar if config.hierarchical else config.steps
        self.encoder = Encoder(config.vocab_size, config.embed_size, config.enc_size, config.enc_layers, config.z_size)
        cond_size = config.z_size
        self.conductor = None
        if config.hierarchical:
            self.conductor = Conductor(config.z_size, config.conductor_size, config.conductor_layers)
            cond_size = config.conductor_size
        self.decoder = LSTMDecoder(config.vocab_size, config.embed_size, cond_size, config.dec_size, config.dec_layers)

    # -- the sampling API -------------------------------------------------------------------------------------

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ, σ (B, Z) of q(z | tokens (B, T))."""
        self._check_tokens(tokens)
        return self.encoder(tokens)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, temperature: float = 1.0, seed: int | None = None,
               rule: str = "argmax") -> torch.Tensor:
        """Tokens (B, T) decoded from z (B, Z); greedy when temperature == 0, else reproducible for a seed;
        `rule` picks each token (DECODING_RULES, LSTMDecoder.sample)."""
        note_on = first_note_on(self.config.representation) if check_rule(rule) == "event_first" else None
        generator = None
        if seed is not None and temperature > 0:
            generator = torch.Generator(device=z.device).manual_seed(int(seed))
        cond = self.conditions(z)
        tokens = self.decoder.sample(cond, self.segment, float(temperature), generator, rule, note_on)
        return tokens.reshape(z.shape[0], self.steps)

    # -- training / evaluation --------------------------------------------------------------------------------

    def conditions(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's condition per segment, (B * segments, C): z, or the conductor's output for each bar."""
        if self.conductor is None:
            return z
        return self.conductor(z, self.config.bars).reshape(-1, self.config.conductor_size)

    def decoder_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing inputs (B, T): each segment shifted right by one behind the start token."""
        segments = tokens.reshape(tokens.shape[0], -1, self.segment)
        start = torch.full_like(segments[..., :1], self.decoder.start_token)
        return torch.cat([start, segments[..., :-1]], dim=-1).reshape(tokens.shape)

    def teacher_forced_logits(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) given z and decoder inputs (B, T) from `decoder_inputs` (possibly altered)."""
        cond = self.conditions(z)
        logits = self.decoder(cond, inputs.reshape(-1, self.segment))
        return logits.reshape(z.shape[0], self.steps, -1)

    def forward(self, tokens: torch.Tensor, inputs: torch.Tensor | None = None, eps: torch.Tensor | None = None,
                resample=None, source: torch.Tensor | None = None):
        """One training pass: encode, z = μ + σ·eps (eps ~ N(0, I) unless given), teacher-forced logits.

        `source` (B, T), when given, is what the encoder reads instead of `tokens` (the continuation task:
        encode bars 1–2, decode bars 3–4).

        `resample(logits) -> inputs` (scheduled sampling): first a gradient-free teacher-forced decoder pass,
        whose logits `resample` turns into new decoder inputs for the real pass — inside one forward call, so
        the encoder runs once and DistributedDataParallel sees a single forward.
        """
        return vae_forward(self, tokens, inputs, eps, resample, source)

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 2 or tokens.shape[1] != self.steps:
            raise ValueError(f"expected tokens of shape (batch, {self.steps}), got {tuple(tokens.shape)}")


def vae_forward(model, tokens, inputs=None, eps=None, resample=None, source=None) -> dict:
    """The training pass every VAE here shares: encode, z = μ + σ·eps, optional guide pass, logits.

    `model` needs encode, decoder_inputs and teacher_forced_logits (MusicVAE, TransformerVAE).
    """
    mu, sigma = model.encode(tokens if source is None else source)
    z = mu + sigma * (torch.randn_like(mu) if eps is None else eps)
    if inputs is None:
        inputs = model.decoder_inputs(tokens)
    if resample is not None:
        with torch.no_grad():
            inputs = resample(model.teacher_forced_logits(z, inputs))
    return {"logits": model.teacher_forced_logits(z, inputs), "mu": mu, "sigma": sigma, "z": z}


def build_model(config: ModelConfig | dict) -> nn.Module:
    """The model a ModelConfig (or its dict, as stored in checkpoints under config["model"]) describes: a
    MusicVAE, or a TransformerVAE when config.architecture == "transformer"."""
    if isinstance(config, dict):
        config = ModelConfig(**config)
    if config.bars < 1 or config.steps_per_bar < 1:
        raise ValueError(f"a model needs at least one bar of at least one step, got {config}")
    if config.architecture == "transformer":
        from musicbridge.models.transformer_vae import TransformerVAE

        return TransformerVAE(config)
    if config.architecture != "musicvae":
        raise ValueError(f"unknown architecture {config.architecture!r}; choose musicvae or transformer")
    return MusicVAE(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
