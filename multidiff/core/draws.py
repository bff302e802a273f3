"""Random draws that do not depend on how a global batch is split across processes.

Training under DDP must give the same result as one process with the same global batch. So every
random number of a training step is drawn for the *global* batch from a generator seeded by
(seed, step, micro-step), and each process keeps its own slice. One process keeps everything.
"""

from __future__ import annotations

import torch


class Draws:
    """Per-example random numbers for one (micro-)step.

    Args:
        generator: a torch.Generator seeded identically on every process.
        global_batch: number of examples in the global (micro-)batch.
        start, stop: this process's slice of the global batch.
        device: where the returned tensors live.
    """

    def __init__(self, generator: torch.Generator, global_batch: int, start: int = 0,
                 stop: int | None = None, device: torch.device | str = "cpu"):
        self.generator = generator
        self.global_batch = global_batch
        self.start = start
        self.stop = global_batch if stop is None else stop
        self.device = torch.device(device)

    @classmethod
    def seeded(cls, seed: int, global_batch: int, start: int = 0, stop: int | None = None,
               device: torch.device | str = "cpu") -> "Draws":
        g = torch.Generator(device="cpu")
        g.manual_seed(int(seed) % (2**63))
        return cls(g, global_batch, start, stop, device)

    def _slice(self, t: torch.Tensor) -> torch.Tensor:
        return t[self.start:self.stop].to(self.device, non_blocking=True)

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) of shape [b, *shape] (b = this process's share)."""
        return self._slice(torch.rand((self.global_batch, *shape), generator=self.generator))

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal of shape [b, *shape]."""
        return self._slice(torch.randn((self.global_batch, *shape), generator=self.generator))

    def stratified(self) -> torch.Tensor:
        """One low-discrepancy uniform per example, shape [b]: (u0 + i / B) mod 1 over the global batch."""
        u0 = torch.rand((), generator=self.generator)
        u = (u0 + torch.arange(self.global_batch) / self.global_batch) % 1.0
        return self._slice(u)
