"""Sampler overhead: time of samplers.sample(...) / time of the same number of bare denoiser calls.

For each method at 10 and 50 steps, on a small MLP and a small conv denoiser (CPU), the two are timed
interleaved, `--repeats` times, and the median ratio is printed. Target <= 1.05.

    python benchmarks/sampler_overhead.py [--repeats 7] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from multidiff.core import process, samplers


class MLP(nn.Module):
    def __init__(self, d=64, h=256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d + 1, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, d))

    def forward(self, x, c_noise):
        return self.net(torch.cat([x, c_noise[:, None].expand(-1, 1)], 1))


class Conv(nn.Module):
    def __init__(self, c=32):
        super().__init__()
        self.inp, self.mid, self.out = nn.Conv2d(1, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x, c_noise):
        h = torch.nn.functional.silu(self.inp(x) + c_noise[:, None, None, None])
        return self.out(torch.nn.functional.silu(self.mid(h)))


def bare(D, x, sig, n):
    s = torch.full((x.shape[0],), float(sig[0]))
    for _ in range(n):
        D(x, s)


def measure(D, shape, method, steps, repeats):
    sig = samplers.karras_sigmas(steps, 0.002, 80.0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 80.0
    n = samplers.nfe(method, steps)
    ratios = []
    with torch.no_grad():
        samplers.sample(D, x, sig, method, generator=g)  # warm-up
        bare(D, x, sig, n)
        for _ in range(repeats):
            t0 = time.perf_counter()
            samplers.sample(D, x, sig, method, generator=g)
            t1 = time.perf_counter()
            bare(D, x, sig, n)
            t2 = time.perf_counter()
            ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(ratios)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", help="write the table as JSON to this path")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    nets = {"mlp (B=256, d=64, h=256)": (process.Denoiser(MLP().eval(), "edm"), (256, 64)),
            "conv (B=16, 1x32x32, c=32)": (process.Denoiser(Conv().eval(), "edm"), (16, 1, 32, 32))}
    rows = []
    print(f"{'net':28s} {'method':16s} {'steps':>5s} {'ratio':>7s}")
    for net_name, (D, shape) in nets.items():
        for method in samplers.SAMPLERS:
            for steps in (10, 50):
                r = measure(D, shape, method, steps, a.repeats)
                rows.append({"net": net_name, "method": method, "steps": steps, "ratio": round(r, 4)})
                print(f"{net_name:28s} {method:16s} {steps:5d} {r:7.3f}", flush=True)
    worst = max(r["ratio"] for r in rows)
    print(f"median ratio over all rows: {statistics.median(r['ratio'] for r in rows):.3f}; worst row: {worst:.3f}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"benchmark": "sampler_overhead", "torch": torch.__version__,
                                            "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
