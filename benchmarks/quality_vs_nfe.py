"""Quality vs NFE on the analytic 2-D Gaussian mixture (exact denoiser, so every error is the sampler's own).

Data: the mixture of tests/analytic.py with weights (0.2, 0.3, 0.5), means (-2, 0), (2, 1), (0, -2) and stds
0.3, 0.5, 0.4. Starting points x_T = x0 + 80 eps with x0 drawn from the mixture (the exact marginal at
sigma_max = 80), 10,000 of them, float32; grid `karras_sigmas(steps, 0.002, 80)`. Samplers euler, heun,
dpmpp_2m, dpmpp_2m_sde, ddpm at 5, 10, 20, 50, 200 NFE (heun: steps = (NFE + 1) // 2, so 2 steps - 1 NFE).

Metrics:
  endpoint   deterministic samplers only: max, 99th percentile and RMS over the 10k points of |x - x_ref|,
             x_ref the exact PF-ODE solution from the same x_T down to sigma = 0, computed by a 2000-step float64
             Heun on karras_sigmas(2000, 1e-4, 80) (its own error, estimated against 1000 steps, is printed).
             The max is set by the few points that start on the boundary between two modes, where the
             flow map is steep (a tiny error sends the point to the other mode): read the RMS and p99 too;
  SW2        sliced 2-Wasserstein distance (256 fixed directions) to 10k independent exact mixture draws, the
             same for every sampler (unpaired, so deterministic and stochastic samplers are compared alike);
             the floor is SW2 of the exact reference endpoints to the same draws (10k-sample MC noise);
  mode       mode-weight error max_k |mean_i r_k(x_i) - w_k|, r_k the exact posterior component
             probabilities at sigma = 0 (E[r_k] = w_k for exact samples); its floor is the reference's value.

    python benchmarks/quality_vs_nfe.py [--n 10000] [--json PATH] [--png PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import torch

from multidiff.core import samplers

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("euler", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddpm")
DETERMINISTIC = ("euler", "heun", "dpmpp_2m")
BUDGETS = (5, 10, 20, 50, 200)
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def load_mixture():
    spec = importlib.util.spec_from_file_location("_md_analytic", ROOT / "tests" / "analytic.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Mixture([0.2, 0.3, 0.5], [[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]], [0.3, 0.5, 0.4])


def steps_for(method: str, budget: int) -> int:
    return (budget + 1) // 2 if method == "heun" else budget


def sliced_w2(a: torch.Tensor, b: torch.Tensor, dirs: torch.Tensor) -> float:
    pa, pb = (a.double() @ dirs.T).sort(0).values, (b.double() @ dirs.T).sort(0).values
    return float(((pa - pb) ** 2).mean().sqrt())


def mode_error(mix, x: torch.Tensor) -> float:
    r = mix._resp(x, torch.zeros(x.shape[0]))[0].mean(0)
    return float((r - mix.w).abs().max())


def reference(mix, x_T: torch.Tensor, steps: int) -> torch.Tensor:
    return samplers.sample(mix.denoiser, x_T.double(), samplers.karras_sigmas(steps, 1e-4, SIGMA_MAX).double(),
                           "heun")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="number of samples")
    ap.add_argument("--ref-steps", type=int, default=2000)
    ap.add_argument("--json", help="write the table as JSON to this path")
    ap.add_argument("--png", help="write the plot to this path")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    mix = load_mixture()
    g = torch.Generator().manual_seed(0)
    x0, _ = mix.sample(a.n, generator=g)
    x_T = x0 + SIGMA_MAX * torch.randn(x0.shape, generator=g)
    exact_other, _ = mix.sample(a.n, generator=g)  # independent exact draws (the floor of SW2)
    dirs = torch.randn(256, 2, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)

    t0 = time.perf_counter()
    ref = reference(mix, x_T, a.ref_steps)
    half = reference(mix, x_T, a.ref_steps // 2)
    ref_err = float((half - ref).norm(dim=1).max())
    ref_rms = float((half - ref).norm(dim=1).pow(2).mean().sqrt())
    ref = ref.float()
    print(f"reference: {a.ref_steps}-step float64 Heun ({time.perf_counter() - t0:.1f} s); max |ref_{a.ref_steps // 2}"
          f" - ref_{a.ref_steps}| = {ref_err:.1e}, rms {ref_rms:.1e} (the reference's error is below these)")
    more = [mix.sample(a.n, generator=g)[0] for _ in range(5)]  # SW2 of exact samples fluctuates: 6 values
    sw_exact = sorted([sliced_w2(ref, exact_other, dirs)] + [sliced_w2(m, exact_other, dirs) for m in more])
    floors = {"sw2": sw_exact[len(sw_exact) // 2], "sw2_range": [sw_exact[0], sw_exact[-1]],
              "mode": mode_error(mix, ref), "mode_exact_draws": mode_error(mix, exact_other)}
    print(f"floors (MC noise of {a.n} samples): SW2 of exact samples {floors['sw2']:.4f} (median of 6 sets, range "
          f"{sw_exact[0]:.4f}..{sw_exact[-1]:.4f}); mode-weight error of the reference "
          f"{floors['mode']:.4f} (of independent exact draws {floors['mode_exact_draws']:.4f})")

    rows = []
    print(f"\n{'method':14s} {'NFE':>4s} {'steps':>5s} {'max|x-ref|':>11s} {'p99':>9s} {'rms':>9s} {'SW2':>8s} {'mode err':>9s}")
    for method in METHODS:
        for budget in BUDGETS:
            steps = steps_for(method, budget)
            gen = torch.Generator().manual_seed(1)
            x = samplers.sample(mix.denoiser, x_T, samplers.karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX), method,
                                generator=gen)
            row = {"method": method, "nfe": samplers.nfe(method, steps), "budget": budget, "steps": steps,
                   "sw2": sliced_w2(x, exact_other, dirs), "mode_err": mode_error(mix, x)}
            if method in DETERMINISTIC:
                err = (x - ref).norm(dim=1)
                row["max_err"], row["rms_err"] = float(err.max()), float(err.pow(2).mean().sqrt())
                row["p99_err"] = float(err.quantile(0.99))
            rows.append(row)
            e = (f"{row['max_err']:11.2e} {row['p99_err']:9.2e} {row['rms_err']:9.2e}" if "max_err" in row
                 else f"{'-':>11s} {'-':>9s} {'-':>9s}")
            print(f"{method:14s} {row['nfe']:4d} {steps:5d} {e} {row['sw2']:8.4f} {row['mode_err']:9.4f}", flush=True)

    print("\nbest per budget (lowest SW2; deterministic: lowest RMS endpoint error)")
    best = {}
    for budget in BUDGETS:
        at = [r for r in rows if r["budget"] == budget]
        b_sw = min(at, key=lambda r: r["sw2"])
        b_ep = min((r for r in at if "max_err" in r), key=lambda r: r["rms_err"])
        best[budget] = {"sw2": b_sw["method"], "endpoint": b_ep["method"]}
        print(f"  NFE {budget:3d}: SW2 {b_sw['method']} ({b_sw['sw2']:.4f}; floor {floors['sw2']:.4f}), "
              f"endpoint {b_ep['method']} (rms {b_ep['rms_err']:.1e})")

    if a.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
        for method in METHODS:
            rs = [r for r in rows if r["method"] == method]
            nfe = [r["nfe"] for r in rs]
            if method in DETERMINISTIC:
                line, = ax[0].loglog(nfe, [r["rms_err"] for r in rs], "o-", label=f"{method} rms")
                ax[0].loglog(nfe, [r["max_err"] for r in rs], "x:", color=line.get_color(), label=f"{method} max")
            ax[1].loglog(nfe, [r["sw2"] for r in rs], "o-", label=method)
            ax[2].loglog(nfe, [max(r["mode_err"], 1e-5) for r in rs], "o-", label=method)
        ax[1].axhline(floors["sw2"], color="k", ls=":", label=f"floor ({a.n} samples)")
        ax[2].axhline(floors["mode"], color="k", ls=":", label="floor (reference)")
        titles = ("endpoint error vs exact PF-ODE", "sliced W2 to exact samples", "mode-weight error")
        for axis, title in zip(ax, titles):
            axis.set_title(title)
            axis.set_xlabel("NFE")
            axis.grid(True, which="both", alpha=0.3)
            axis.legend(fontsize=8)
        fig.suptitle("multidiff samplers on the analytic 2-D Gaussian mixture (karras grid 0.002..80, float32)")
        fig.tight_layout()
        Path(a.png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.png, dpi=110)
        print(f"plot: {a.png}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"benchmark": "quality_vs_nfe", "torch": torch.__version__, "n": a.n,
                                            "ref_steps": a.ref_steps, "ref_err": ref_err, "ref_rms": ref_rms, "floors": floors,
                                            "rows": rows, "best": best}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
