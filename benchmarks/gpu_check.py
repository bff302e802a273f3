"""GPU paths, checked and timed on one GPU: training steps (fp32, bf16 autocast, fp16 + GradScaler) through the
Trainer, sampling throughput and sampler overhead, peak memory. `benchmarks/gpu.sh` runs this and a one-GPU
DDP run. Prints a table; `--json PATH` writes it.

    python benchmarks/gpu_check.py [--steps 60] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from multidiff.core import process, samplers
from multidiff.core.draws import Draws
from multidiff.modalities.base import Encoded
from multidiff.nn.unet import UNet2D
from multidiff.train.trainer import TrainConfig, Trainer

SHAPE = (1, 64, 128)  # a 64-mel x 128-frame spectrogram


class UNetModel(nn.Module):
    """The Trainer's model contract around the audio U-Net: EDM denoising loss."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = UNet2D(channels=channels, num_classes=10)
        self.D = process.Denoiser(self.net, "edm")

    def forward(self, batch: Encoded, draws: Draws) -> torch.Tensor:
        from multidiff.core import losses
        return losses.denoising_loss(self.D, batch.x0, draws, cond=batch.cond).mean()

    def save_pretrained(self, d: Path) -> None:
        from safetensors.torch import save_file
        Path(d).mkdir(parents=True, exist_ok=True)
        (Path(d) / "config.json").write_text("{}")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                  str(Path(d) / "model.safetensors"))


def train_rate(precision: str, steps: int, batch: int, channels: int) -> dict:
    torch.manual_seed(0)
    # structured data (not Gaussian noise, for which D = c_skip x is already optimal and the EDM loss is 1)
    f = torch.linspace(0, 6.28, SHAPE[2])
    data = Encoded(0.5 * torch.sin(f * torch.randint(1, 6, (batch * 8, 1, SHAPE[1], 1)).float()), cond={"label": torch.randint(0, 10, (batch * 8,))})
    model = UNetModel(channels)
    times = {}
    with tempfile.TemporaryDirectory() as d:
        for n in (5, steps, 2 * steps):  # warm-up, then per step = (t(2N) - t(N)) / N: set-up cancels out
            torch.cuda.reset_peak_memory_stats()
            cfg = TrainConfig(max_steps=n, batch_size=batch, precision=precision, checkpoint_every=10 ** 6,
                              log_every=n, quiet=True, device="cuda", ema_decay=0.999)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            metrics = Trainer(model, data, cfg, Path(d) / f"run{n}").train()
            torch.cuda.synchronize()
            times[n] = time.perf_counter() - t0
    per_step = (times[2 * steps] - times[steps]) / steps
    return {"precision": precision, "batch": batch, "s_per_step": per_step, "examples_per_s": batch / per_step,
            "final_loss": metrics.get("loss"), "peak_mem_GiB": torch.cuda.max_memory_allocated() / 2 ** 30}


def sample_rate(dtype: torch.dtype, batch: int, channels: int, steps: int = 20, repeats: int = 5) -> dict:
    torch.manual_seed(0)
    net = UNet2D(channels=channels, num_classes=10).cuda().eval()
    D0 = process.Denoiser(net, "edm")
    label = torch.randint(0, 10, (batch,), device="cuda")

    def D(x, s, **c):
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            return D0(x, s, label=label).float()

    sig = samplers.karras_sigmas(steps, 0.002, 80.0)
    x = torch.randn(batch, *SHAPE, device="cuda") * 80
    s_const = torch.full((batch,), 1.0, device="cuda")
    ratios, times = [], []
    with torch.no_grad():
        samplers.sample(D, x, sig, "dpmpp_2m")
        for _ in range(repeats):
            torch.cuda.synchronize(); t0 = time.perf_counter()
            samplers.sample(D, x, sig, "dpmpp_2m")
            torch.cuda.synchronize(); t1 = time.perf_counter()
            for _ in range(steps):
                D(x, s_const)
            torch.cuda.synchronize(); t2 = time.perf_counter()
            ratios.append((t1 - t0) / (t2 - t1)); times.append(t1 - t0)
    return {"dtype": str(dtype).replace("torch.", ""), "batch": batch, "nfe": steps,
            "items_per_s": batch / statistics.median(times), "sampler_overhead": statistics.median(ratios)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dev = torch.cuda.get_device_name()
    print(f"device: {dev}; torch {torch.__version__}")
    train = [train_rate(p, a.steps, a.batch, a.channels) for p in ("fp32", "bf16", "fp16")]
    print(f"\n{'precision':9s} {'batch':>5s} {'s/step':>8s} {'ex/s':>8s} {'loss':>8s} {'peak GiB':>8s}")
    for r in train:
        print(f"{r['precision']:9s} {r['batch']:5d} {r['s_per_step']:8.4f} {r['examples_per_s']:8.0f} "
              f"{r['final_loss']:8.4f} {r['peak_mem_GiB']:8.2f}")
    sample = [sample_rate(dt, 256, a.channels) for dt in (torch.float32, torch.bfloat16)]
    print(f"\n{'dtype':9s} {'batch':>5s} {'NFE':>4s} {'items/s':>9s} {'overhead':>8s}")
    for r in sample:
        print(f"{r['dtype']:9s} {r['batch']:5d} {r['nfe']:4d} {r['items_per_s']:9.1f} {r['sampler_overhead']:8.3f}")
    ok = all(r["final_loss"] is not None and r["final_loss"] == r["final_loss"] for r in train)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"device": dev, "torch": torch.__version__, "train": train,
                                            "sample": sample}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
