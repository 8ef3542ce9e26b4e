"""MusicVAE (Roberts et al. 2018): a bidirectional LSTM encoder → q(z|x) = N(μ, σ); an autoregressive LSTM
decoder, flat or hierarchical (a conductor LSTM emits one embedding per segment of segment_bars bars, and a
bottom decoder restarted from each embedding writes that segment); a continuation may instead have a parallel
decoder that writes every step at once (ParallelDecoder). A hierarchical model may also read each segment
alone and mix the segments' codes into z (encoder_type "segments") and condition each segment on its own affine
map of z (conductor_type "linear"): mel_16bar_segments, grown from mel_2bar by fit_segment_mix.

The sampling API, batch-first throughout:
    mu, sigma = model.encode(tokens)                  # (B, T) int64 → (B, Z), (B, Z)
    tokens = model.decode(z, temperature=0.0, seed=1)  # (B, Z) → (B, T); temperature 0 = greedy
    tokens = model.decode(z, temperature=0.0, rule="event_first")  # the event class first, then the pitch
    tokens = model.decode(z, lookback=phrase)          # a lookback model (config.lookback): phrase (B, T) is the
                                                       # one it continues, read step by step beside z
Training and evaluation use `forward` / `teacher_forced_logits` (the whole sequence in one fused LSTM call).

Layout, for exporters (export/ re-expresses `LSTMDecoder.prepare` + `step` as one ONNX Loop):
- token ids: 0..vocab-1 are the representation's; `vocab` is the start token that opens every decoded sequence
  (every segment, for the hierarchical model); `vocab + 1` is the mask token of token dropout (training only).
- segments: the decoder writes the whole sequence from z (flat), or, hierarchical, bars / segment_bars segments of
  segment_bars · steps_per_bar steps (`MusicVAE.segment`), one from each conductor output, as one batch of
  B · segments sequences, batch-major (row b · segments + s is segment s of sequence b).
- a decoder's initial state is tanh(init(c)) viewed as (B, 2, layers, H): [:, 0] the h of each layer, [:, 1]
  the c. The condition c is z (flat) or the segment's conductor output (hierarchical).
- the first decoder LSTM layer sees [embed(token), c]: its weight_ih_l0[:, :embed_size] acts on the token and
  [:, embed_size:] on c, so `prepare` folds the token part into a (vocab + 2, 4H) gate table and the c part
  into one (B, 4H) term per sequence; each step is then a gather, the recurrent matmuls, and the head.
- lookback (config.lookback, continuations only; Magenta's Lookback RNN): the first layer sees
  [embed(token), lookback_embed(lookback[t]), c], lookback[t] being the token the encoded phrase played at the
  same step (one model length earlier): weight_ih_l0[:, :E] acts on the token, [:, E:2E] on the lookback token
  (E = embed_size) and [:, 2E:] on c. `lookback_table` folds the middle part into a (vocab, 4H) table (no start
  or mask token: lookback tokens are the representation's), gathered by the lookback phrase into one (4H,) term
  per step that `step` adds to the first layer's gates. Hierarchical: each segment reads the same segment of the
  phrase.
  A model without lookback has neither the embedding nor the columns.
- a parallel decoder (decoder_type "parallel", a lookback continuation; ParallelDecoder) has no token embedding,
  start token table or initial state: a bidirectional LSTM (decoder.rnn) reads [lookback_embed(lookback[t]) +
  position_embed[t], z] at every step, and decoder.hidden_layer, then decoder.head, map [its output, the lookback
  embedding] to the step's logits — all steps in one pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from musicbridge.codecs import get_codec
from musicbridge.models.config import ArchitectureConfig, require_positive

ENCODER_TYPES = ("sequence", "segments")  # MusicVAEConfig.encoder_type; the first is the default
CONDUCTOR_TYPES = ("lstm", "linear")  # MusicVAEConfig.conductor_type; the first is the default
DECODER_TYPES = ("autoregressive", "parallel")  # MusicVAEConfig.decoder_type; the first is the default
# A parallel decoder perturbs every step independently, so temperature 1 scatters its answers (shipped continuation,
# valid split: 14 % of intervals leap over a fifth, data 3 %). Its export declares this scale (model.json
# "temperature_scale"; the runtime draws the noise at temperature × scale): at 0.4 the answers' density, pitch
# range and leaps are nearest the data's (6.4 note-ons per bar, range 8.4, leaps 4.2 %; data 6.2, 9.1, 3.1 %).
PARALLEL_TEMPERATURE_SCALE = 0.4


@dataclass
class MusicVAEConfig(ArchitectureConfig):
    """A MusicVAE's sizes (the shared fields — representation, vocab_size, steps_per_bar, bars, z_size — are
    ArchitectureConfig's). The defaults are mel_2bar's: Magenta's cat-mel_2bar at CPU size."""

    architecture: ClassVar[str] = "musicvae"

    hierarchical: bool = False  # a conductor LSTM over segments + a bottom decoder restarted every segment
    # Hierarchical only: the bars each conductor output covers; the bottom decoder, restarted from each, writes
    # segment_bars · steps_per_bar steps. 2 on a 16-bar model grown from mel_2bar (grown_state) keeps its decoder
    # writing what it was trained to: a 2-bar phrase from one code, not a bar restarted every bar. Divides bars.
    segment_bars: int = 1
    # Hierarchical only: how the window becomes z, and z the segments' conditions.
    # "sequence": one bidirectional LSTM reads the whole window (MusicVAE). "segments": the same encoder reads each
    # segment alone into a code of segment_code_size, and one linear map mixes the segments' codes into z
    # (Magenta's HierarchicalLstmEncoder with a linear top level): a 16-bar model grown from mel_2bar then starts
    # with mel_2bar's encoder reading each 2-bar segment, as it was trained to (fit_segment_mix).
    encoder_type: str = "sequence"
    segment_code_size: int = 128  # encoder_type "segments": each segment's code before the mix into z
    # "lstm": a conductor LSTM of conductor_layers × conductor_size (MusicVAE); "linear": one affine map from z to
    # every segment's condition of conductor_size, which can hand a segment exactly the code it was given.
    conductor_type: str = "lstm"
    embed_size: int = 64  # token embedding (Magenta feeds one-hot vectors; an embedding is the same map, cheaper)
    enc_size: int = 256  # LSTM units per direction of the bidirectional encoder
    enc_layers: int = 1  # encoder LSTM layers
    conductor_size: int = 256  # conductor LSTM units (hierarchical only)
    conductor_layers: int = 2  # conductor LSTM layers (hierarchical only)
    dec_size: int = 256  # decoder LSTM units
    dec_layers: int = 2  # decoder LSTM layers
    # Continuations only (task "continue"): the decoder also reads, at step t, the token the encoded phrase played
    # at step t (Magenta's Lookback RNN). Tunes repeat and vary their bars, and z is a bottleneck through which a
    # decoder cannot copy what it should keep; on the reconstruct task it would read its target.
    lookback: bool = False
    # "autoregressive": the LSTM decoder writes a step from the token it wrote before (MusicVAE). "parallel"
    # (lookback continuations only, ParallelDecoder): a bidirectional LSTM over the phrase it continues and z writes
    # every step at once, so each step's scores are that step's own distribution given the whole input. A decoder
    # fed its own greedy tokens settles on holds and restarts (next-bar onset F1 0.12–0.14, below repeating the
    # input); per-step distributions read by event_first beat repeating on the same windows (module docstring).
    decoder_type: str = "autoregressive"

    def validate(self) -> None:
        super().validate()
        require_positive(self, "embed_size", "enc_size", "enc_layers", "dec_size", "dec_layers", "segment_bars")
        if self.hierarchical:
            require_positive(self, "conductor_size", "conductor_layers")
        for name, kinds in (("encoder_type", ENCODER_TYPES), ("conductor_type", CONDUCTOR_TYPES),
                            ("decoder_type", DECODER_TYPES)):
            if getattr(self, name) not in kinds:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(kinds)} "
                                 f"(--set {name}=…)")
        if not self.hierarchical and (self.encoder_type, self.conductor_type) != (ENCODER_TYPES[0], CONDUCTOR_TYPES[0]):
            raise ValueError(f"encoder_type {self.encoder_type!r} and conductor_type {self.conductor_type!r} work on "
                             f"the segments of a hierarchical model; set --set hierarchical=true, or leave them at "
                             f"{ENCODER_TYPES[0]!r} and {CONDUCTOR_TYPES[0]!r}")
        if self.encoder_type == "segments":
            require_positive(self, "segment_code_size")
        if self.decoder_type == "parallel" and (not self.lookback or self.hierarchical):
            raise ValueError("decoder_type \"parallel\" writes every step from the phrase it continues, so it needs a "
                             "flat lookback model (--set lookback=true, task continue; --preset mel_2bar_next_parallel), "
                             "or leave decoder_type at \"autoregressive\"")
        if not self.hierarchical and self.segment_bars != 1:
            raise ValueError(f"segment_bars = {self.segment_bars} needs a hierarchical model (a flat decoder writes "
                             f"the whole sequence from z); set --set hierarchical=true, or leave segment_bars at 1")
        if self.bars % self.segment_bars:
            divisors = ", ".join(str(n) for n in range(1, self.bars + 1) if self.bars % n == 0)
            raise ValueError(f"segment_bars = {self.segment_bars} does not divide bars = {self.bars} (each conductor "
                             f"output covers segment_bars bars); set --set segment_bars=N with N one of {divisors}")


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


def decoding_rule_for(config: ArchitectureConfig, task: str) -> str:
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


def perturbed(logits: torch.Tensor, temperature: float, generator: torch.Generator | None,
              rule: str = "argmax") -> torch.Tensor:
    """The scores a decoding rule reads at `temperature` (LSTMDecoder.sample's docstring says why each):
    argmax: logits / temperature + Gumbel noise (a categorical draw); event_first: logits + temperature · Gumbel;
    the logits themselves at temperature 0."""
    if temperature <= 0:
        return logits
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
    return logits / temperature + gumbel if rule == "argmax" else logits + temperature * gumbel


class Encoder(nn.Module):
    """Bidirectional LSTM; the last layer's final forward and backward states → μ and σ = softplus(·)."""

    def __init__(self, vocab_size: int, embed_size: int, hidden: int, layers: int, z_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.LSTM(embed_size, hidden, layers, batch_first=True, bidirectional=True)
        self.mu = nn.Linear(2 * hidden, z_size)
        self.sigma = nn.Linear(2 * hidden, z_size)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        final = self.features(tokens)
        return self.mu(final), F.softplus(self.sigma(final))

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """The last layer's final [forward, backward] states (B, 2H) for tokens (B, T) — or for one-hot rows
        (B, T, V) float, a relaxed sample (models/vsae.py), embedded by the same matrix (one-hot @ weight is the
        lookup) so gradients reach whatever made them."""
        embedded = self.embed(tokens) if not tokens.is_floating_point() else tokens @ self.embed.weight
        _, (h, _) = self.rnn(embedded)
        return torch.cat([h[-2], h[-1]], dim=-1)  # last layer: forward, backward


class SegmentEncoder(Encoder):
    """The encoder of encoder_type "segments": Encoder reads each segment alone into (μ_s, σ_s) of
    segment_code_size; one linear map mixes the segments' μ_s into z's μ, another their σ pre-activations into
    z's (σ = softplus of the mix). Its own weights keep Encoder's names, so a flat model's encoder grows into it
    (grown_state) and reads each segment as it read its whole window."""

    def __init__(self, vocab_size: int, embed_size: int, hidden: int, layers: int, code_size: int, segment: int,
                 segments: int, z_size: int):
        super().__init__(vocab_size, embed_size, hidden, layers, code_size)
        self.segment, self.code_size = segment, code_size
        self.mix_mu = nn.Linear(segments * code_size, z_size)
        self.mix_sigma = nn.Linear(segments * code_size, z_size)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, pre_sigma = self.segment_heads(tokens)  # (B, S, C) each
        return self.mix_mu(mu.flatten(1)), F.softplus(self.mix_sigma(pre_sigma.flatten(1)))

    def segment_heads(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each segment's μ_s and σ_s before softplus, (B, S, C) each, for tokens (B, T)."""
        final = self.features(tokens.reshape(-1, self.segment))  # (B · S, 2H)
        shape = (tokens.shape[0], -1, self.code_size)
        return self.mu(final).view(shape), self.sigma(final).view(shape)


class Conductor(nn.Module):
    """The hierarchical model's top decoder: one output per segment from z (z is its input at every segment)."""

    def __init__(self, z_size: int, hidden: int, layers: int):
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.init = nn.Linear(z_size, 2 * layers * hidden)
        self.rnn = nn.LSTM(z_size, hidden, layers, batch_first=True)

    def forward(self, z: torch.Tensor, segments: int) -> torch.Tensor:
        state = lstm_state_from(self.init, z, self.layers, self.hidden)
        out, _ = self.rnn(z[:, None].expand(-1, segments, -1), state)
        return out  # (B, segments, H)


class LinearConductor(nn.Module):
    """The conductor of conductor_type "linear": every segment's condition is its own affine map of z."""

    def __init__(self, z_size: int, cond_size: int, segments: int):
        super().__init__()
        self.cond_size = cond_size
        self.out = nn.Linear(z_size, segments * cond_size)

    def forward(self, z: torch.Tensor, segments: int) -> torch.Tensor:
        return self.out(z).view(z.shape[0], segments, self.cond_size)  # (B, segments, C)


class LSTMDecoder(nn.Module):
    """Autoregressive LSTM over steps conditioned on a vector c, fed [embed(previous token), c] at every step —
    with lookback, [embed(previous token), lookback_embed(lookback token of the step), c] (module docstring)."""

    def __init__(self, vocab_size: int, embed_size: int, cond_size: int, hidden: int, layers: int,
                 lookback: bool = False):
        super().__init__()
        self.vocab_size, self.hidden, self.layers = vocab_size, hidden, layers
        self.start_token, self.mask_token = vocab_size, vocab_size + 1
        self.embed = nn.Embedding(vocab_size + 2, embed_size)
        self.init = nn.Linear(cond_size, 2 * layers * hidden)
        # weight_ih_l0's columns: the token's, the lookback token's (lookback only), then c's from cond_column.
        self.cond_column = embed_size * (2 if lookback else 1)
        self.rnn = nn.LSTM(self.cond_column + cond_size, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)
        self.lookback_embed = nn.Embedding(vocab_size, embed_size) if lookback else None

    def forward(self, cond: torch.Tensor, inputs: torch.Tensor, lookback: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits (B, S, V) for input tokens (B, S) that start with the start token; a lookback
        decoder also reads `lookback` (B, S), the tokens the phrase it continues played at the same steps."""
        parts = [self.embed(inputs)]
        if self.lookback_embed is not None:
            parts.append(self.lookback_embed(self._lookback(lookback, inputs.shape)))
        x = torch.cat([*parts, cond[:, None].expand(-1, inputs.shape[1], -1)], dim=-1)
        out, _ = self.rnn(x, lstm_state_from(self.init, cond, self.layers, self.hidden))
        return self.head(out)

    def lookback_table(self) -> torch.Tensor:
        """The lookback part of the first layer's input projection per lookback token, (vocab, 4H)."""
        embed_size = self.embed.embedding_dim
        return self.lookback_embed.weight @ self.rnn.weight_ih_l0[:, embed_size:self.cond_column].T

    def lookback_gates(self, lookback: torch.Tensor) -> torch.Tensor:
        """Every step's lookback term of the first layer's gates, (B, S, 4H), for lookback tokens (B, S)."""
        return self.lookback_table()[lookback]

    def _lookback(self, lookback: torch.Tensor | None, shape) -> torch.Tensor:
        if lookback is None or tuple(lookback.shape) != tuple(shape):
            raise ValueError(f"this decoder reads a lookback phrase of shape {tuple(shape)} (the tokens the phrase it "
                             f"continues played at the same steps); got {None if lookback is None else tuple(lookback.shape)}")
        return lookback

    def prepare(self, cond: torch.Tensor):
        """Everything that does not depend on the step: token gate table, c's gate term, state, weights."""
        embed_size = self.embed.embedding_dim
        w0 = self.rnn.weight_ih_l0
        token_gates = self.embed.weight @ w0[:, :embed_size].T  # (vocab + 2, 4H)
        cond_gates = F.linear(cond, w0[:, self.cond_column:], self.rnn.bias_ih_l0 + self.rnn.bias_hh_l0)  # (B, 4H)
        layers = [
            (getattr(self.rnn, f"weight_ih_l{i}"), getattr(self.rnn, f"weight_hh_l{i}"),
             getattr(self.rnn, f"bias_ih_l{i}") + getattr(self.rnn, f"bias_hh_l{i}"))
            for i in range(self.layers)
        ]
        h, c = lstm_state_from(self.init, cond, self.layers, self.hidden)
        return token_gates, cond_gates, layers, (list(h.unbind(0)), list(c.unbind(0)))

    def step(self, tokens, state, token_gates, cond_gates, layers, lookback_gates=None):
        """One step: previous tokens (B,) → logits (B, V) and the new state (lists of (B, H) per layer);
        `lookback_gates` (B, 4H): a lookback decoder's term for this step (lookback_gates(...)[:, step]).
        `tokens` may also be one-hot rows (B, V') float over the first V' ids (a relaxed sample, models/vsae.py):
        their token term is the same table row, reached through a matrix product that passes gradients on."""
        hs, cs = state
        new_h, new_c = [], []
        x = None
        token_term = token_gates[tokens] if not tokens.is_floating_point() else \
            tokens @ token_gates[: tokens.shape[-1]]
        for i, (w_ih, w_hh, bias) in enumerate(layers):
            # PyTorch's gate order: input, forget, cell, output.
            gates = token_term + cond_gates if i == 0 else F.linear(x, w_ih, bias)
            if i == 0 and lookback_gates is not None:
                gates = gates + lookback_gates
            gates = gates + F.linear(hs[i], w_hh)
            in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=-1)
            c = torch.sigmoid(forget_gate) * cs[i] + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
            x = torch.sigmoid(out_gate) * torch.tanh(c)
            new_h.append(x)
            new_c.append(c)
        return self.head(x), (new_h, new_c)

    def sample(self, cond: torch.Tensor, n_steps: int, temperature: float, generator: torch.Generator | None,
               rule: str = "argmax", note_on: int | None = None, lookback: torch.Tensor | None = None):
        """Tokens (B, n_steps) by `rule` (DECODING_RULES; event_first needs `note_on`, the first note-on id);
        a lookback decoder reads `lookback` (B, n_steps).

        argmax: argmax(logits / temperature + Gumbel noise), a categorical draw; plain argmax at temperature 0.
        event_first: the rule on logits + temperature · Gumbel noise — the scores the exported sampler graph
        sees (its noise input is temperature · Gumbel), equal to logits / temperature + Gumbel at temperature 1
        and to the logits at 0, so the note-on class keeps its pooled mass at every temperature. A near-greedy
        rule, NOT exact sampling: neither the class (a logsumexp of perturbed scores) nor the pitch (their
        argmax) is a draw from the model's distribution."""
        check_rule(rule)
        token_gates, cond_gates, layers, state = self.prepare(cond)
        looked = None if self.lookback_embed is None else self.lookback_gates(
            self._lookback(lookback, (cond.shape[0], n_steps)))  # (B, n_steps, 4H)
        tokens = torch.full((cond.shape[0],), self.start_token, dtype=torch.long, device=cond.device)
        out = []
        for t in range(n_steps):
            logits, state = self.step(tokens, state, token_gates, cond_gates, layers,
                                      None if looked is None else looked[:, t])
            tokens = choose_tokens(perturbed(logits, temperature, generator, rule), rule, note_on)
            out.append(tokens)
        return torch.stack(out, dim=1)


class ParallelDecoder(nn.Module):
    """The decoder of decoder_type "parallel": every step's logits at once from the phrase it continues and c.

    A bidirectional LSTM reads [lookback_embed(lookback[t]) + position_embed(t), c] at every step t; the head
    reads its [forward, backward] output beside the lookback token's embedding (a direct path for copying):
    Linear(2H + E, H) → ReLU → Linear(H, V). No token feeds back, so there are no teacher-forcing inputs (forward
    takes and ignores them, as the training objective passes them) and sampling is one pass: each step's token
    is chosen by the decoding rule from that step's logits (+ noise). Not autoregressive, so the steps of one
    answer are chosen independently given the input and z: at temperature 0 each is the step's most likely
    event, which is what a continuation is scored on (next-bar onsets)."""

    def __init__(self, vocab_size: int, embed_size: int, cond_size: int, hidden: int, layers: int, steps: int):
        super().__init__()
        self.vocab_size, self.hidden, self.layers, self.steps = vocab_size, hidden, layers, steps
        self.start_token, self.mask_token = vocab_size, vocab_size + 1  # decoder_inputs' ids; never read here
        self.lookback_embed = nn.Embedding(vocab_size, embed_size)
        self.position_embed = nn.Embedding(steps, embed_size)
        self.rnn = nn.LSTM(embed_size + cond_size, hidden, layers, batch_first=True, bidirectional=True)
        self.hidden_layer = nn.Linear(2 * hidden + embed_size, hidden)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, cond: torch.Tensor, inputs: torch.Tensor | None = None,
                lookback: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, S, V) for the phrase `lookback` (B, S) it continues and c (B, C); `inputs` is ignored."""
        if lookback is None or lookback.dim() != 2 or lookback.shape[1] != self.steps:
            raise ValueError(f"the parallel decoder reads the phrase it continues: lookback (batch, {self.steps}) "
                             f"tokens, got {None if lookback is None else tuple(lookback.shape)}")
        looked = self.lookback_embed(lookback)  # (B, S, E)
        x = torch.cat([looked + self.position_embed.weight, cond[:, None].expand(-1, self.steps, -1)], dim=-1)
        out, _ = self.rnn(x)  # (B, S, 2H)
        return self.head(F.relu(self.hidden_layer(torch.cat([out, looked], dim=-1))))  # (B, S, V)

    def sample(self, cond: torch.Tensor, n_steps: int, temperature: float, generator: torch.Generator | None,
               rule: str = "argmax", note_on: int | None = None, lookback: torch.Tensor | None = None):
        """Tokens (B, n_steps): `rule` on every step's logits, perturbed as LSTMDecoder.sample perturbs them
        (`perturbed`)."""
        check_rule(rule)
        return self.choose(perturbed(self(cond, None, lookback), temperature, generator, rule), rule, note_on)

    @staticmethod
    def choose(scores: torch.Tensor, rule: str, note_on: int | None) -> torch.Tensor:
        """Tokens (B, S) by `rule` from every step's scores (B, S, V)."""
        return choose_tokens(scores.reshape(-1, scores.shape[-1]), rule, note_on).view(scores.shape[:2])


class MusicVAE(nn.Module):
    def __init__(self, config: MusicVAEConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.steps = config.steps
        self.z_size = config.z_size
        self.lookback = config.lookback  # the decoder also reads the phrase it continues (module docstring)
        # The decoder writes segments: the whole sequence (flat) or segment_bars bars at a time (hierarchical).
        self.segment = config.segment_bars * config.steps_per_bar if config.hierarchical else config.steps
        segments = self.steps // self.segment
        if config.encoder_type == "segments":
            self.encoder = SegmentEncoder(config.vocab_size, config.embed_size, config.enc_size, config.enc_layers,
                                          config.segment_code_size, self.segment, segments, config.z_size)
        else:
            self.encoder = Encoder(config.vocab_size, config.embed_size, config.enc_size, config.enc_layers,
                                   config.z_size)
        cond_size = config.z_size
        self.conductor = None
        if config.hierarchical:
            self.conductor = LinearConductor(config.z_size, config.conductor_size, segments) \
                if config.conductor_type == "linear" else \
                Conductor(config.z_size, config.conductor_size, config.conductor_layers)
            cond_size = config.conductor_size
        if config.decoder_type == "parallel":
            self.decoder = ParallelDecoder(config.vocab_size, config.embed_size, cond_size, config.dec_size,
                                           config.dec_layers, self.segment)
        else:
            self.decoder = LSTMDecoder(config.vocab_size, config.embed_size, cond_size, config.dec_size,
                                       config.dec_layers, lookback=config.lookback)

    # -- the sampling API -------------------------------------------------------------------------------------

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ, σ (B, Z) of q(z | tokens (B, T))."""
        self._check_tokens(tokens)
        return self.encoder(tokens)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, temperature: float = 1.0, seed: int | None = None,
               rule: str = "argmax", lookback: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens (B, T) decoded from z (B, Z); greedy when temperature == 0, else reproducible for a seed;
        `rule` picks each token (DECODING_RULES, LSTMDecoder.sample); `lookback` (B, T): the phrase a lookback
        model continues (required for one, refused for any other)."""
        segments = self.lookback_segments(lookback, z.shape[0])
        note_on = first_note_on(self.config.representation) if check_rule(rule) == "event_first" else None
        generator = None
        if seed is not None and temperature > 0:
            generator = torch.Generator(device=z.device).manual_seed(int(seed))
        cond = self.conditions(z)
        tokens = self.decoder.sample(cond, self.segment, float(temperature), generator, rule, note_on, segments)
        return tokens.reshape(z.shape[0], self.steps)

    # -- training / evaluation --------------------------------------------------------------------------------

    def conditions(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's condition per segment, (B * segments, C): z, or the conductor's output for each segment."""
        if self.conductor is None:
            return z
        return self.conductor(z, self.steps // self.segment).reshape(-1, self.config.conductor_size)

    def decoder_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing inputs (B, T): each segment shifted right by one behind the start token."""
        segments = tokens.reshape(tokens.shape[0], -1, self.segment)
        start = torch.full_like(segments[..., :1], self.decoder.start_token)
        return torch.cat([start, segments[..., :-1]], dim=-1).reshape(tokens.shape)

    def teacher_forced_logits(self, z: torch.Tensor, inputs: torch.Tensor,
                              lookback: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) given z and decoder inputs (B, T) from `decoder_inputs` (possibly altered); a lookback
        model also reads `lookback` (B, T), the phrase it continues."""
        segments = self.lookback_segments(lookback, z.shape[0])
        cond = self.conditions(z)
        logits = self.decoder(cond, inputs.reshape(-1, self.segment), segments)
        return logits.reshape(z.shape[0], self.steps, -1)

    def lookback_segments(self, lookback: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """The decoder's lookback per segment, (B * segments, segment), or None for a model without lookback;
        a ValueError when a lookback model gets none or the wrong shape, or another model gets one."""
        if not self.lookback:
            if lookback is not None:
                raise ValueError("this model has no lookback (config.lookback is off); decode it without lookback=")
            return None
        if lookback is None:
            raise ValueError("this model continues a phrase and reads it step by step (config.lookback): pass that "
                             f"phrase as lookback=(batch, {self.steps}) tokens")
        if tuple(lookback.shape) != (batch, self.steps):
            raise ValueError(f"expected a lookback phrase of shape ({batch}, {self.steps}), got {tuple(lookback.shape)}")
        return lookback.reshape(-1, self.segment)

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

    `model` needs encode, decoder_inputs and teacher_forced_logits (MusicVAE, TransformerVAE). A lookback model
    (MusicVAE with config.lookback) reads `source`, the phrase it continues, step by step beside z.
    """
    mu, sigma = model.encode(tokens if source is None else source)
    z = mu + sigma * (torch.randn_like(mu) if eps is None else eps)
    if inputs is None:
        inputs = model.decoder_inputs(tokens)
    lookback = {"lookback": source} if getattr(model, "lookback", False) else {}
    if resample is not None:
        with torch.no_grad():
            inputs = resample(model.teacher_forced_logits(z, inputs, **lookback))
    return {"logits": model.teacher_forced_logits(z, inputs, **lookback), "mu": mu, "sigma": sigma, "z": z}


def with_lookback_columns(state: dict[str, torch.Tensor], model: MusicVAE) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A state dict for lookback `model` made from `state`, the weights of the same model without lookback:
    every tensor copied, and weight_ih_l0 widened with ZERO lookback columns (the Layout above), so the model
    starts out computing exactly what the source does; tensors the source lacks (the lookback embedding) keep
    `model`'s own initialisation. Returns (state dict, names of the tensors kept from `model`)."""
    name, embed_size = "decoder.rnn.weight_ih_l0", model.config.embed_size
    own = model.state_dict()
    expected = {key: tuple(tensor.shape) for key, tensor in own.items() if not key.startswith("decoder.lookback_embed.")}
    expected[name] = (expected[name][0], expected[name][1] - embed_size)
    if not model.lookback or {key: tuple(tensor.shape) for key, tensor in state.items()} != expected:
        raise ValueError("with_lookback_columns widens the weights of the same model without lookback into a "
                         "lookback model; these weights are of another model")
    adapted, fresh = {}, []
    for key, tensor in own.items():
        if key == name:
            widened = torch.zeros_like(tensor)  # (4H, E + E + C)
            widened[:, :embed_size] = state[key][:, :embed_size]
            widened[:, model.decoder.cond_column:] = state[key][:, embed_size:]
            adapted[key] = widened
        elif key in state:
            adapted[key] = state[key]
        else:
            adapted[key], fresh = tensor, [*fresh, key]
    return adapted, fresh


def grows_into(source: MusicVAEConfig, target: MusicVAEConfig) -> bool:
    """Whether `grown_state` can start `target` from a trained `source`: both MusicVAEs without lookback, of the
    same representation, token embedding, encoder and decoder sizes; the target may be longer, hierarchical (with
    any segment_bars), and have a larger z (and a condition at least as large as the source's z). The exact case:
    a hierarchical target whose segment (segment_bars · steps_per_bar) is the flat source's whole sequence — its
    bottom decoder then writes, from each conductor output, exactly what the source's decoder was trained to."""
    if not isinstance(source, MusicVAEConfig) or not isinstance(target, MusicVAEConfig) or source == target:
        return False
    if source.lookback or target.lookback or source.hierarchical and not target.hierarchical:
        return False
    cond_size = target.conductor_size if target.hierarchical else target.z_size
    same_parts = dataclasses.replace(source, bars=target.bars, hierarchical=target.hierarchical, z_size=target.z_size,
                                     conductor_size=target.conductor_size, conductor_layers=target.conductor_layers,
                                     segment_bars=target.segment_bars, encoder_type=target.encoder_type,
                                     segment_code_size=target.segment_code_size,
                                     conductor_type=target.conductor_type) == target
    # A segments encoder's heads write a segment's code (the source's z), a sequence encoder's write z itself.
    code_size = target.segment_code_size if target.encoder_type == "segments" else target.z_size
    return same_parts and source.z_size <= min(code_size, cond_size)


# A conductor's outputs are an LSTM's, within (−1, 1); the z a bottom decoder was trained on spans ±4 (mel_2bar's μ:
# 99.9 % within ±2.8). So a hierarchical model grown from a flat one reads its condition c as z / CONDITION_SCALE:
# the source's z columns are multiplied by it, and c = z / 3 decodes as z did — a range the conductor can reach.
CONDITION_SCALE = 3.0


def grown_state(state: dict[str, torch.Tensor], model: MusicVAE) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A state dict for `model` started from `state`, the weights of a shorter MusicVAE it grows from (grows_into;
    e.g. mel_2bar's into mel_16bar_hier): a 16-bar model learns to write melodies far sooner from a decoder that
    already writes them (from scratch, 3,000 steps of mel_16bar_hier stayed within 0.01 of all-hold).

    - a tensor of the same name and shape is copied;
    - a weight whose INPUT grew (the decoder's first-layer and init columns for a larger condition: the source's z
      columns become the condition's leading columns) gets the source's columns and ZERO for the new ones, so the
      new inputs start out with no effect; for a hierarchical model the source's z columns are multiplied by
      CONDITION_SCALE (a condition c decodes as z = c · CONDITION_SCALE did);
    - a weight or bias whose OUTPUT grew (the encoder's μ and σ for a larger z) gets the source's rows and keeps
      `model`'s own initialisation for the new ones;
    - a tensor the source lacks (the conductor) keeps `model`'s initialisation.
    The encoder and the bottom decoder keep their sizes (grows_into), so only those three cases occur.
    Returns (state dict, names of the tensors kept wholly from `model`)."""
    z_size = state["encoder.mu.weight"].shape[0]  # the source's
    first = model.decoder.cond_column
    condition_columns = {"decoder.init.weight": slice(0, z_size),  # the source's z columns, as the target holds them
                         "decoder.rnn.weight_ih_l0": slice(first, first + z_size)}
    adapted, fresh = {}, []
    for key, tensor in model.state_dict().items():
        source = state.get(key)
        if source is None:
            adapted[key], fresh = tensor, [*fresh, key]
            continue
        if source.dim() != tensor.dim() or any(s > t for s, t in zip(source.shape, tensor.shape, strict=False)):
            raise ValueError(f"grown_state starts a model from a smaller one of the same parts; {key} is "
                             f"{tuple(source.shape)} in the source and {tuple(tensor.shape)} here")
        grown = tensor.clone()
        if source.dim() == 2 and source.shape[1] < tensor.shape[1]:  # new inputs: no effect at first
            grown[:, source.shape[1]:] = 0.0
        grown[tuple(slice(0, size) for size in source.shape)] = source
        if model.conductor is not None and key in condition_columns:
            grown[:, condition_columns[key]] *= CONDITION_SCALE
        adapted[key] = grown
    return adapted, fresh


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def segment_codes(source: MusicVAE, tokens: torch.Tensor, segment: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat `source`'s posterior (μ, σ), each (B, segments, Z), of every `segment`-step piece of tokens (B, T):
    what a hierarchical model grown from it (grown_state) should hand its bottom decoder for each segment, as
    c = μ / CONDITION_SCALE."""
    mu, sigma = source.encode(tokens.reshape(-1, segment))  # (B · segments, Z)
    return mu.view(tokens.shape[0], -1, mu.shape[-1]), sigma.view(tokens.shape[0], -1, mu.shape[-1])


@torch.no_grad()
def fit_segment_mix(model: MusicVAE, tokens: torch.Tensor) -> dict:
    """Start a grown model of a segments encoder and a linear conductor (grown_state, e.g. mel_2bar's weights in
    mel_16bar_segments) where its source leaves off: z holds, for each segment, the z_size / segments dimensions
    of the bar encoder's code that carry the most information (mean KL of q(z|segment) to N(0, I) over the
    segments of `tokens` (N, T), training windows), and the conductor hands each segment back its own code as
    c = code / CONDITION_SCALE (the grown decoder's reading of a condition), a dimension left out at its mean.
    The model then decodes each segment as its source decodes that segment's code restricted to the kept
    dimensions (mel_2bar's 32 of 128: step accuracy 0.905 on mel_16bar's test windows, all 128: 0.951).
    Returns {"dims": the kept dimensions, "kl_share": the share of the code's mean KL they hold}."""
    config = model.config
    if config.encoder_type != "segments" or config.conductor_type != "linear":
        raise ValueError("fit_segment_mix sets the mix of a segments encoder and a linear conductor (encoder_type "
                         "= \"segments\", conductor_type = \"linear\")")
    segments, code_size, cond_size = model.steps // model.segment, config.segment_code_size, config.conductor_size
    per_segment = config.z_size // segments
    if config.z_size % segments or per_segment > code_size or code_size > cond_size:
        raise ValueError(f"fit_segment_mix gives each of the {segments} segments an equal share of z: z_size "
                         f"({config.z_size}) must be a multiple of {segments} of at most segment_code_size "
                         f"({code_size}) per segment, and conductor_size ({cond_size}) at least segment_code_size")
    mu, pre_sigma = model.encoder.segment_heads(tokens)  # (N, S, C) each
    sigma = F.softplus(pre_sigma)
    kl = 0.5 * (mu.square() + sigma.square() - 1.0 - 2.0 * sigma.log()).mean(dim=(0, 1))  # (C,)
    dims = kl.argsort(descending=True)[:per_segment]  # (Z / S,)
    encoder, conductor = model.encoder, model.conductor.out
    for mix in (encoder.mix_mu, encoder.mix_sigma):
        mix.weight.zero_()
        mix.bias.zero_()
    conductor.weight.zero_()
    conductor.bias.copy_(F.pad(mu.mean(dim=(0, 1)), (0, cond_size - code_size)).repeat(segments)
                         / CONDITION_SCALE)  # the dimensions left out: their mean
    for s in range(segments):
        rows = torch.arange(per_segment, device=dims.device) + s * per_segment  # z's block of segment s
        for mix in (encoder.mix_mu, encoder.mix_sigma):
            mix.weight[rows, s * code_size + dims] = 1.0
        conductor.weight[s * cond_size + dims, rows] = 1.0 / CONDITION_SCALE
        conductor.bias[s * cond_size + dims] = 0.0
    return {"dims": dims.tolist(), "kl_share": float(kl[dims].sum() / kl.sum())}
