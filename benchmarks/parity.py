"""Sampler parity and speed against diffusers' schedulers and k-diffusion's samplers.

For each pair (a multidiff sampler and a peer implementation of the same update) both sides get the same
denoiser, the same sigma grid and the same starting noise; stochastic pairs get the same noise (see NOISE
below). Two measurements:

* accuracy: on the analytic fixtures of tests/analytic.py (Gaussian data [4, 3, 8, 8], and a 2-D Gaussian
  mixture [512, 2], whose exact denoisers are cheap) the max relative difference of the final samples,
  max|ours - peer| / max|peer|, in float32 (target < 1e-5);
* speed: the wall time of the full sampling loop (20 steps) with a small network wrapped as the denoiser
  (the same `process.Denoiser` object on both sides), ours / peer, interleaved repeats, median
  (target <= 1.0).

Peers (exact settings from ../shared/reference/diffusion-core.md section C): diffusers `DDIMScheduler`
(eta 0 and 1, trailing/leading, clip_sample=False, set_alpha_to_one=True), `DDPMScheduler` (clip_sample=False,
fixed_small), `EulerDiscreteScheduler`, `EulerAncestralDiscreteScheduler`, `HeunDiscreteScheduler`,
`DPMSolverMultistepScheduler` (dpmsolver++ and sde-dpmsolver++, midpoint, prediction_type "sample",
final_sigmas_type "zero"), all with the scaled-linear SD betas and prediction_type "sample", our sampler run
on the scheduler's own VE sigmas (sigma = sqrt((1 - abar) / abar) at its timesteps, then 0); k-diffusion's
`sample_euler`, `sample_heun` (also with churn), `sample_euler_ancestral`, `sample_dpmpp_2m`,
`sample_dpmpp_2m_sde` on `karras_sigmas(n, 0.002, 80)`. k-diffusion is loaded through a shim that executes only
`k_diffusion/sampling.py` (its package `__init__` imports clip, clean-fid, torchvision); install it with
`pip install --no-deps k-diffusion`.

NOISE: our samplers draw `torch.randn(x.shape, generator=g)` once per stochastic step. diffusers' step()
draws the same call from the `generator=` argument (one extra, unused draw at its last step), so both sides get
generators seeded alike. k-diffusion's ancestral/SDE samplers get `noise_sampler=lambda s, s_next:
torch.randn(shape, generator=g)`; its churn samplers draw `torch.randn_like(x)` from the global RNG every
step, so we seed the global RNG with the same seed (with churn on every step the streams coincide).
Timing note: diffusers loops also call `scale_model_input` (as its pipelines do) and, for the VP schedulers,
convert x_vp to the VE input of the denoiser with one multiply; per-step sigma tensors for the peers are
precomputed outside the timed region; k-diffusion runs with `disable=True` (no progress bar).

    python benchmarks/parity.py [--repeats 7] [--steps 20] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from multidiff.core import process, samplers

ROOT = Path(__file__).resolve().parents[1]
Closure = Callable[[], torch.Tensor]


# --------------------------------------------------------------------------------------------- peers
def load_analytic():
    spec = importlib.util.spec_from_file_location("_md_analytic", ROOT / "tests" / "analytic.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_diffusers():
    """diffusers, or None when it is not installed (it is in the `bench` extra)."""
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return None
    return diffusers


def load_k_sampling():
    """k_diffusion.sampling without the k_diffusion package __init__ (clip, clean-fid, torchvision...).

    Executes k_diffusion/sampling.py as module `_kd_shim.sampling` with a stub `utils` (it only needs
    append_dims) and, when they are missing, stub `torchdiffeq`/`torchsde` (used only by samplers not
    benchmarked here). Returns None when k-diffusion is not installed."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "sampling.py"
    pkg = types.ModuleType("_kd_shim")
    pkg.__path__ = []
    utils = types.ModuleType("_kd_shim.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    pkg.utils = utils
    stubs = {"_kd_shim": pkg, "_kd_shim.utils": utils}
    for name in ("torchdiffeq", "torchsde"):
        if importlib.util.find_spec(name) is None:
            stub = types.ModuleType(name)
            stub.odeint = stub.BrownianTree = None
            stubs[name] = stub
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        mspec = importlib.util.spec_from_file_location("_kd_shim.sampling", path)
        mod = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(mod)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return mod


def k_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("k-diffusion")
    except Exception:  # noqa: BLE001
        return None


SD_BETAS = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def _batch(values, B: int) -> list[torch.Tensor]:
    return [torch.full((B,), float(v)) for v in values]


def _vp_grid(sch, z: torch.Tensor):
    """A VP scheduler's timesteps as our VE grid: (grid ending in 0, 1/sqrt(abar) per step, sigma batches,
    starting noise z / sqrt(abar_0))."""
    abar = sch.alphas_cumprod[sch.timesteps].double()
    sig = ((1 - abar) / abar).sqrt()
    grid = torch.cat([sig, torch.zeros(1, dtype=torch.float64)]).float()
    up, sb = (1 / abar.sqrt()).tolist(), _batch(sig.tolist(), z.shape[0])
    return grid, up, sb, z * float(up[0])


# Each builder: (D, z, steps, seed) -> (ours, peer), two closures returning the final sample in VE coordinates
# from the same standard-normal z. The peer's per-step constants are computed here, outside the timed closure.
def df_ddim(spacing: str, eta: float):
    def build(D, z, n, seed):
        from diffusers import DDIMScheduler
        sch = DDIMScheduler(**SD_BETAS, clip_sample=False, set_alpha_to_one=True, timestep_spacing=spacing,
                            prediction_type="sample")
        sch.set_timesteps(n)
        grid, up, sb, start = _vp_grid(sch, z)
        g1, g2 = torch.Generator(), torch.Generator()

        def ours():
            g1.manual_seed(seed)
            return samplers.sample(D, start, grid, "ddim", eta=eta, generator=g1)

        def peer():
            g2.manual_seed(seed)
            sch.set_timesteps(n)
            x = z
            for i, t in enumerate(sch.timesteps):
                x0 = D(x * up[i], sb[i])
                x = sch.step(x0, t, x, eta=eta, generator=g2).prev_sample
            return x
        return ours, peer
    return build


def df_ddpm(D, z, n, seed):
    from diffusers import DDPMScheduler
    sch = DDPMScheduler(**SD_BETAS, clip_sample=False, prediction_type="sample", variance_type="fixed_small")
    sch.set_timesteps(n)
    grid, up, sb, start = _vp_grid(sch, z)
    g1, g2 = torch.Generator(), torch.Generator()

    def ours():
        g1.manual_seed(seed)
        return samplers.sample(D, start, grid, "ddpm", generator=g1)

    def peer():
        g2.manual_seed(seed)
        sch.set_timesteps(n)
        x = z
        for i, t in enumerate(sch.timesteps):
            x = sch.step(D(x * up[i], sb[i]), t, x, generator=g2).prev_sample
        return x
    return ours, peer


def df_ve(cls_name: str, method: str, prediction: str = "sample"):
    """diffusers VE schedulers (Euler, Euler ancestral, Heun): the model sees x directly. With
    prediction "epsilon" (EulerAncestralDiscreteScheduler has no "sample" mode) the output is (x - D) / sigma."""
    def build(D, z, n, seed):
        import diffusers
        sch = getattr(diffusers, cls_name)(**SD_BETAS, prediction_type=prediction, timestep_spacing="trailing")
        sch.set_timesteps(n)
        s = sch.sigmas
        grid = torch.cat([s[:1], s[1:-1:2], s[-1:]]) if method == "heun" else s
        sb = _batch(s[:-1].tolist(), z.shape[0])
        inv = [1 / v for v in s[:-1].tolist()]
        start = z * sch.init_noise_sigma
        g1, g2 = torch.Generator(), torch.Generator()
        gen = {} if method == "heun" else {"generator": g2}

        def ours():
            g1.manual_seed(seed)
            return samplers.sample(D, start, grid, method, generator=g1)

        def peer():
            g2.manual_seed(seed)
            sch.set_timesteps(n)
            x = start
            for i, t in enumerate(sch.timesteps):
                sch.scale_model_input(x, t)
                out = D(x, sb[i]) if prediction == "sample" else (x - D(x, sb[i])) * inv[i]
                x = sch.step(out, t, x, **gen).prev_sample
            return x
        return ours, peer
    return build


def df_dpm(algorithm: str, method: str):
    def build(D, z, n, seed):
        from diffusers import DPMSolverMultistepScheduler
        sch = DPMSolverMultistepScheduler(**SD_BETAS, algorithm_type=algorithm, solver_order=2,
                                          solver_type="midpoint", prediction_type="sample",
                                          final_sigmas_type="zero", lower_order_final=True,
                                          timestep_spacing="trailing")
        sch.set_timesteps(n)
        s = sch.sigmas.double()
        up, sb = (1 + s[:-1] ** 2).sqrt().tolist(), _batch(s[:-1].tolist(), z.shape[0])
        start = z * float(up[0])
        grid = sch.sigmas.float()
        g1, g2 = torch.Generator(), torch.Generator()

        def ours():
            g1.manual_seed(seed)
            return samplers.sample(D, start, grid, method, generator=g1)

        def peer():
            g2.manual_seed(seed)
            sch.set_timesteps(n)
            x = z
            for i, t in enumerate(sch.timesteps):
                x = sch.step(D(x * up[i], sb[i]), t, x, generator=g2).prev_sample
            return x
        return ours, peer
    return build


def kd(fn_name: str, method: str, noise: str | None = None, **kw):
    """k-diffusion sampler `fn_name` vs our `method` on karras_sigmas(n, 0.002, 80)."""
    def build(D, z, n, seed):
        K = KD
        grid = samplers.karras_sigmas(n, 0.002, 80.0)
        start = z * 80.0
        fn = getattr(K, fn_name)
        g1, g2 = torch.Generator(), torch.Generator()
        extra = {}
        if noise == "sampler":
            extra["noise_sampler"] = lambda s, s_next: torch.randn(z.shape, generator=g2)

        def ours():
            g1.manual_seed(seed)
            return samplers.sample(D, start, grid, method, generator=g1, **kw)

        def peer():
            g2.manual_seed(seed)
            if noise == "global":
                torch.manual_seed(seed)
            return fn(D, start, grid, disable=True, **kw, **extra)
        return ours, peer
    return build


KD = None  # the k_diffusion.sampling module, set in main()

# name -> (peer library, builder, stochastic?)
PAIRS: dict[str, tuple[str, Callable, bool]] = {
    "DDIMScheduler trailing, eta 0 / ddim": ("diffusers", df_ddim("trailing", 0.0), False),
    "DDIMScheduler leading, eta 0 / ddim": ("diffusers", df_ddim("leading", 0.0), False),
    "DDIMScheduler trailing, eta 1 / ddim": ("diffusers", df_ddim("trailing", 1.0), True),
    "DDPMScheduler leading / ddpm": ("diffusers", df_ddpm, True),
    "EulerDiscreteScheduler / euler": ("diffusers", df_ve("EulerDiscreteScheduler", "euler"), False),
    "EulerAncestralDiscreteScheduler (eps) / euler_ancestral":
        ("diffusers", df_ve("EulerAncestralDiscreteScheduler", "euler_ancestral", "epsilon"), True),
    "HeunDiscreteScheduler / heun": ("diffusers", df_ve("HeunDiscreteScheduler", "heun"), False),
    "DPMSolverMultistep dpmsolver++ / dpmpp_2m": ("diffusers", df_dpm("dpmsolver++", "dpmpp_2m"), False),
    "DPMSolverMultistep sde-dpmsolver++ / dpmpp_2m_sde":
        ("diffusers", df_dpm("sde-dpmsolver++", "dpmpp_2m_sde"), True),
    "sample_euler / euler": ("k-diffusion", kd("sample_euler", "euler"), False),
    "sample_euler s_churn=1 / euler": ("k-diffusion", kd("sample_euler", "euler", "global", s_churn=1.0), True),
    "sample_heun / heun": ("k-diffusion", kd("sample_heun", "heun"), False),
    "sample_heun s_churn=1 / heun": ("k-diffusion", kd("sample_heun", "heun", "global", s_churn=1.0), True),
    "sample_euler_ancestral / euler_ancestral":
        ("k-diffusion", kd("sample_euler_ancestral", "euler_ancestral", "sampler"), True),
    "sample_dpmpp_2m / dpmpp_2m": ("k-diffusion", kd("sample_dpmpp_2m", "dpmpp_2m"), False),
    "sample_dpmpp_2m_sde / dpmpp_2m_sde":
        ("k-diffusion", kd("sample_dpmpp_2m_sde", "dpmpp_2m_sde", "sampler"), True),
}


# --------------------------------------------------------------------------------------------- fixtures
def fixtures():
    A = load_analytic()
    gauss = A.Gaussian(0.3, 0.5)
    mix = A.Mixture([0.2, 0.3, 0.5], [[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]], [0.3, 0.5, 0.4])
    g = torch.Generator().manual_seed(1)
    return {"gaussian [4,3,8,8]": (gauss.denoiser, torch.randn(4, 3, 8, 8, generator=g)),
            "mixture [512,2]": (mix.denoiser, torch.randn(512, 2, generator=g))}


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def accuracy(name: str, steps: int, fixture: str | None = None, seed: int = 0) -> dict[str, tuple[float, float]]:
    """(rel diff ours vs peer, float32 floor) of the final samples of pair `name` on each analytic fixture.

    The floor is the peer against itself when the input of every denoiser call is moved by one float32 ulp
    (x (1 +- 2^-23), the larger of the two): how much rounding alone moves the answer on this problem. The
    mixture's denoiser is steep between modes at small sigma, so rounding differences grow there."""
    out = {}
    for fx, (D, z) in fixtures().items():
        if fixture is not None and fx != fixture:
            continue
        ours, peer = PAIRS[name][1](D, z, steps, seed)
        bumped = [PAIRS[name][1](lambda x, s, f=f, **k: D(x * f, s, **k), z, steps, seed)[1]
                  for f in (1 + 2 ** -23, 1 - 2 ** -23)]
        with torch.no_grad():
            a, b = ours(), peer()
            c = [p() for p in bumped]
        ok = all(bool(torch.isfinite(t).all()) for t in (a, b, *c))
        out[fx] = (rel_diff(a, b), max(rel_diff(t, b) for t in c)) if ok else (math.inf, math.inf)
    return out


# --------------------------------------------------------------------------------------------- timing
class MLP(nn.Module):
    def __init__(self, d=64, h=256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d + 1, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, d))

    def forward(self, x, c_noise):
        return self.net(torch.cat([x, c_noise[:, None]], 1))


class Conv(nn.Module):
    def __init__(self, c=32):
        super().__init__()
        self.inp, self.mid = nn.Conv2d(1, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.out = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x, c_noise):
        h = torch.nn.functional.silu(self.inp(x) + c_noise[:, None, None, None])
        return self.out(torch.nn.functional.silu(self.mid(h)))


def nets():
    torch.manual_seed(0)
    return {"mlp B=256 d=64 h=256": (process.Denoiser(MLP().eval(), "edm"), (256, 64)),
            "conv B=8 1x32x32 c=16": (process.Denoiser(Conv(16).eval(), "edm"), (8, 1, 32, 32))}


def _time(fn: Closure, inner: int) -> float:
    t = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t) / inner


def speed(name: str, D, shape, steps: int, repeats: int, min_s: float = 0.05) -> dict[str, float]:
    """Median ratio ours / peer of full sampling loops, and each side's overhead beyond the network: its time
    minus that of the same number of bare denoiser calls (timed in the same interleaved round)."""
    z = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    ours, peer = PAIRS[name][1](D, z, steps, 0)
    method = name.rsplit("/ ", 1)[1]
    n_calls = samplers.nfe(method, steps)
    xb, sb = z * 10.0, torch.full((shape[0],), 10.0)

    def bare():
        for _ in range(n_calls):
            D(xb, sb)
    with torch.no_grad():
        ours(), peer(), bare()  # warm-up
        inner = max(1, math.ceil(min_s / max(_time(peer, 1), 1e-6)))
        ratios, t = [], {"ours": [], "peer": [], "bare": []}
        fns = {"ours": ours, "peer": peer, "bare": bare}
        for r in range(repeats):  # interleaved, order rotating
            order = list(fns)[r % 3:] + list(fns)[:r % 3]
            got = {k: _time(fns[k], inner) for k in order}
            ratios.append(got["ours"] / got["peer"])
            for k in got:
                t[k].append(got[k])
    ms = lambda v: 1e3 * statistics.median(v)
    return {"ratio": statistics.median(ratios), "best_ratio": min(t["ours"]) / min(t["peer"]), "ours_ms": ms(t["ours"]), "peer_ms": ms(t["peer"]),
            "bare_ms": ms(t["bare"]), "nfe": n_calls,
            "ours_overhead_ms": ms([o - b for o, b in zip(t["ours"], t["bare"])]),
            "peer_overhead_ms": ms([p - b for p, b in zip(t["peer"], t["bare"])]),
            "ratios": [round(x, 4) for x in ratios]}


# --------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    global KD
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20, help="steps of the timed loops")
    ap.add_argument("--acc-steps", type=int, nargs="+", default=[10, 50], help="steps of the accuracy runs")
    ap.add_argument("--only", default="", help="run only the pairs whose name contains this string")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--json", help="write the tables as JSON to this path")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    df = load_diffusers()
    KD = load_k_sampling()
    available = {"diffusers": df is not None, "k-diffusion": KD is not None}
    for lib, ok in available.items():
        if not ok:
            hint = ('pip install -e ".[bench]"' if lib == "diffusers" else "pip install --no-deps k-diffusion")
            print(f"{lib} is not installed: its pairs are skipped ({hint})")
    names = [n for n, (lib, _, _) in PAIRS.items() if available[lib] and a.only in n]
    versions = {"torch": torch.__version__, "diffusers": getattr(df, "__version__", None),
                "k-diffusion": k_version() if KD is not None else None}
    print(f"torch {versions['torch']}, diffusers {versions['diffusers']}, k-diffusion {versions['k-diffusion']}, "
          f"float32, 1 CPU thread, {platform.machine()}")

    rows = []
    print("\nAccuracy: max|ours - peer| / max|peer| of the final samples (target < 1e-5); in brackets the float32\n"
          "floor: the peer against itself with the input of every denoiser call moved by one ulp")
    fx_names = list(fixtures())
    head = "".join(f" {f + ' n=' + str(n):>26s}" for n in a.acc_steps for f in fx_names)
    print(f"{'peer / multidiff':52s}{head}")
    for name in names:
        row = {"pair": name, "peer": PAIRS[name][0], "stochastic": PAIRS[name][2], "rel_diff": {}, "floor": {}}
        for n in a.acc_steps:
            for fx, (v, f) in accuracy(name, n).items():
                row["rel_diff"][f"{fx} n={n}"] = v
                row["floor"][f"{fx} n={n}"] = f
        row["max_rel_diff"] = max(row["rel_diff"].values())
        rows.append(row)
        print(f"{name:52s}" + "".join(f"    {v:9.2e} [{row['floor'][k]:8.1e}]" for k, v in row["rel_diff"].items()),
              flush=True)
    for fx in fx_names:
        vals = [v for r in rows for k, v in r["rel_diff"].items() if k.startswith(fx)]
        floors = [v for r in rows for k, v in r["floor"].items() if k.startswith(fx)]
        if vals:
            print(f"{fx}: worst relative difference {max(vals):.2e} "
                  f"({'< 1e-5' if max(vals) < 1e-5 else 'ABOVE 1e-5'}); worst float32 floor {max(floors):.2e}")

    if not a.no_speed:
        print(f"\nSpeed: wall time of a full {a.steps}-step sampling loop, multidiff / peer "
              f"(median of {a.repeats} interleaved repeats; target <= 1.0)")
        net_table = nets()
        print("(median ratio; best-of ratio min(ours)/min(peer), less sensitive to other processes; in brackets the\n"
              " overhead beyond the network's own time, ours / peer, ms per loop: time minus bare denoiser calls)")
        print(f"{'peer / multidiff':52s}" + "".join(f" {n:>37s}" for n in net_table))
        for row in rows:
            row["speed"] = {}
            cells = []
            for net_name, (D, shape) in net_table.items():
                s = speed(row["pair"], D, shape, a.steps, a.repeats)
                row["speed"][net_name] = s
                cells.append(f" {s['ratio']:6.3f} {s['best_ratio']:6.3f} ({s['ours_overhead_ms']:6.1f} /"
                             f"{s['peer_overhead_ms']:6.1f})")
            print(f"{row['pair']:52s}" + "".join(f"{c:>38s}" for c in cells), flush=True)
        ratios = [s["ratio"] for r in rows for s in r["speed"].values()]
        if ratios:
            best = [s["best_ratio"] for r in rows for s in r["speed"].values()]
            print(f"worst median ratio: {max(ratios):.3f}; median of all: {statistics.median(ratios):.3f}; "
                  f"worst best-of ratio: {max(best):.3f}")
            for net_name in net_table:
                print(f"  {net_name}: bare network time per loop (median over pairs) "
                      f"{statistics.median(r['speed'][net_name]['bare_ms'] for r in rows):.1f} ms")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"benchmark": "parity", "versions": versions, "steps": a.steps,
                                            "acc_steps": a.acc_steps, "repeats": a.repeats, "rows": rows},
                                           indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
