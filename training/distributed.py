"""Distributed training on torch's own engine: DistributedDataParallel under torchrun.

    musicbridge train --nproc-per-node 2 ...                 # re-launches itself through torch.distributed.run
    torchrun --nproc-per-node 4 -m musicbridge train ...     # the same, by hand
    torchrun --nnodes 2 --node-rank 0 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
             --nproc-per-node 8 -m musicbridge train ...     # several machines: torchrun's rendezvous flags

gloo on CPU, NCCL on GPUs. Only rank 0 writes checkpoints, metrics and plots.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Processes:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def choose_device(requested: str, local_rank: int = 0) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available to this torch build")
        return torch.device("cuda", local_rank)
    if requested == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {requested!r}; choose auto, cpu or cuda")


def start(device_request: str) -> tuple[Processes, torch.device]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); choose this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    processes = Processes(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world_size)
    device = choose_device(device_request, processes.local_rank)
    if processes.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # A group left to the interpreter's teardown can abort the process ("terminate called without an active
        # exception" from gloo's threads, exit -6) after a run that went well: leave it here in any case.
        atexit.register(stop)
    return processes, device


def stop() -> None:
    """Leave the process group (idempotent: the CLI calls it, and so does the interpreter's exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, processes: Processes, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any (so all ranks stop at the same step)."""
    if not processes.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def parameters_in_sync(model: torch.nn.Module, processes: Processes, device: torch.device) -> bool:
    """Whether every rank holds the same weights (compares a float64 checksum of each parameter)."""
    if not processes.distributed:
        return True
    sums = torch.stack([p.detach().double().sum() for p in model.parameters()]).to(device)
    gathered = [torch.empty_like(sums) for _ in range(processes.world_size)]
    dist.all_gather(gathered, sums)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])


def relaunch(nproc_per_node: int, arguments: list[str]) -> int:
    """Run `python -m musicbridge <arguments>` in `nproc_per_node` processes through torch.distributed.run."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(["--standalone", f"--nproc-per-node={nproc_per_node}", "-m", "musicbridge", *arguments])
    except ChildFailedError as error:
        print(f"distributed training failed: {error}")
        return 1
    return 0
