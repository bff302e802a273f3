"""One process or torchrun DDP behind one small object.

Under `torchrun` (WORLD_SIZE, RANK, LOCAL_RANK in the environment) `Dist.from_env()` initialises the
process group (`nccl` on CUDA, `gloo` on CPU), picks `cuda:LOCAL_RANK`, and wraps models in
DistributedDataParallel. Without those variables everything is a no-op for a single process.
Small control messages (stop flags, logged losses) go through a CPU (`gloo`) group so reading them
never waits on the GPU stream.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError

TEARDOWN_PAUSE_S = 0.2  # seconds without the GIL before the process group goes (see Dist.close); 0.05 sufficed
                        # in benchmarks/ddp_teardown.py, 4x that for busier machines


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:LOCAL_RANK if CUDA is available, else cpu."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but CUDA is not available; use device=cpu or auto")
        return torch.device("cuda", local_rank)
    if device == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device {device!r}; choose auto, cpu or cuda")


@dataclass
class Dist:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # we initialised the process group, so we destroy it
    cpu_group: object = None

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that writes files)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when running under torchrun with more than one process group member."""
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: str = "auto") -> "Dist":
        """Read torchrun's environment; initialise the process group if needed."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        dev = resolve_device(device, local_rank)
        if world <= 1:
            return cls(1, 0, 0, dev)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        owns = False
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                    **({"device_id": dev} if dev.type == "cuda" else {}))
            owns = True
        cpu_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        return cls(dist.get_world_size(), dist.get_rank(), local_rank, dev, owns, cpu_group)

    def wrap(self, model: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """DDP wrapper (broadcasts rank 0's parameters and buffers), or the model itself."""
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                   find_unused_parameters=find_unused_parameters)

    @staticmethod
    def no_sync(wrapped: nn.Module, skip: bool):
        """Context without the gradient all-reduce when `skip` (all but the last micro-step)."""
        if skip and isinstance(wrapped, nn.parallel.DistributedDataParallel):
            return wrapped.no_sync()
        return contextlib.nullcontext()

    def barrier(self) -> None:
        """Wait for every process (no-op without a process group)."""
        if self.enabled:
            dist.barrier(group=self.cpu_group)

    def sum_cpu(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce (sum) a CPU tensor across processes; identity for one process."""
        if self.enabled:
            dist.all_reduce(t, group=self.cpu_group)
        return t

    def any(self, flag: bool) -> bool:
        """True on every process if `flag` is True on any."""
        if not self.enabled:
            return flag
        return bool(self.sum_cpu(torch.tensor([int(flag)])).item())

    def close(self) -> None:
        """Destroy the process group this object created.

        First a short pause without the GIL: gloo's worker threads free each finished collective, and
        DDP's carry a Python object (the backward pass's context) whose release needs the GIL; a worker
        that gets there only while the interpreter shuts down aborts the process after a finished run
        ("terminate called without an active exception": 6 of 20 two-process DDP runs under CPU load with
        torch 2.14, 0 of 20 with the pause, benchmarks/ddp_teardown.py; pytorch/pytorch#179291 describes
        the race)."""
        if self.owns_group and dist.is_initialized():
            time.sleep(TEARDOWN_PAUSE_S)  # no barrier: after an error on one rank it would wait forever
            dist.destroy_process_group()
            self.owns_group = False
