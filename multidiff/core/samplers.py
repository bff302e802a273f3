"""Samplers: pure functions ``sample_<name>(denoiser, x, sigmas, ...) -> x0`` over a decreasing sigma grid ending in 0.

`x` is the starting noise already scaled by ``sigmas[0]``; `denoiser(x, sigma[B], **cond) -> x0_hat`.
Per-step coefficients are computed once per grid as Python floats, so the loop has no host syncs.

Hooks shared by all samplers (keyword arguments):
  callback(step, x, x0_hat, sigma)  called after each main denoiser evaluation (sigma a float);
  project(x0_hat) -> x0_hat         e.g. clamping text embeddings to the nearest token;
  known=(values, mask)              positions where mask is True are given: x0_hat is replaced by `values`
                                    there, and x follows the forward process values + sigma * z (z fixed);
  cond                              dict of conditioning passed to the denoiser.
Guidance and self-conditioning are denoiser wrappers (`cfg`, `gradient_guidance`, `SelfConditioning`).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

Denoiser = Callable[..., torch.Tensor]


# --------------------------------------------------------------------------------------------- grids
def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """EDM's rho-grid: n sigmas from sigma_max to sigma_min, then 0 (n + 1 entries, float32)."""
    _check_range(n, sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return torch.cat([(a + ramp * (b - a)) ** rho, torch.zeros(1, dtype=torch.float64)]).float()


def exponential_sigmas(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """n sigmas uniform in log sigma from sigma_max to sigma_min, then 0 (n + 1 entries, float32)."""
    _check_range(n, sigma_min, sigma_max)
    s = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp()
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)]).float()


def _check_range(n: int, sigma_min: float, sigma_max: float) -> None:
    if n < 1:
        raise ValueError(f"number of steps must be >= 1, got {n}")
    if not (0 < sigma_min < sigma_max < math.inf):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")


# --------------------------------------------------------------------------------------------- plumbing
class _Run:
    """What every sampler shares: validated grid as floats, sigma tensors, the wrapped denoiser, noise."""

    def __init__(self, denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, generator, callback,
                 project, known, cond, extra_sigmas: list[float] | None = None):
        self.s = _check_grid(sigmas)
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or Inf; pass finite starting noise scaled by sigmas[0]")
        self.denoiser, self.generator, self.callback, self.project = denoiser, generator, callback, project
        self.cond = cond or {}
        self.B, self.shape, self.device, self.dtype = x.shape[0], x.shape, x.device, x.dtype
        self.table = {v: torch.full((self.B,), v, dtype=torch.float32, device=x.device)
                      for v in self.s + (extra_sigmas or [])}
        self.known = None
        if known is not None:
            values, mask = known
            self.known = (values.to(x), mask.to(x.device, torch.bool).expand(x.shape), self.noise())

    def noise(self) -> torch.Tensor:
        if self.generator is None:
            return torch.randn(self.shape, device=self.device, dtype=self.dtype)
        n = torch.randn(self.shape, generator=self.generator, device=self.generator.device, dtype=self.dtype)
        return n.to(self.device)

    def denoise(self, x: torch.Tensor, sigma: float, step: int | None = None) -> torch.Tensor:
        x0 = self.denoiser(x, self.table[sigma], **self.cond)
        if self.known is not None:
            x0 = torch.where(self.known[1], self.known[0], x0)
        if self.project is not None:
            x0 = self.project(x0)
        if self.callback is not None and step is not None:
            self.callback(step, x, x0, sigma)
        return x0

    def churn(self, x: torch.Tensor, sigma: float, sigma_hat: float, s_noise: float) -> torch.Tensor:
        """EDM's stochastic churn: raise the noise level of x from sigma to sigma_hat (no-op when equal)."""
        if sigma_hat <= sigma:
            return x
        return x + self.noise() * (s_noise * math.sqrt(sigma_hat ** 2 - sigma ** 2))

    def renoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """Put the known positions on their forward-process path at `sigma`."""
        if self.known is None:
            return x
        values, mask, z = self.known
        return torch.where(mask, values + sigma * z, x)

    def steps(self):
        return range(len(self.s) - 1)


def _check_grid(sigmas: torch.Tensor) -> list[float]:
    s = torch.as_tensor(sigmas).detach().double().cpu()
    if s.ndim != 1 or len(s) < 2:
        raise ValueError(f"sigmas must be a 1-D grid with at least 2 entries, got shape {tuple(s.shape)}")
    if not torch.isfinite(s).all():
        raise ValueError("sigmas contain NaN or Inf; build the grid with karras_sigmas/exponential_sigmas")
    if s[-1] != 0:
        raise ValueError(f"the sigma grid must end with exactly 0, got {float(s[-1])}; append a 0")
    if not (s[1:] < s[:-1]).all():
        raise ValueError("sigmas must be strictly decreasing (largest noise first)")
    return s.tolist()


def _ancestral(s: float, s_next: float, eta: float) -> tuple[float, float]:
    """(sigma_down, sigma_up) of an ancestral step from s to s_next with noise fraction eta."""
    if s_next == 0:
        return 0.0, 0.0
    up = min(s_next, eta * math.sqrt(s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2))
    return math.sqrt(s_next ** 2 - up ** 2), up


def _churn(s: list[float], s_churn: float, s_tmin: float, s_tmax: float) -> list[float]:
    n = len(s) - 1
    gamma = min(s_churn / n, math.sqrt(2) - 1)
    return [si * (1 + gamma) if (s_churn > 0 and s_tmin <= si <= s_tmax) else si for si in s[:-1]]


# --------------------------------------------------------------------------------------------- samplers
@torch.no_grad()
def sample_euler(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, generator=None, callback=None,
                 project=None, known=None, cond=None, s_churn: float = 0.0, s_tmin: float = 0.0,
                 s_tmax: float = math.inf, s_noise: float = 1.0) -> torch.Tensor:
    """Euler on the probability-flow ODE (= DDIM with eta 0); EDM churn when s_churn > 0. N NFE."""
    s_hat = _churn(_check_grid(sigmas), s_churn, s_tmin, s_tmax)
    r = _Run(denoiser, x, sigmas, generator, callback, project, known, cond, extra_sigmas=s_hat)
    s = r.s
    x = r.renoise(x, s[0])
    for i in r.steps():
        x = r.churn(x, s[i], s_hat[i], s_noise)
        x0 = r.denoise(x, s_hat[i], i)
        x = r.renoise(torch.lerp(x0, x, s[i + 1] / s_hat[i]), s[i + 1])
    return x


@torch.no_grad()
def sample_euler_ancestral(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, generator=None,
                           callback=None, project=None, known=None, cond=None, eta: float = 1.0,
                           s_noise: float = 1.0) -> torch.Tensor:
    """Ancestral Euler: deterministic step to sigma_down, then fresh noise of size sigma_up. N NFE."""
    r = _Run(denoiser, x, sigmas, generator, callback, project, known, cond)
    s = r.s
    coef = [_ancestral(s[i], s[i + 1], eta) for i in r.steps()]
    x = r.renoise(x, s[0])
    for i in r.steps():
        down, up = coef[i]
        x0 = r.denoise(x, s[i], i)
        x = torch.lerp(x0, x, down / s[i])
        if up > 0:
            x.add_(r.noise(), alpha=s_noise * up)  # in place on lerp's fresh output
        x = r.renoise(x, s[i + 1])
    return x


def sample_ddim(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, eta: float = 0.0,
                **kw: Any) -> torch.Tensor:
    """DDIM (Song et al. 2021). In these coordinates DDIM(eta) is exactly the ancestral step with the same eta:
    its noise std c_t / sqrt(alpha_bar_prev) equals sigma_up; eta = 0 is Euler, eta = 1 is DDPM's posterior."""
    return sample_euler_ancestral(denoiser, x, sigmas, eta=eta, **kw)


def sample_ddpm(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, **kw: Any) -> torch.Tensor:
    """DDPM ancestral sampling with the exact Gaussian posterior q(x_next | x, x0_hat) on the grid:
    mean x0 + (s_next/s)^2 (x - x0), std s_next sqrt(1 - (s_next/s)^2). That is the ancestral step with
    eta = 1 (sigma_down = s_next^2 / s, sigma_up = s_next sqrt(1 - (s_next/s)^2)), so it runs as one. N NFE."""
    return sample_euler_ancestral(denoiser, x, sigmas, eta=1.0, **kw)


@torch.no_grad()
def sample_heun(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, generator=None, callback=None,
                project=None, known=None, cond=None, s_churn: float = 0.0, s_tmin: float = 0.0,
                s_tmax: float = math.inf, s_noise: float = 1.0) -> torch.Tensor:
    """EDM's 2nd-order Heun (Karras et al. 2022, Alg. 1/2); the last step to 0 is Euler. 2N - 1 NFE."""
    s_hat = _churn(_check_grid(sigmas), s_churn, s_tmin, s_tmax)
    r = _Run(denoiser, x, sigmas, generator, callback, project, known, cond, extra_sigmas=s_hat)
    s = r.s
    x = r.renoise(x, s[0])
    for i in r.steps():
        x = r.churn(x, s[i], s_hat[i], s_noise)
        x0 = r.denoise(x, s_hat[i], i)
        d = (x - x0) / s_hat[i]
        dt = s[i + 1] - s_hat[i]
        if s[i + 1] == 0:
            x = x + d * dt
        else:
            x_pred = x + d * dt
            d2 = (x_pred - r.denoise(x_pred, s[i + 1])) / s[i + 1]
            x = x + (d + d2) * (dt / 2)
        x = r.renoise(x, s[i + 1])
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, generator=None, callback=None,
                    project=None, known=None, cond=None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022), multistep data prediction in lambda = -log sigma. N NFE.
    First step and the step to sigma = 0 are first order."""
    r = _Run(denoiser, x, sigmas, generator, callback, project, known, cond)
    s = r.s
    n = len(s) - 1
    x = r.renoise(x, s[0])
    x0_prev = None
    for i in range(n):
        x0 = r.denoise(x, s[i], i)
        a = s[i + 1] / s[i]  # = exp(-h)
        if x0_prev is None or s[i + 1] == 0:
            x = torch.lerp(x0, x, a)
        else:
            r_i = math.log(s[i - 1] / s[i]) / math.log(s[i] / s[i + 1])  # h_last / h
            x0_eff = torch.lerp(x0, x0_prev, -1 / (2 * r_i))  # (1 + 1/2r) x0 - x0_prev / 2r
            x = torch.lerp(x0_eff, x, a)
        x = r.renoise(x, s[i + 1])
        x0_prev = x0
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, generator=None,
                        callback=None, project=None, known=None, cond=None, eta: float = 1.0,
                        s_noise: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(2M) SDE (midpoint), k-diffusion's update with i.i.d. Gaussian noise from `generator`
    (reproducible per seed and independent of batch composition). N NFE."""
    r = _Run(denoiser, x, sigmas, generator, callback, project, known, cond)
    s = r.s
    x = r.renoise(x, s[0])
    x0_prev, h_last = None, None
    for i in r.steps():
        x0 = r.denoise(x, s[i], i)
        if s[i + 1] == 0:
            x = x0
        else:
            h = math.log(s[i] / s[i + 1])
            eta_h = eta * h
            c_x = s[i + 1] / s[i] * math.exp(-eta_h)
            c_d = -math.expm1(-h - eta_h)
            x = torch.add(x0 * c_d, x, alpha=c_x)  # fresh tensor: the corrections below go in place
            if x0_prev is not None:
                k = 0.5 * c_d * h / h_last
                x.add_(x0, alpha=k).sub_(x0_prev, alpha=k)
            if eta > 0:
                x.add_(r.noise(), alpha=s[i + 1] * math.sqrt(-math.expm1(-2 * eta_h)) * s_noise)
            h_last = h
        x = r.renoise(x, s[i + 1])
        x0_prev = x0
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "ddim": sample_ddim,
    "ddpm": sample_ddpm,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
}


def nfe(method: str, steps: int) -> int:
    """Denoiser evaluations used by `method` on a grid of `steps` steps (steps + 1 sigmas)."""
    _method(method)
    return 2 * steps - 1 if method == "heun" else steps


def _method(method: str) -> Callable[..., torch.Tensor]:
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; valid choices: {', '.join(SAMPLERS)}")
    return SAMPLERS[method]


def sample(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, method: str = "dpmpp_2m", *,
           generator: torch.Generator | None = None, callback: Callable | None = None, **options: Any
           ) -> torch.Tensor:
    """Run sampler `method` from noise `x` [B, ...] (already scaled by sigmas[0]) down the grid `sigmas` [N + 1].

    Returns x0 [B, ...]. Options: project, known, cond, and the method's own (eta, s_churn, ...)."""
    out = _method(method)(denoiser, x, sigmas, generator=generator, callback=callback, **options)
    if not torch.isfinite(out).all():  # one check per run, after the loop: no per-step host syncs
        raise ValueError(
            f"sampling with {method!r} produced NaN or Inf. Likely causes: a diverged network (check the "
            f"training loss and use EMA weights), half precision overflow (sample in float32 or bf16), or "
            f"sigmas beyond the range the model was trained on. Pass callback=... to find the first bad step.")
    return out


# --------------------------------------------------------------------------------------------- wrappers
def cfg(denoiser: Denoiser, scale: float, null_cond: dict[str, Any]) -> Denoiser:
    """Classifier-free guidance: D_uncond + scale * (D_cond - D_uncond), one batched call.

    `null_cond` maps each conditioning key to its "no condition" value (e.g. {"label": num_classes}).
    scale = 1 is the conditional model, 0 the unconditional one (diffusers' convention)."""

    def guided(x: torch.Tensor, sigma: torch.Tensor, **cond: Any) -> torch.Tensor:
        if scale == 1.0:
            return denoiser(x, sigma, **cond)
        both = {}
        for k, v in cond.items():
            if k in null_cond and isinstance(v, torch.Tensor):
                both[k] = torch.cat([v, torch.full_like(v, null_cond[k])])
            elif isinstance(v, torch.Tensor) and v.shape[:1] == x.shape[:1]:
                both[k] = torch.cat([v, v])
            else:
                both[k] = v
        out = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **both)
        c, u = out.chunk(2)
        return torch.lerp(u, c, scale)

    return guided


def gradient_guidance(denoiser: Denoiser, grad_log_p: Callable[..., torch.Tensor], scale: float = 1.0
                      ) -> Denoiser:
    """Add scale * grad_x log p(c | x) to the score. Since score = (D - x) / sigma^2, that shifts D by
    scale * sigma^2 * grad. `grad_log_p(x, sigma, x0_hat) -> [B, ...]`."""

    def guided(x: torch.Tensor, sigma: torch.Tensor, **cond: Any) -> torch.Tensor:
        x0 = denoiser(x, sigma, **cond)
        with torch.enable_grad():
            g = grad_log_p(x, sigma, x0)
        return x0 + scale * sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2 * g

    return guided


class SelfConditioning:
    """Feeds the previous x0_hat to the denoiser as `self_cond` (zeros at the first call of a run).

    A new run is detected when sigma rises above the last one seen; call `reset()` to force one."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser
        self.reset()

    def reset(self) -> None:
        """Forget the previous estimate: the next call starts a new run."""
        self.prev, self.last_sigma = None, math.inf

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **cond: Any) -> torch.Tensor:
        s = float(sigma.reshape(-1)[0])  # one host read per call: self-conditioning is opt-in
        if s > self.last_sigma or self.prev is None or self.prev.shape != x.shape:
            self.prev = torch.zeros_like(x)
        out = self.denoiser(x, sigma, self_cond=self.prev, **cond)
        self.prev, self.last_sigma = out, s
        return out
