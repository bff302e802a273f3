"""A tiny denoiser and a command line around the Trainer, shared by the training tests.

Run as a script (in a subprocess or under torchrun) it trains the toy model; options allow a
per-step delay and hanging inside a checkpoint write, so tests can kill it at chosen moments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402

from multidiff.core.draws import Draws  # noqa: E402
from multidiff.modalities.base import Encoded  # noqa: E402
from multidiff.train import TrainConfig, Trainer  # noqa: E402

DIM = 4


class _InfGrad(torch.autograd.Function):
    """Identity whose gradient is infinite: an overflow the loss does not show."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")


class ToyDenoiser(nn.Module):
    """x = x0 + sigma * eps with eps, sigma from `draws`; predicts x0; MSE loss.

    dropout exercises torch's global RNG; `nan_at` makes the loss NaN from that forward call on
    (1-based); `delay` sleeps in every forward (to give tests time to kill the process).
    """

    def __init__(self, dim: int = DIM, hidden: int = 16, dropout: float = 0.0, nan_at: int = 0,
                 delay: float = 0.0, noise: bool = True, inf_grad_at: int = 0):
        super().__init__()
        self.config = {"dim": dim, "hidden": hidden, "dropout": dropout}
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim))
        self.register_buffer("scale", torch.ones(dim))  # a float buffer: EMA tracks it too
        self.nan_at, self.delay, self.noise, self.calls = nan_at, delay, noise, 0
        self.inf_grad_at = inf_grad_at

    def forward(self, batch: Encoded, draws: Draws) -> torch.Tensor:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        x0 = batch.x0
        if self.noise:
            sigma = draws.rand(1) * 2
            x = x0 + sigma * draws.randn(x0.shape[1])
        else:  # deterministic loss (for tests comparing different micro-batch splits)
            sigma = torch.full((x0.shape[0], 1), 0.5, device=x0.device)
            x = x0 + sigma
        pred = self.net(torch.cat([x, sigma], dim=1)) * self.scale
        if self.inf_grad_at and self.calls == self.inf_grad_at:
            pred = _InfGrad.apply(pred)
        loss = ((pred - x0) ** 2).mean()
        if self.nan_at and self.calls >= self.nan_at:
            loss = loss * float("nan")
        return loss

    def save_pretrained(self, folder: Path) -> None:
        folder = Path(folder)
        (folder / "config.json").write_text(json.dumps(self.config))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))


def make_data(n: int = 64, dim: int = DIM, seed: int = 123) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[2.0] * dim, [-2.0] * dim])
    x0 = centers[torch.randint(0, 2, (n,), generator=g)] + 0.3 * torch.randn(n, dim, generator=g)
    return Encoded(x0)


def make_model(seed: int = 0, **kw) -> ToyDenoiser:
    torch.manual_seed(seed)
    return ToyDenoiser(**kw)


def config(**kw) -> TrainConfig:
    base = dict(max_steps=24, batch_size=8, lr=1e-2, checkpoint_every=4, log_every=4, ema_decay=0.9,
                device="cpu", quiet=True, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def _hang(marker: Path) -> None:
    marker.write_text("here")
    time.sleep(120)


def _instrument(phase: str, at_checkpoint: int, marker: Path) -> None:
    """Make the `at_checkpoint`-th checkpoint write hang in `phase` (files, swap, cleanup)."""
    import multidiff.train.checkpoint as ckpt
    import multidiff.train.trainer as trainer

    count = {"ema": 0, "model": 0}
    real_save, real_replace = trainer.save_file, os.replace

    def save_file_hook(tensors, path, *a, **k):
        real_save(tensors, path, *a, **k)
        if Path(path).name == "ema.safetensors":
            count["ema"] += 1
            if phase == "files" and count["ema"] == at_checkpoint:
                _hang(marker)

    def replace_hook(src, dst, *a, **k):
        real_replace(src, dst, *a, **k)
        name = Path(dst).name
        if name == "model.old" and phase == "swap" and count["ema"] == at_checkpoint:
            _hang(marker)
        if name == "model" and Path(src).name.startswith("model.tmp-"):
            count["model"] += 1
            if phase == "cleanup" and count["model"] == at_checkpoint:
                _hang(marker)

    trainer.save_file = save_file_hook
    ckpt.os.replace = replace_hook


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--hang-phase", default="")
    p.add_argument("--hang-at", type=int, default=2)
    p.add_argument("--params-out", default="")
    p.add_argument("--config", default="{}", help="JSON of TrainConfig overrides")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.hang_phase:
        _instrument(a.hang_phase, a.hang_at, Path(a.out + ".hanging"))
    model = make_model(dropout=a.dropout, delay=a.delay)
    result = Trainer(model, make_data(), config(**json.loads(a.config)), a.out).train(resume=a.resume)
    if a.params_out and int(os.environ.get("RANK", "0")) == 0:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, a.params_out)
        Path(a.params_out + ".json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
