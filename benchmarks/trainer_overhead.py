"""Trainer step time divided by a bare hand-written PyTorch loop, on the CPU.

Both sides train the same MLP denoiser on the same pre-encoded data with the same global batch,
AdamW, per-step `Draws` and per-epoch permutations. Two pairs:

  plain     Trainer(ema_decay=0, grad_clip=0)     vs  loop: forward, backward, step
  ema+clip  Trainer(ema_decay=0.999, grad_clip=1) vs  loop + clip_grad_norm_ + EMA lerp

Runs are interleaved (bare, trainer, bare, trainer, ...) and the median ratio is printed. "steady"
compares the fastest 10-step window of each run after the first (the Trainer's window includes its
NaN check and log write; taking the fastest window filters out other processes on a shared machine);
"end-to-end" is the wall time of the whole run, including the Trainer's setup, lock and final
checkpoint write (fsync).

    python benchmarks/trainer_overhead.py [--repeats 7] [--steps 100] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from multidiff.core.draws import Draws  # noqa: E402
from multidiff.modalities.base import Encoded  # noqa: E402
from multidiff.train import TrainConfig, Trainer  # noqa: E402
from multidiff.train.trainer import _mix  # noqa: E402

DIM, HIDDEN, BATCH, N_ITEMS = 64, 512, 256, 4096


class MLPDenoiser(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(DIM + 1, HIDDEN), nn.SiLU(), nn.Linear(HIDDEN, HIDDEN), nn.SiLU(),
                                 nn.Linear(HIDDEN, DIM))

    def forward(self, batch: Encoded, draws: Draws) -> torch.Tensor:
        sigma = draws.rand(1) * 2
        x = batch.x0 + sigma * draws.randn(DIM)
        return ((self.net(torch.cat([x, sigma], 1)) - batch.x0) ** 2).mean()


def make_model() -> MLPDenoiser:
    torch.manual_seed(0)
    return MLPDenoiser()


def bare_loop(data: Encoded, steps: int, ema_clip: bool, window: int, device: str = "cpu") -> list[float]:
    """A hand-written loop doing the same work as the Trainer's step; seconds of each `window` steps."""
    model = make_model().to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.0)
    params = list(model.parameters())
    shadow = [p.detach().clone() for p in params] if ema_clip else None
    per_epoch = len(data) // BATCH
    perm, perm_epoch = None, -1
    times, t0 = [], time.perf_counter()
    for s in range(steps):
        epoch, pos = divmod(s, per_epoch)
        if epoch != perm_epoch:
            perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(_mix(0, epoch)))
            perm_epoch = epoch
        batch = data.index(perm[pos * BATCH:(pos + 1) * BATCH]).to(device)
        loss = model(batch, Draws.seeded(_mix(0, s, 0), BATCH, device=device))
        loss.backward()
        if ema_clip:
            nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ema_clip:
            with torch.no_grad():
                torch._foreach_lerp_(shadow, [p.detach() for p in params], 1 - min(0.999, (1 + s) / (10 + s)))
        if (s + 1) % window == 0:
            sync()
            now = time.perf_counter()
            times.append(now - t0)
            t0 = now
    return times


def trainer_run(data: Encoded, steps: int, ema_clip: bool, window: int, device: str = "cpu") -> list[float]:
    """Seconds of each `window` steps, from the Trainer's own log (which it writes every window)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(max_steps=steps, batch_size=BATCH, lr=2e-4, log_every=window,
                          checkpoint_every=10 * steps, ema_decay=0.999 if ema_clip else 0.0,
                          grad_clip=1.0 if ema_clip else 0.0, device=device, quiet=True, seed=0)
        Trainer(make_model(), data, cfg, tmp).train()
        logs = [json.loads(l) for l in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    return [window * BATCH / r["examples_per_s"] for r in logs if "examples_per_s" in r]


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--window", type=int, default=10, help="steps per timed window = the Trainer's log_every")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = Encoded(torch.randn(N_ITEMS, DIM, generator=torch.Generator().manual_seed(1))).to(a.device)
    rows = []
    for name, ema_clip in (("plain", False), ("ema+clip", True)):
        bare_loop(data, 3 * a.window, ema_clip, a.window, a.device)  # warm-up
        steady, total, bare_ms = [], [], []
        for _ in range(a.repeats):
            bare, trainer = [], []
            b_wall = timed(lambda: bare.extend(bare_loop(data, a.steps, ema_clip, a.window, a.device)))
            t_wall = timed(lambda: trainer.extend(trainer_run(data, a.steps, ema_clip, a.window, a.device)))
            # fastest window of each run (skipping the first): the least disturbed by other processes
            b_step, t_step = min(bare[1:]) / a.window, min(trainer[1:]) / a.window
            steady.append(t_step / b_step)
            total.append(t_wall / b_wall)
            bare_ms.append(b_step * 1e3)
        rows.append({"case": name, "steady_ratio": statistics.median(steady),
                     "end_to_end_ratio": statistics.median(total), "bare_step_ms": statistics.median(bare_ms),
                     "steady_ratios": steady, "end_to_end_ratios": total})
    print(f"MLP {DIM}-{HIDDEN}-{HIDDEN}-{DIM}, batch {BATCH}, AdamW, {a.steps} steps x {a.repeats} interleaved "
          f"repeats, {a.device}"
          f"{' (1 CPU thread)' if a.device == 'cpu' else ' ' + torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'case':<10} {'bare step ms':>12} {'steady ratio':>13} {'end-to-end ratio':>17}   (target <= 1.05)")
    for r in rows:
        print(f"{r['case']:<10} {r['bare_step_ms']:>12.2f} {r['steady_ratio']:>13.3f} {r['end_to_end_ratio']:>17.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "steps": a.steps, "repeats": a.repeats, "device": a.device,
                                            "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
