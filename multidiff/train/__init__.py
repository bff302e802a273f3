"""Training: the Trainer (one process or torchrun DDP), EMA, atomic checkpoints, run-folder lock."""

from .checkpoint import checkpoint_step, has_checkpoint, recover
from .distributed import Dist
from .ema import EMA
from .lock import RunLock
from .trainer import TrainConfig, Trainer, optimizer_names

__all__ = ["EMA", "Dist", "RunLock", "TrainConfig", "Trainer", "checkpoint_step", "has_checkpoint",
           "optimizer_names", "recover"]
