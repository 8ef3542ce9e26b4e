"""Schedules as pure functions of the step, so a resumed run continues exactly where it stopped."""

from __future__ import annotations

import math

from musicbridge.models.presets import TrainConfig

BETA_SCHEDULES = ("exponential", "linear", "cyclical", "constant")
SAMPLING_SCHEDULES = ("inverse_sigmoid", "constant", "none")
TOKEN_DROPOUT_KINDS = ("mask", "random")


def beta(step: int, config: TrainConfig) -> float:
    """Weight of the KL term.

    exponential: β_max · (1 − rate^step), Magenta's beta_rate (0.99999 reaches 63 % of β_max at 100k steps);
    linear: warm-up from 0 to β_max over beta_warmup_steps; cyclical (Fu et al. 2019): within each cycle of
    beta_cycle_steps, a linear rise over the first half, then β_max; constant: β_max.
    """
    kind, top = config.beta_schedule, config.beta_max
    if kind == "exponential":
        return top * (1.0 - config.beta_rate**step)
    if kind == "linear":
        return top * min(1.0, step / max(1, config.beta_warmup_steps))
    if kind == "cyclical":
        phase = (step % config.beta_cycle_steps) / config.beta_cycle_steps
        return top * min(1.0, 2.0 * phase)
    if kind == "constant":
        return top
    raise ValueError(f"unknown beta_schedule {kind!r}; choose one of {', '.join(BETA_SCHEDULES)}")


def sampling_probability(step: int, config: TrainConfig) -> float:
    """Chance that a decoder input is the model's own sample instead of the true previous token.

    inverse_sigmoid (Bengio et al. 2015, as in Magenta): 1 − k / (k + exp(step / k)) with k = sampling_rate,
    ~0 at the start, 0.5 at step k·ln k; capped at sampling_max. constant: sampling_rate itself.
    A p below sampling_min is 0: each step with p > 0 costs an extra decoder pass (see trainer.py), which is
    not worth it while it would replace under 1 % of the inputs (k = 1000: the first ~2.3k steps).
    """
    kind = config.sampling_schedule
    if kind == "inverse_sigmoid":
        k = config.sampling_rate
        exponent = step / k
        p = 1.0 if exponent > 700 else 1.0 - k / (k + math.exp(exponent))
    elif kind == "constant":
        p = config.sampling_rate
    elif kind == "none":
        p = 0.0
    else:
        raise ValueError(f"unknown sampling_schedule {kind!r}; choose one of {', '.join(SAMPLING_SCHEDULES)}")
    return 0.0 if p < config.sampling_min else min(p, config.sampling_max)


def token_dropout_rate(step: int, config: TrainConfig) -> float:
    """Fraction of decoder inputs dropped: token_dropout, reached linearly over token_dropout_warmup_steps (the
    decoder first learns the sequence, then has to lean on z for what it no longer sees)."""
    ramp = min(1.0, step / config.token_dropout_warmup_steps) if config.token_dropout_warmup_steps > 0 else 1.0
    return config.token_dropout * ramp


def learning_rate(step: int, config: TrainConfig) -> float:
    """Exponential decay to a floor: (lr − lr_min) · decay^step + lr_min."""
    return (config.lr - config.lr_min) * config.lr_decay**step + config.lr_min


def check(config: TrainConfig) -> None:
    """Refuse unknown schedule names before a long run starts rather than at its first step."""
    beta(0, config)
    sampling_probability(0, config)
    if config.beta_schedule == "cyclical" and config.beta_cycle_steps < 1:
        raise ValueError("beta_cycle_steps must be ≥ 1")
    if not 0.0 <= config.token_dropout < 1.0:
        raise ValueError(f"token_dropout must be in [0, 1), got {config.token_dropout}")
    if config.token_dropout_kind not in TOKEN_DROPOUT_KINDS:
        raise ValueError(f"unknown token_dropout_kind {config.token_dropout_kind!r}; choose one of "
                         f"{', '.join(TOKEN_DROPOUT_KINDS)}")
