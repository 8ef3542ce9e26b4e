"""Which training windows each step sees: seeded epochs from torch's DistributedSampler, addressed by step.

Batch `step` of rank `r` is a pure function of (seed, step, rank, world size), so `--resume` needs no sampler
state and every rank of a distributed run draws different windows (the sampler shards each epoch).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DistributedSampler


class _Length:
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


class BatchStream:
    def __init__(self, windows: np.ndarray, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if len(windows) == 0:
            raise ValueError("the training split is empty")
        self.windows, self.batch_size = windows, batch_size
        self.sampler = DistributedSampler(_Length(len(windows)), num_replicas=world_size, rank=rank, shuffle=True,
                                          seed=seed, drop_last=False)
        self.per_epoch = len(self.sampler)
        self._epochs: dict[int, list[int]] = {}

    def _epoch(self, epoch: int) -> list[int]:
        if epoch not in self._epochs:
            self.sampler.set_epoch(epoch)
            self._epochs = {epoch: list(self.sampler)}  # keep one epoch; batches only move forward
        return self._epochs[epoch]

    def indices(self, step: int) -> list[int]:
        start = step * self.batch_size
        out = []
        while len(out) < self.batch_size:  # a batch may straddle an epoch boundary
            epoch, offset = divmod(start + len(out), self.per_epoch)
            order = self._epoch(epoch)
            out.extend(order[offset:offset + self.batch_size - len(out)])
        return out

    def batch(self, step: int) -> torch.Tensor:
        """Tokens (batch, steps) int64 of this rank's batch `step`."""
        return torch.from_numpy(self.windows[np.asarray(self.indices(step))].astype(np.int64))
