"""The training loop: one process or one rank of a torchrun job (see distributed.py). What one step does — the
loss, the optimisers — is the architecture's objective (objectives.py): the VAE's for MusicVAE and the
Transformer VAE, the vsae's adversarial one for the vsae.

The VAE objective's scheduled sampling runs in two parallel passes instead of stepping the decoder in Python
(which made steps ~3× slower): a teacher-forced pass without gradients, one sample per step from its logits, those samples mixed
into the decoder inputs with the schedule's probability, then the real pass (Duckworth et al. 2019, "Parallel
Scheduled Sampling", one pass) — both inside one model forward (MusicVAE.forward's `resample`), so the encoder
runs once. A step costs one extra decoder forward (~1.25× instead of ~3×); the price is that a mixed-in sample
is conditioned on the true history rather than on the model's own earlier samples.

Every random draw of step s comes from generators seeded by (seed, s, rank): a resumed run continues bit for
bit (on CPU), and the ranks of a distributed run draw different noise for different data.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from musicbridge.data import Dataset
from musicbridge.models import Preset, build_model, count_parameters, preset_from_dict
from musicbridge.models.musicvae import (
    CONDITION_SCALE,
    decoding_rule_for,
    fit_segment_mix,
    grown_state,
    grows_into,
    with_lookback_columns,
)
from musicbridge.models.presets import check_lookback
from musicbridge.models.vsae import VSAEConfig, vsae_state_from_musicvae
from musicbridge.training import augment, distributed, schedules
from musicbridge.training.batches import BatchStream
from musicbridge.training.checkpoint import (
    CheckpointError,
    checkpoint_payload,
    load_checkpoint,
    model_from_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
)
from musicbridge.training.continuation import continuation_metrics
from musicbridge.training.evaluate import TorchModel, reconstruction_metrics
from musicbridge.training.objectives import objective_for

TASKS = ("reconstruct", "continue")
SEGMENT_MIX_WINDOWS = 512  # training windows whose segment codes rank the dimensions a grown z keeps (fit_segment_mix)


def step_generator(seed: int, step: int, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
    state = np.random.SeedSequence([seed, step, rank]).generate_state(2, np.uint64)
    return torch.Generator(device=device).manual_seed(int(state[0] >> np.uint64(1)))


def window_steps(preset: Preset) -> int:
    """Steps of the dataset windows a preset trains on: its model's, or twice that for the continuation task."""
    if preset.train.task not in TASKS:
        raise ValueError(f"unknown task {preset.train.task!r}; choose one of {', '.join(TASKS)}")
    return preset.model.steps * (2 if preset.train.task == "continue" else 1)


def check_dataset(preset: Preset, data: Dataset) -> None:
    model, codec = preset.model, data.codec
    if (model.representation, model.vocab_size, model.steps_per_bar) != (codec.name, codec.vocab_size, codec.steps_per_bar):
        raise ValueError(f"preset {preset.name!r} is for {model.representation!r} ({model.vocab_size} tokens), "
                         f"the dataset {data.path} holds {codec.name!r} ({codec.vocab_size} tokens)")
    if data.steps != window_steps(preset):
        bars = window_steps(preset) // model.steps_per_bar
        what = f"continues {model.bars} bars from {model.bars}" if preset.train.task == "continue" else "models"
        raise ValueError(f"preset {preset.name!r} {what} ({bars}-bar windows, {window_steps(preset)} steps); the "
                         f"dataset {data.path} has {data.steps}-step windows — build it with --bars {bars}")
    data.verify()  # tokens, dtype, window shapes and the manifest's hash, file by file


class Trainer:
    def __init__(self, preset: Preset, data: Dataset, out_dir: str | Path, device: str = "auto",
                 resume: bool = False, console=None, show_progress: bool = True):
        self.preset, self.data, self.out = preset, data, Path(out_dir)
        self.config = preset.train
        self.console, self.show_progress = console, show_progress
        check_lookback(preset.model, self.config.task)
        check_dataset(preset, data)
        schedules.check(self.config)
        self.processes, self.device = distributed.start(device)
        world = self.processes.world_size
        if self.config.batch_size % world:
            raise ValueError(f"batch size {self.config.batch_size} does not split over {world} processes")

        torch.manual_seed(self.config.seed)
        self.model = build_model(preset.model).to(self.device)
        # What a step does and which optimisers it steps: the architecture's objective (objectives.py).
        code_source = self._code_source() if self.config.code_steps > 0 else None
        self.objective = objective_for(preset, self.model, self.processes.distributed, code_source)
        self.step, self.best_val_loss, self.elapsed = 0, float("inf"), 0.0
        if resume:
            self._restore(self.out / "last.pt")
        elif self.config.init_from:
            self._initialise_from(Path(self.config.init_from))
        self.ddp = self.model
        if self.processes.distributed:
            device_ids = [self.device] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=device_ids)

        train = np.asarray(data.split("train"))
        self.batches = BatchStream(train, self.config.batch_size // world, self.config.seed,
                                   self.processes.rank, world)
        valid = np.asarray(data.split("valid")[: self.config.eval_sequences], dtype=np.int64)
        self.valid = valid if len(valid) >= 2 else None
        self.stop_requested = False
        if self.processes.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.out)  # a killed run's half-written checkpoints
            if resume:
                self._mend_best()
            self.metrics_path = self.out / "metrics.jsonl"
            if resume:
                self._truncate_metrics()
            elif self.metrics_path.exists():
                self.metrics_path.unlink()

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimiser of the encoder and decoder (the vsae's discriminator has its own: self.objective)."""
        return self.objective.optimizer

    # -- one step -------------------------------------------------------------------------------------------

    def train_step(self, step: int) -> dict[str, float]:
        """The step's batch (transposed on the fly for melodies), then the architecture's update."""
        config, rank = self.config, self.processes.rank
        tokens = self.batches.batch(step)
        if self.preset.model.representation == "melody":
            data_rng = step_generator(config.seed, step, rank)
            tokens = augment.transpose_melodies(tokens, config.transpose, self.data.codec.vocab_size - 1, data_rng)
        source, tokens = self._source_and_target(tokens.to(self.device))
        rng = step_generator(config.seed + 1, step, rank, self.device)
        return self.objective.step(self.ddp, step, tokens, source, rng, schedules.learning_rate(step, config))

    def _source_and_target(self, windows: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(what the encoder reads, what the decoder writes): (None, windows) for a VAE — it reads its target —
        and (first half, second half) for the continuation task."""
        if self.config.task != "continue":
            return None, windows
        steps = self.preset.model.steps
        return windows[:, :steps], windows[:, steps:]

    # -- validation -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """The objective's validation losses (objectives.py; "loss" picks best.pt) and the collapse checks."""
        model, config = self.model, self.config
        model.eval()
        rng = step_generator(config.seed + 2, 0, 0, self.device)
        sums: dict[str, float] = {}
        for start in range(0, len(self.valid), 512):
            source, tokens = self._source_and_target(torch.as_tensor(self.valid[start:start + 512], device=self.device))
            for name, value in self.objective.validation_batch(model, tokens, source, rng).items():
                sums[name] = sums.get(name, 0.0) + value * tokens.shape[0]
        result = {name: total / len(self.valid) for name, total in sums.items()}
        if config.task == "continue":
            # Decoded by the rule the exported continuation ships with (event_first), so validation measures it.
            writer = TorchModel(model, self.device, decoding_rule_for(self.preset.model, config.task))
            result.update(continuation_metrics(writer, self.valid, self.preset.model.steps, seed=config.seed))
        else:
            result.update(reconstruction_metrics(TorchModel(model, self.device), self.valid,
                                                 self.data.codec.onsets(self.valid), seed=config.seed))
        model.train()
        return result

    # -- the loop -------------------------------------------------------------------------------------------

    def run(self) -> dict:
        config, main = self.config, self.processes.is_main
        if main:
            self._say(f"{self.preset.name}: {count_parameters(self.model):,} parameters, {len(self.batches.windows):,} "
                      f"training windows, batch {config.batch_size} on {self.processes.world_size} × {self.device}, "
                      f"steps {self.step} → {config.steps}")
        previous_handlers = self._catch_interrupts()
        progress = self._progress() if main and self.show_progress else None
        window: list[dict[str, float]] = []
        started, window_started = time.perf_counter(), time.perf_counter()
        elapsed_before = self.elapsed
        self.model.train()
        try:
            if progress is not None:
                progress.start()
                task = progress.add_task(self.preset.name, total=config.steps, completed=self.step, stats="")
            while self.step < config.steps:
                if distributed.any_rank(self.stop_requested, self.processes, self.device):
                    self.stop_requested = True
                    break
                window.append(self.train_step(self.step))
                self.step += 1
                self.elapsed = elapsed_before + time.perf_counter() - started
                if self.step % config.log_every == 0 or self.step == config.steps:
                    rate = len(window) / (time.perf_counter() - window_started)
                    names = dict.fromkeys(name for w in window for name in w)  # a window may span two phases
                    record = {name: float(np.mean([w[name] for w in window if name in w])) for name in names}
                    record.update(steps_per_s=rate)
                    self._log("train", record)
                    if progress is not None:
                        progress.update(task, completed=self.step, stats=(
                            f"{self.objective.progress(record)} {rate:.2f} it/s"))
                    window, window_started = [], time.perf_counter()
                if self.step % config.eval_every == 0 or self.step == config.steps:
                    evaluation_started = time.perf_counter()
                    self._evaluate_and_save()
                    window_started += time.perf_counter() - evaluation_started  # steps/s counts training only
        finally:
            if progress is not None:
                progress.stop()
            for sig, previous in previous_handlers.items():
                signal.signal(sig, previous)
        if self.stop_requested:
            if main:
                self._say(f"interrupted at step {self.step}: saving {self.out / 'last.pt'}")
                self._save("last.pt")
        in_sync = distributed.parameters_in_sync(self.model, self.processes, self.device)
        summary = {"step": self.step, "elapsed_seconds": self.elapsed, "interrupted": self.stop_requested,
                   "best_val_loss": self.best_val_loss, "world_size": self.processes.world_size,
                   "ranks_in_sync": in_sync}
        self._log("end", summary)
        if not in_sync:
            raise RuntimeError("distributed ranks ended with different weights")
        return summary

    def _evaluate_and_save(self) -> None:
        if self.processes.is_main:
            improved = False
            if self.valid is not None:
                record = self.validate()
                self._log("valid", record)
                if self.config.task == "continue":
                    self._say(f"step {self.step}: valid loss {record['loss']:.2f}, next-bars onset F1 "
                              f"{record['onset_f1']:.3f} (repeat {record['onset_f1_repeat']:.3f}, random "
                              f"{record['onset_f1_random']:.3f}), KL {record['kl_bits_sampled_z']:.1f} bits")
                else:
                    self._say(f"step {self.step}: {self.objective.valid_line(record)}")
                improved = record["loss"] < self.best_val_loss
                if improved:
                    self.best_val_loss = record["loss"]
            # last.pt first: a kill before best.pt is written leaves the new best in last.pt, which resume
            # copies to best.pt (_mend_best); the other order could leave best.pt ahead of what resume reads.
            self._save("last.pt")
            if improved:
                self._save("best.pt")
        if self.processes.distributed:
            torch.distributed.barrier()

    # -- checkpoints, logs ----------------------------------------------------------------------------------

    def _save(self, name: str) -> None:
        save_checkpoint(self.out / name, checkpoint_payload(
            self.model, self.preset, self.data.codec.describe(), self.data.hash, self.step,
            optimizer=self.objective.state_dict(), best_val_loss=self.best_val_loss, elapsed_seconds=self.elapsed))

    def _restore(self, path: Path) -> None:
        checkpoint = load_checkpoint(path, map_location=self.device)
        if checkpoint["dataset_hash"] != self.data.hash:
            raise CheckpointError(f"{path} was trained on dataset {checkpoint['dataset_hash'][:12]}…, not on "
                                  f"{self.data.path} ({self.data.hash[:12]}…)")
        # Compared as rebuilt configs: fields added since the checkpoint was written take their defaults.
        if preset_from_dict(checkpoint["config"]).model != self.preset.model:
            raise CheckpointError(f"{path} holds a different model than preset {self.preset.name!r} describes")
        self.model.load_state_dict(checkpoint["model"])
        self.objective.load_state_dict(checkpoint["optimizer"])
        self.step = int(checkpoint["step"])
        self.best_val_loss = float(checkpoint["best_val_loss"])
        self.elapsed = float(checkpoint["elapsed_seconds"])

    def _mend_best(self) -> None:
        """A kill between the two writes of an evaluation leaves last.pt with a best_val_loss that best.pt does
        not have: last.pt then holds that best model (same step, same weights), so it becomes best.pt."""
        last, best = self.out / "last.pt", self.out / "best.pt"
        checkpoint = load_checkpoint(last)
        kept = load_checkpoint(best)["best_val_loss"] if best.is_file() else float("inf")
        if checkpoint["best_val_loss"] < kept:
            save_checkpoint(best, checkpoint)
            self._say(f"best.pt was behind last.pt (a run killed between the two writes): best.pt is now last.pt's "
                      f"step {self.step}")

    def _code_source(self) -> torch.nn.Module:
        """The flat model (init_from) whose codes of each segment the first code_steps teach the encoder and
        conductor (TrainConfig.code_steps) — loaded on resume too, since those steps may not be over."""
        model, path = self.preset.model, self.config.init_from
        if not getattr(model, "hierarchical", False) or not path:
            raise ValueError(f"code_steps = {self.config.code_steps} teaches a hierarchical model grown from a flat "
                             f"one the flat one's codes: it needs hierarchical = true and init_from = that model's "
                             f"checkpoint (or leave code_steps at 0)")
        if self.processes.distributed:
            raise ValueError("code_steps run in one process only; leave out --nproc-per-node or set code_steps=0")
        checkpoint = load_checkpoint(Path(path), map_location=self.device)
        source_model, source_preset = model_from_checkpoint(checkpoint)
        source = source_preset.model
        if not grows_into(source, model) or source.steps != model.segment_bars * model.steps_per_bar:
            raise CheckpointError(f"code_steps: init_from {path} is not a flat model of this one's parts whose "
                                  f"sequence is one segment of it ({model.segment_bars} bars: --set segment_bars="
                                  f"{source.bars})")
        for parameter in source_model.parameters():
            parameter.requires_grad_(False)
        return source_model.to(self.device).eval()

    def _initialise_from(self, path: Path) -> None:
        """Start from another run's weights (the optimisers start fresh): same model config required — or the
        same model without lookback, for a lookback model (its lookback columns start at zero, so step 0
        computes what the source does; models/musicvae.py with_lookback_columns) — or a shorter MusicVAE of the
        same parts (mel_2bar → mel_16bar_hier: the encoder and bottom decoder copied, models/musicvae.py
        grown_state) — or, for a vsae, the flat MusicVAE it is made of (encoder and decoder copied, a fresh
        discriminator; models/vsae.py)."""
        checkpoint = load_checkpoint(path, map_location=self.device)
        source, model = preset_from_dict(checkpoint["config"]).model, self.preset.model
        widen = (getattr(model, "lookback", False) and type(source) is type(model) and not source.lookback
                 and dataclasses.replace(source, lookback=True) == model)
        from_autoencoder = isinstance(model, VSAEConfig) and source == model.autoencoder()
        grow = grows_into(source, model)
        if source != model and not widen and not from_autoencoder and not grow:
            raise CheckpointError(f"init_from {path} holds a different model than preset {self.preset.name!r}")
        if checkpoint["representation"] != self.data.codec.describe():
            raise CheckpointError(f"init_from {path} speaks {checkpoint['representation']['name']} "
                                  f"v{checkpoint['representation']['version']}, the dataset another representation")
        if not widen and not from_autoencoder and not grow:
            self.model.load_state_dict(checkpoint["model"])
            return
        # The three ways a source of other shapes starts this model: each adapts the state, then it loads as one.
        copied = len(checkpoint["model"])
        if grow:
            state, fresh = grown_state(checkpoint["model"], self.model)
            scaled = f" (its z columns × {CONDITION_SCALE:g}: c reads as z / {CONDITION_SCALE:g})" \
                if model.hierarchical else ""
            said = (f"a {source.bars}-bar model grown into this {model.bars}-bar one — its {copied} tensors copied, new "
                    f"condition columns zero{scaled}, fresh initialisation for {len(fresh)} tensors"
                    + (f" ({', '.join(sorted({key.split('.')[0] for key in fresh}))})" if fresh else ""))
        elif from_autoencoder:
            state, fresh = vsae_state_from_musicvae(checkpoint["model"], self.model)
            said = (f"a MusicVAE of this vsae's sizes — its encoder and decoder copied ({copied} tensors), the "
                    f"discriminator's {len(fresh)} fresh")
        else:
            state, fresh = with_lookback_columns(checkpoint["model"], self.model)
            said = (f"a model without lookback — copied its {copied} tensors, decoder.rnn.weight_ih_l0 widened by "
                    f"{model.embed_size} zero lookback columns (step 0 computes what the source does); fresh "
                    f"initialisation for {', '.join(fresh)}")
        self.model.load_state_dict(state)
        if grow and (model.encoder_type, model.conductor_type) == ("segments", "linear"):
            windows = torch.as_tensor(np.asarray(self.data.split("train")[:SEGMENT_MIX_WINDOWS], dtype=np.int64),
                                      device=self.device)
            fitted = fit_segment_mix(self.model, windows)
            said += (f"; z holds each segment's {len(fitted['dims'])} most informative code dimensions "
                     f"({fitted['kl_share']:.0%} of the code's KL on {len(windows)} training windows) and the "
                     f"conductor hands each segment its own")
        if self.processes.is_main:
            self._say(f"init_from {path}: {said}")

    def _log(self, kind: str, record: dict) -> None:
        if not self.processes.is_main:
            return
        line = {"kind": kind, "step": self.step, "time": round(self.elapsed, 3), **record}
        with open(self.metrics_path, "a") as file:
            file.write(json.dumps(line) + "\n")

    def _truncate_metrics(self) -> None:
        """Drop records a crashed or interrupted run wrote after the checkpoint we resume from."""
        if not self.metrics_path.exists():
            return
        lines = self.metrics_path.read_text().splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= self.step]
        self.metrics_path.write_text("".join(line + "\n" for line in kept))

    def _say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message)

    def _progress(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), TextColumn("{task.fields[stats]}"), console=self.console)

    def _catch_interrupts(self):
        """First Ctrl-C (or SIGTERM, which torchrun sends its workers): finish the step, save, exit cleanly.

        A second Ctrl-C interrupts at once. Returns the previous handlers, restored when the run ends.
        """
        def handler(signum, frame):
            if self.stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_requested = True
            if self.processes.is_main:
                self._say("stopping after this step (Ctrl-C again to abort without saving)")

        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
