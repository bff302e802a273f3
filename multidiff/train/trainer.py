"""The training loop: one process or torchrun DDP, deterministic and resumable bit for bit on CPU.

The model contract: an `nn.Module` whose forward is `model(batch: Encoded, draws: Draws) -> loss`
(a scalar, the mean over this process's examples), with `save_pretrained(dir)` writing its loadable
files (config.json, model.safetensors holding `state_dict()`, modality files). Without
`save_pretrained`, the Trainer writes model.safetensors itself.

Determinism: the data order of epoch e is a permutation seeded by (seed, e); step s takes batch
s mod (batches per epoch) of it, so the data position follows from the step alone. Every random
number of the loss comes from `Draws` seeded by (seed, s, micro-step) for the global micro-batch,
so DDP with any number of processes sees the same numbers as one process. torch's global RNG
(dropout) is seeded at the start and saved in checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_model, save_file, save_model
from torch import nn
from tqdm.auto import tqdm

from ..core.draws import Draws
from ..errors import CheckpointError, ConfigError, TrainingError
from ..modalities.base import Encoded
from . import checkpoint as ckpt
from .distributed import Dist
from .ema import EMA
from .lock import RunLock

LOG_FILE = "log.jsonl"
_MASK64 = (1 << 64) - 1


def _mix(*xs: int) -> int:
    """Deterministic 63-bit seed from integers (splitmix64 steps; no Python hash())."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & _MASK64)) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python `random`: dropout and user hooks become repeatable."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def optimizer_names() -> list[str]:
    """Names of the optimizers in torch.optim (valid values of TrainConfig.optimizer, any case)."""
    return sorted(n for n, c in vars(torch.optim).items()
                  if isinstance(c, type) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer)


@dataclass
class TrainConfig:
    """Settings of a training run. `batch_size` is the GLOBAL batch (all processes, all micro-steps)."""

    max_steps: int = 1000
    batch_size: int = 64
    grad_accum: int = 1                 # micro-steps per optimizer step
    lr: float = 2e-4
    optimizer: str = "adamw"            # any torch.optim class name, case-insensitive
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)  # passed only to optimizers that take betas
    optimizer_options: dict[str, Any] = field(default_factory=dict)  # extra kwargs, e.g. {"momentum": 0.9}
    lr_schedule: str = "constant"       # "constant" | "cosine" (to 0 at max_steps), after linear warmup
    warmup_steps: int = 0
    grad_clip: float = 0.0              # max global grad norm; 0 = off
    ema_decay: float = 0.999            # 0 = no EMA
    ema_warmup: bool = True             # decay_t = min(ema_decay, (1 + t) / (10 + t))
    precision: str = "fp32"             # "fp32" | "bf16" (autocast, CPU or CUDA) | "fp16" (CUDA + GradScaler)
    seed: int = 0
    checkpoint_every: int = 1000        # steps; also at the end and on SIGTERM/SIGINT
    log_every: int = 50
    eval_every: int = 0                 # 0 = only at the end (when eval_fn/eval_data/sample_fn is given)
    device: str = "auto"                # "auto" | "cpu" | "cuda"
    quiet: bool = False                 # no progress bar
    find_unused_parameters: bool = False  # DDP option for models with conditionally unused parameters

    def optimizer_class(self) -> type[torch.optim.Optimizer]:
        """The torch.optim class named by `optimizer` (case-insensitive); ConfigError lists the choices."""
        names = optimizer_names()
        for n in names:
            if n.lower() == str(self.optimizer).lower():
                return getattr(torch.optim, n)
        raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(names)}")

    def validate(self, world_size: int = 1) -> int:
        """Check the settings; return the per-process micro-batch size."""
        self.optimizer_class()
        for name in ("max_steps", "batch_size", "grad_accum", "checkpoint_every", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "eval_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        choices = {"lr_schedule": ("constant", "cosine"), "precision": ("fp32", "bf16", "fp16"),
                   "device": ("auto", "cpu", "cuda")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name} must be one of {', '.join(valid)}; got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1) (0 turns EMA off), got {self.ema_decay}")
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        split = world_size * self.grad_accum
        if self.batch_size % split:
            raise ConfigError(
                f"batch_size {self.batch_size} is not divisible by processes ({world_size}) x grad_accum "
                f"({self.grad_accum}) = {split}; choose a multiple of {split}, e.g. "
                f"{max(split, self.batch_size // split * split)}")
        return self.batch_size // split

    def lr_at(self, step: int) -> float:
        """Learning rate of step `step` (0-based): linear warmup, then constant or cosine to 0."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.lr
        progress = (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# settings that may change on resume without changing the continued trajectory
_RESUME_FREE = {"max_steps", "checkpoint_every", "log_every", "eval_every", "quiet", "device"}


class Trainer:
    """Trains `model` on pre-encoded data `train` into the run folder `out_dir`.

    Args:
        model: nn.Module, forward `model(batch: Encoded, draws: Draws) -> scalar loss`.
        train: all training items, encoded ([N, ...] tensors). Each step uses `config.batch_size`.
        config: TrainConfig.
        out_dir: run folder (checkpoint in out_dir/model/, log in out_dir/log.jsonl).
        eval_data: optional held-out items; without eval_fn the Trainer logs their mean loss
            under the EMA weights as `eval_loss`.
        eval_fn: `eval_fn(model_for_eval, step) -> dict` of numbers, called on rank 0 with the EMA copy.
        sample_fn: `sample_fn(model_for_eval, step) -> dict | None`, same schedule as eval.

    `model` is trained in place; after `train()` it holds the final (non-EMA) weights and
    `trainer.ema` the EMA.
    """

    def __init__(self, model: nn.Module, train: Encoded, config: TrainConfig, out_dir: str | Path,
                 eval_data: Encoded | None = None, eval_fn: Callable[[nn.Module, int], dict] | None = None,
                 sample_fn: Callable[[nn.Module, int], Any] | None = None):
        config.validate()
        if len(train) < config.batch_size:
            raise ConfigError(f"batch_size {config.batch_size} is larger than the training set "
                              f"({len(train)} items); lower batch_size")
        self.model, self.data, self.config, self.out = model, train, config, Path(out_dir)
        self.eval_data, self.eval_fn, self.sample_fn = eval_data, eval_fn, sample_fn
        self.step = 0
        self.ema: EMA | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    # --- public ---------------------------------------------------------------------------
    def train(self, resume: bool = False) -> dict[str, Any]:
        """Train to `config.max_steps` (continuing from out_dir/model when `resume`).

        Returns final metrics: step, loss (last logged mean), best_loss, checkpoint path, eval
        results, and `interrupted` (the signal's name) when stopped by SIGTERM/SIGINT.
        """
        self.dist = Dist.from_env(self.config.device)
        self._lock = RunLock(self.out)
        self._old_handlers: dict[int, Any] = {}
        try:
            self._micro = self.config.validate(self.dist.world_size)
            self._prepare_folder(resume)
            self._setup(resume)
            self._install_signals()
            return self._loop()
        finally:
            for sig, handler in self._old_handlers.items():
                signal.signal(sig, handler)
            self._lock.release()
            self.dist.close()

    # --- setup ----------------------------------------------------------------------------
    def _on_rank0(self, fn: Callable[[], Any]) -> Any:
        """Run fn on rank 0; if it raises, every process raises (no one waits at a barrier forever)."""
        err: BaseException | None = None
        result = None
        if self.dist.is_main:
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001  (re-raised below, after telling the other ranks)
                err = e
        if self.dist.any(err is not None):
            if err is not None:
                raise err
            raise TrainingError("rank 0 failed (see its error message); this process stops too")
        return result

    def _prepare_folder(self, resume: bool) -> None:
        def prepare():
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
            ckpt.recover(self.out)
            model_dir = self.out / ckpt.MODEL_DIR
            if resume and not ckpt.has_checkpoint(self.out):
                raise CheckpointError(f"cannot resume: no checkpoint in {model_dir}; "
                                      "start without --resume")
            if not resume and ckpt.has_checkpoint(self.out):
                raise CheckpointError(
                    f"{self.out} already holds a checkpoint (step {ckpt.checkpoint_step(self.out)}); "
                    "continue it with --resume (Trainer.train(resume=True)) or choose another --out")
            if not resume:
                (self.out / LOG_FILE).unlink(missing_ok=True)  # from a run that died before its first checkpoint
        self._on_rank0(prepare)  # its agreement step doubles as the barrier

    def _setup(self, resume: bool) -> None:
        cfg, dev = self.config, self.dist.device
        if cfg.precision == "fp16" and dev.type != "cuda":
            raise ConfigError("precision fp16 needs CUDA (it uses a GradScaler); on CPU use bf16 or fp32")
        self.device = dev
        self.model.to(dev)
        state = self._restore_weights() if resume else None
        self.wrapped = self.dist.wrap(self.model, cfg.find_unused_parameters)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self._make_optimizer()
        self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup) if cfg.ema_decay > 0 else None
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        self._autocast = (lambda: torch.autocast(dev.type, dtype=amp_dtype)) if amp_dtype else nullcontext
        self.batches_per_epoch = len(self.data) // cfg.batch_size  # the last incomplete batch is dropped
        self._perm_epoch, self._perm = -1, None
        self._pending: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []  # unchecked (step, loss, gnorm)
        self._window: list[list[float]] = []  # checked, not yet logged
        self.best_loss = self.last_loss = None
        self._ckpt_step: int | None = None
        self._eval_copy: nn.Module | None = None
        self._eval_results: dict[str, Any] = {}
        self._stop: int | None = None
        if state is not None:
            self._restore_rest(state)
        else:
            self.step = 0
            seed_everything(cfg.seed)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        cls = cfg.optimizer_class()
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "params"}
        kwargs: dict[str, Any] = {"lr": cfg.lr}
        if "weight_decay" in accepted:
            kwargs["weight_decay"] = cfg.weight_decay
        if "betas" in accepted:
            kwargs["betas"] = tuple(cfg.betas)
        unknown = set(cfg.optimizer_options) - accepted
        if unknown:
            raise ConfigError(f"optimizer {cls.__name__} does not take {sorted(unknown)}; "
                              f"it takes: {', '.join(sorted(accepted))}")
        kwargs.update(cfg.optimizer_options)
        return cls(self.params, **kwargs)

    # --- the loop -------------------------------------------------------------------------
    def _loop(self) -> dict[str, Any]:
        cfg = self.config
        bar = tqdm(total=cfg.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=cfg.quiet or not self.dist.is_main or not sys.stderr.isatty())
        self._t0, self._t0_step = time.perf_counter(), self.step
        evaluating = self.eval_fn is not None or self.eval_data is not None or self.sample_fn is not None
        interrupted = None
        try:
            while self.step < cfg.max_steps:
                self._step()
                bar.update(1)
                s = self.step
                if self._is_log_step(s):
                    self._check()
                    self._log(bar)
                if evaluating and ((cfg.eval_every and s % cfg.eval_every == 0) or s == cfg.max_steps):
                    self._evaluate()
                if self._stop_requested():
                    interrupted = signal.Signals(self._stop).name if self._stop else "signal"
                    break
                if s % cfg.checkpoint_every == 0 and s < cfg.max_steps:
                    self._save()
        finally:
            bar.close()
        if self._ckpt_step != self.step:
            self._save()
        if interrupted and self.dist.is_main:
            print(f"multidiff: stopped by {interrupted} at step {self.step}; checkpoint saved in "
                  f"{self.out / ckpt.MODEL_DIR}. Continue with --resume (Trainer.train(resume=True)).",
                  file=sys.stderr)
        return {"step": self.step, "loss": self.last_loss, "best_loss": self.best_loss,
                "checkpoint": str(self.out / ckpt.MODEL_DIR), "interrupted": interrupted,
                **self._eval_results}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(_mix(self.config.seed, epoch))
            self._perm, self._perm_epoch = torch.randperm(len(self.data), generator=g), epoch
        return self._perm

    def _step(self) -> None:
        """One optimizer step (all micro-steps). No host sync: loss and grad norm stay on device."""
        cfg, s = self.config, self.step
        epoch, pos = divmod(s, self.batches_per_epoch)
        idx = self._permutation(epoch)[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
        lr = cfg.lr_at(s)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        global_micro = cfg.batch_size // cfg.grad_accum
        lo = self.dist.rank * self._micro
        hi = lo + self._micro
        step_loss = None
        for m in range(cfg.grad_accum):
            micro_idx = idx[m * global_micro:(m + 1) * global_micro]
            batch = self.data.index(micro_idx[lo:hi]).to(self.device)
            draws = Draws.seeded(_mix(cfg.seed, s, m), global_micro, lo, hi, self.device)
            with Dist.no_sync(self.wrapped, m < cfg.grad_accum - 1), self._autocast():
                loss = self.wrapped(batch, draws)
            scaled = loss / cfg.grad_accum if cfg.grad_accum > 1 else loss
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            step_loss = scaled.detach() if step_loss is None else step_loss + scaled.detach()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if cfg.grad_clip > 0:
            gnorm = nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        elif self._is_log_step(s + 1):  # without clipping the norm is only needed for the log
            gnorm = nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        else:
            gnorm = None
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model, s)
        self.step = s + 1
        self._pending.append((self.step, step_loss, gnorm))

    # NaN/Inf guard. Reading loss or grad norm every step would force a host sync per step (a
    # GPU pipeline stall), and clip_grad_norm_ does not sync either. So each step only keeps
    # references to its loss (and grad-norm) tensors; `_check` reads them in one transfer at every
    # log step, eval and before every checkpoint, and names the exact step whose loss went bad.
    # The grad norm is computed every step when clipping (which needs it anyway), else only on log
    # steps (it costs a pass over the gradients): an overflow with a finite loss then shows as a
    # NaN loss one step later, and `_save` also checks the weights, so a bad state is never saved.
    def _check(self) -> None:
        if not self._pending:
            return
        steps = [p[0] for p in self._pending]
        norms = [p[2] for p in self._pending if p[2] is not None]
        values = torch.stack([p[1].float() for p in self._pending] + [g.float() for g in norms]).cpu()
        losses, gnorms = values[:len(steps)], values[len(steps):].tolist()
        has_norm = [p[2] is not None for p in self._pending]
        self._pending.clear()
        if self.dist.enabled:  # mean loss over processes (grad norms are equal after all-reduce)
            losses = self.dist.sum_cpu(losses) / self.dist.world_size
        it = iter(gnorms)
        for st, lv, has in zip(steps, losses.tolist(), has_norm):
            gv = next(it) if has else None
            # under fp16 the GradScaler skips steps with inf gradients by design; only the loss counts
            if not math.isfinite(lv) or (self.scaler is None and gv is not None and not math.isfinite(gv)):
                self._fail(st, "loss" if not math.isfinite(lv) else "gradient norm", f"loss={lv}, grad_norm={gv}")
            self._window.append([st, lv, gv])

    def _fail(self, step: int, what: str, values: str) -> None:
        kept = (f"the last good checkpoint (step {ckpt.checkpoint_step(self.out)}) in "
                f"{self.out / ckpt.MODEL_DIR} is intact" if ckpt.has_checkpoint(self.out)
                else "no checkpoint was written yet")
        raise TrainingError(
            f"non-finite {what} at step {step}: {values}. Likely causes: learning rate too high "
            f"(lr={self.config.lr_at(step - 1):g}; lower it or add warmup/grad_clip), fp16 overflow "
            f"(use precision=bf16), or a bad data item (NaN/Inf in the inputs). Training stopped; {kept}.")

    def _is_log_step(self, step: int) -> bool:
        return step % self.config.log_every == 0 or step == self.config.max_steps

    def _log(self, bar) -> None:
        if not self._window:
            return
        step = self._window[-1][0]
        loss = math.fsum(w[1] for w in self._window) / len(self._window)  # mean over the window
        gnorm = self._window[-1][2]  # of the logged step
        now = time.perf_counter()
        rate = (step - self._t0_step) * self.config.batch_size / max(now - self._t0, 1e-9)
        self._t0, self._t0_step = now, step
        self._window.clear()
        self.last_loss = loss
        self.best_loss = loss if self.best_loss is None else min(self.best_loss, loss)
        self._write_log({"step": step, "epoch": (step - 1) // self.batches_per_epoch, "loss": loss,
                         "lr": self.config.lr_at(step - 1), "grad_norm": gnorm,
                         "examples_per_s": rate, "time": time.time()})
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def _write_log(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            with open(self.out / LOG_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    # --- evaluation -----------------------------------------------------------------------
    def model_for_eval(self) -> nn.Module:
        """A copy of the model holding the EMA weights (the live weights without EMA), in eval mode."""
        if self._eval_copy is None:
            self._eval_copy = copy.deepcopy(self.model)
        if self.ema is not None:
            self.ema.copy_to(self._eval_copy)
        else:
            self._eval_copy.load_state_dict(self.model.state_dict())
        return self._eval_copy.eval()

    def _evaluate(self) -> None:
        self._check()
        results: dict[str, Any] = {}
        if self.dist.is_main:
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):  # evaluation never changes training randomness
                model = self.model_for_eval()
                if self.eval_fn is not None:
                    results.update(self.eval_fn(model, self.step) or {})
                elif self.eval_data is not None:
                    results["eval_loss"] = self._eval_loss(model)
                if self.sample_fn is not None:
                    out = self.sample_fn(model, self.step)
                    if isinstance(out, dict):
                        results.update(out)
            results = {k: float(v.detach()) if isinstance(v, torch.Tensor) else v for k, v in results.items()}
            self._eval_results = results
            self._write_log({"step": self.step, "event": "eval", **results, "time": time.time()})
        self.dist.barrier()

    @torch.no_grad()
    def _eval_loss(self, model: nn.Module) -> float:
        """Mean loss over eval_data with fixed draws (comparable across steps)."""
        n, size, total = len(self.eval_data), max(1, self.config.batch_size // self.config.grad_accum), 0.0
        for i, start in enumerate(range(0, n, size)):
            batch = self.eval_data.index(slice(start, start + size)).to(self.device)
            draws = Draws.seeded(_mix(self.config.seed, 1 << 62, i), len(batch), device=self.device)
            with self._autocast():
                total += float(model(batch, draws)) * len(batch)
        return total / n

    # --- signals --------------------------------------------------------------------------
    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        if self._stop is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now, the last checkpoint stays
        self._stop = signum  # checkpoint and stop at the next step boundary

    def _stop_requested(self) -> bool:
        # Under DDP every process must stop at the same step: agree through a tiny CPU all-reduce.
        return self.dist.any(self._stop is not None) if self.dist.enabled else self._stop is not None

    # --- checkpoints ----------------------------------------------------------------------
    def _save(self) -> None:
        self._check()  # never save a state that went non-finite
        if self.config.grad_clip == 0 and self.scaler is None:  # grad norms were not all checked
            if not bool(torch.isfinite(nn.utils.get_total_norm(self.params))):
                self._fail(self.step, "weights", "a gradient overflowed while the loss was finite")
        self._on_rank0(lambda: ckpt.atomic_save(self.out, self._write_checkpoint, step=self.step))
        self._ckpt_step = self.step

    def _write_checkpoint(self, folder: Path) -> None:
        cfg = self.config
        if hasattr(self.model, "save_pretrained"):
            self.model.save_pretrained(folder)
        else:
            save_model(self.model, str(folder / "model.safetensors"))
        if self.ema is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.ema.state_dict().items()},
                      str(folder / ckpt.EMA_FILE))
        ckpt.save_optimizer(self.optimizer, folder / ckpt.OPTIMIZER_FILE)
        epoch, pos = divmod(self.step, self.batches_per_epoch)
        ckpt.write_json(folder / ckpt.STATE_FILE, {
            "format": 1, "step": self.step, "epoch": epoch, "position_in_epoch": pos,
            "batches_per_epoch": self.batches_per_epoch, "world_size": self.dist.world_size,
            "config": dataclasses.asdict(cfg),
            "lr_schedule": {"kind": cfg.lr_schedule, "warmup_steps": cfg.warmup_steps,
                            "max_steps": cfg.max_steps, "last_lr": cfg.lr_at(max(self.step - 1, 0))},
            "ema": None if self.ema is None else {"decay": self.ema.decay, "warmup": self.ema.warmup,
                                                  "updates": self.step},
            "grad_scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": ckpt.rng_state(self.device),
            "log_window": self._window, "best_loss": self.best_loss, "last_loss": self.last_loss,
            "time": time.time()})

    def _restore_weights(self) -> dict[str, Any]:
        folder = self.out / ckpt.MODEL_DIR
        state = ckpt.read_json(folder / ckpt.STATE_FILE)
        try:
            load_model(self.model, str(folder / "model.safetensors"), strict=True, device=str(self.device))
        except Exception as e:  # safetensors raises its own error type on corrupt files
            raise CheckpointError(f"cannot load the weights in {folder}: {e}") from e
        return state

    def _restore_rest(self, state: dict[str, Any]) -> None:
        folder = self.out / ckpt.MODEL_DIR
        old = state.get("config", {})
        changed = sorted(k for k, v in dataclasses.asdict(self.config).items()
                         if k not in _RESUME_FREE and k in old and json.loads(json.dumps(v)) != old[k])
        if changed:
            warnings.warn(f"resuming {self.out} with changed settings {changed}; the continuation will "
                          "differ from the original run", stacklevel=3)
        try:
            self.optimizer.load_state_dict(ckpt.load_optimizer_state(folder / ckpt.OPTIMIZER_FILE))
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"optimizer state in {folder} does not match this optimizer/model: {e}") from e
        if self.ema is not None:
            if not (folder / ckpt.EMA_FILE).is_file():
                raise CheckpointError(f"{folder} has no {ckpt.EMA_FILE} but ema_decay > 0")
            try:
                self.ema.load_state_dict(ckpt.load_tensors(folder / ckpt.EMA_FILE))
            except KeyError as e:
                raise CheckpointError(f"EMA weights in {folder} do not match the model: {e}") from e
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.step = int(state["step"])
        self._window = [list(w) for w in state.get("log_window", [])]
        self.best_loss, self.last_loss = state.get("best_loss"), state.get("last_loss")
        self._ckpt_step = self.step
        self._truncate_log(self.step)
        ckpt.set_rng_state(state["rng"], self.device)

    def _truncate_log(self, step: int) -> None:
        """Drop log records after the checkpoint (the killed run's lost steps)."""
        if not self.dist.is_main:
            return
        path = self.out / LOG_FILE
        if not path.exists():
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except ValueError:
                pass  # a line cut by the kill
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
        os.replace(tmp, path)
        self._write_log({"step": step, "event": "resume", "time": time.time()})
