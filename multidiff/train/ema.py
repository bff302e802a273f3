"""Exponential moving average of a model's floating-point state (parameters and float buffers).

Update rule after optimizer step t (t = 0 for the first update):

    decay_t = min(decay, (1 + t) / (10 + t))     if warmup  (the usual EMA warmup)
    decay_t = decay                               otherwise
    shadow  = decay_t * shadow + (1 - decay_t) * value

With warmup the average starts short (decay 0.1 at t = 0, 0.5 at t = 8, 0.9 at t = 80) so early
weights, which are mostly the random init, are forgotten quickly.
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow copy of the floating-point entries of `model.state_dict()`.

    Args:
        model: the module to track (unwrapped, not the DDP wrapper).
        decay: the long-run decay in [0, 1).
        warmup: use decay_t = min(decay, (1 + t) / (10 + t)).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        self._owner: nn.Module | None = None
        self._live: list[torch.Tensor] = []

    def decay_at(self, step: int) -> float:
        """decay_t for update number `step` (0-based)."""
        if self.warmup:
            return min(self.decay, (1.0 + step) / (10.0 + step))
        return self.decay

    def _live_tensors(self, model: nn.Module) -> list[torch.Tensor]:
        # state_dict() walks every module; cache the (storage-sharing) tensors once per model.
        if self._owner is not model:
            sd = model.state_dict()
            missing = [k for k in self.shadow if k not in sd]
            if missing:
                raise KeyError(f"model lacks EMA entries {missing[:5]}")
            self._live = [sd[k] for k in self.shadow]
            self._owner = model
        return self._live

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """shadow <- decay_t * shadow + (1 - decay_t) * model state, for update number `step`."""
        live = self._live_tensors(model)
        if live:
            torch._foreach_lerp_(list(self.shadow.values()), live, 1.0 - self.decay_at(step))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow tensors, keyed like the model's state_dict (float entries only)."""
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore shadow weights saved by `state_dict` (names and shapes must match)."""
        if set(state) != set(self.shadow):
            extra, missing = set(state) - set(self.shadow), set(self.shadow) - set(state)
            raise KeyError(f"EMA state does not match the model: missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(extra)[:5]}")
        for k, v in self.shadow.items():
            v.copy_(state[k])

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Write the shadow values into `module` (same architecture); non-float state is left as is."""
        sd = module.state_dict()
        for k, v in self.shadow.items():
            sd[k].copy_(v)
