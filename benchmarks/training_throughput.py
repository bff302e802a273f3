"""Training throughput: multidiff's Trainer vs a diffusers-style hand-written PyTorch loop, same U-Net and batch.

Both sides train `multidiff.nn.unet.UNet2D(channels=16)` (default levels, attention at the lowest level) as
an EDM denoiser on the same 256 random "mels" [1, 32, 64] with batch 16, AdamW (lr 1e-4), fp32, on the CPU
with one thread:

  trainer   Trainer(model, Encoded(x0), TrainConfig(ema_decay=0, grad_clip=0, ...)).train(), the model's
            forward being `losses.denoising_loss(process.Denoiser(unet, "edm"), x0, draws).mean()`
  loop      what a diffusers training script does, written out: shuffle, sigma = exp(-1.2 + 1.2 n),
            x = x0 + sigma * noise, EDM preconditioning and weighting, loss.backward(), opt.step(),
            opt.zero_grad(set_to_none=True)

Runs are interleaved (loop, trainer, loop, ...); throughput is examples/s over windows of `--window` steps
after the first window (the Trainer's from its own log), the median window of each run, then the median
over runs. "end-to-end" divides whole-run wall times (Trainer setup, run lock and final checkpoint included).
Peak memory: each side runs once more in its own subprocess, and reports the peak resident set size
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) and its RSS just before training (imports, model, data built).

    python benchmarks/training_throughput.py [--repeats 5] [--steps 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from multidiff.core import losses, process
from multidiff.core.draws import Draws
from multidiff.modalities.base import Encoded
from multidiff.nn.unet import UNet2D
from multidiff.train import TrainConfig, Trainer

BATCH, N_ITEMS, SHAPE, LR, SIGMA_DATA = 16, 256, (1, 32, 64), 1e-4, 0.5


def make_unet() -> UNet2D:
    torch.manual_seed(0)
    return UNet2D(in_channels=1, out_channels=1, channels=16)


class EDMModel(nn.Module):
    """The Trainer's model contract: model(batch, draws) -> scalar loss."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.denoiser = process.Denoiser(unet, "edm", sigma_data=SIGMA_DATA)

    def forward(self, batch: Encoded, draws: Draws) -> torch.Tensor:
        return losses.denoising_loss(self.denoiser, batch.x0, draws, weighting="edm",
                                     time_sampler="lognormal", sigma_data=SIGMA_DATA).mean()


def data() -> torch.Tensor:
    return 0.5 * torch.randn(N_ITEMS, *SHAPE, generator=torch.Generator().manual_seed(1))


def hand_loop(x0_all: torch.Tensor, steps: int, window: int) -> list[float]:
    """A diffusers-style training loop with EDM preconditioning; seconds of each `window` steps."""
    unet = make_unet()
    opt = torch.optim.AdamW(unet.parameters(), lr=LR, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    per_epoch = N_ITEMS // BATCH
    sd2 = SIGMA_DATA ** 2
    times, t0 = [], time.perf_counter()
    for s in range(steps):
        if s % per_epoch == 0:
            perm = torch.randperm(N_ITEMS, generator=g)
        x0 = x0_all[perm[(s % per_epoch) * BATCH:(s % per_epoch + 1) * BATCH]]
        sigma = (-1.2 + 1.2 * torch.randn(BATCH, generator=g)).exp()
        noise = torch.randn(x0.shape, generator=g)
        sig = sigma[:, None, None, None]
        x = x0 + sig * noise
        c_skip = sd2 / (sig ** 2 + sd2)
        c_out = sig * SIGMA_DATA / (sig ** 2 + sd2).sqrt()
        c_in = 1 / (sig ** 2 + sd2).sqrt()
        pred = c_skip * x + c_out * unet(c_in * x, sigma.log() / 4)
        weight = (sig ** 2 + sd2) / (sig * SIGMA_DATA) ** 2
        loss = (weight * (pred - x0) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (s + 1) % window == 0:
            now = time.perf_counter()
            times.append(now - t0)
            t0 = now
    return times


def trainer_run(x0_all: torch.Tensor, steps: int, window: int) -> list[float]:
    """Seconds of each `window` steps, from the Trainer's own log."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(max_steps=steps, batch_size=BATCH, lr=LR, log_every=window, checkpoint_every=10 * steps,
                          ema_decay=0.0, grad_clip=0.0, device="cpu", quiet=True, seed=0)
        Trainer(EDMModel(make_unet()), Encoded(x0_all), cfg, tmp).train()
        logs = [json.loads(line) for line in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    return [window * BATCH / r["examples_per_s"] for r in logs if "examples_per_s" in r]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(side: str, steps: int, window: int) -> None:
    torch.set_num_threads(1)
    x0_all = data()
    make_unet()  # the model is built inside each run; build one here too so the base includes its weights
    base = rss_mb()
    (hand_loop if side == "loop" else trainer_run)(x0_all, steps, window)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"side": side, "rss_before_mb": base, "peak_rss_mb": peak}))


def memory(steps: int, window: int) -> dict[str, dict[str, float]]:
    out = {}
    for side in ("loop", "trainer"):
        res = subprocess.run([sys.executable, __file__, "--child", side, "--steps", str(steps), "--window",
                              str(window)], capture_output=True, text=True, check=True)
        out[side] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--json", help="write the table as JSON to this path")
    ap.add_argument("--child", choices=("loop", "trainer"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a.child, a.steps, a.window)
        return 0
    torch.set_num_threads(1)
    x0_all = data()
    n_params = sum(p.numel() for p in make_unet().parameters())
    hand_loop(x0_all, a.window, a.window)  # warm-up
    runs = []
    for r in range(a.repeats):
        rec = {}
        for side in (("loop", "trainer") if r % 2 == 0 else ("trainer", "loop")):
            t = time.perf_counter()
            windows = (hand_loop if side == "loop" else trainer_run)(x0_all, a.steps, a.window)
            rec[side + "_wall"] = time.perf_counter() - t
            rec[side + "_eps"] = a.window * BATCH / statistics.median(windows[1:])
        rec["ratio"] = rec["trainer_eps"] / rec["loop_eps"]
        rec["end_to_end_ratio"] = rec["loop_wall"] / rec["trainer_wall"]
        runs.append(rec)
        print(f"  repeat {r}: loop {rec['loop_eps']:.1f} ex/s, trainer {rec['trainer_eps']:.1f} ex/s, "
              f"ratio {rec['ratio']:.3f}", flush=True)
    med = lambda k: statistics.median(x[k] for x in runs)
    mem = memory(a.steps, a.window)
    result = {"loop_examples_per_s": med("loop_eps"), "trainer_examples_per_s": med("trainer_eps"),
              "ratio": med("ratio"), "end_to_end_ratio": med("end_to_end_ratio"), "memory": mem}
    print(f"\nUNet2D(channels=16) {n_params / 1e6:.2f}M params, batch {BATCH} x {list(SHAPE)}, AdamW, fp32, "
          f"{a.steps} steps x {a.repeats} interleaved repeats, 1 CPU thread, torch {torch.__version__}")
    print(f"{'side':10s} {'examples/s':>11s} {'RSS before MB':>14s} {'peak RSS MB':>12s} {'peak - before':>14s}")
    for side in ("loop", "trainer"):
        m = mem[side]
        print(f"{side:10s} {result[side + '_examples_per_s']:11.1f} {m['rss_before_mb']:14.0f} "
              f"{m['peak_rss_mb']:12.0f} {m['peak_rss_mb'] - m['rss_before_mb']:14.0f}")
    print(f"throughput ratio trainer / loop (steady): {result['ratio']:.3f}; "
          f"end-to-end (incl. setup and final checkpoint): {result['end_to_end_ratio']:.3f}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"benchmark": "training_throughput", "torch": torch.__version__,
                                            "batch": BATCH, "shape": list(SHAPE), "params": n_params,
                                            "steps": a.steps, "repeats": a.repeats, "runs": runs, **result},
                                           indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
