"""Noise schedules as logSNR(t), t in [0, 1] (t = 0 clean end, t = 1 noisy end).

Every schedule maps to the core's one coordinate system (x = x0 + sigma * eps) through
``sigma_ve(t) = exp(-logsnr(t) / 2)``; the variance-preserving pair is ``alpha(t) = sqrt(sigmoid(l))``,
``sigma(t) = sqrt(sigmoid(-l))`` with ``alpha^2 + sigma^2 = 1``. Functions accept floats or tensors and
return float64 tensors for floats (tensors keep their dtype).

Names: ``linear`` (DDPM betas 1e-4..0.02 over 1000 steps), ``cosine`` (improved DDPM, s = 0.008),
``sqrt`` (Diffusion-LM, s = 1e-4), ``edm`` (Karras rho-grid between sigma_min and sigma_max), and
``from_alphas_cumprod(table)`` for any discrete table.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Number = float | torch.Tensor


def _as_tensor(t: Number) -> torch.Tensor:
    return t if isinstance(t, torch.Tensor) else torch.tensor(t, dtype=torch.float64)


class Schedule:
    """Base class: subclasses define ``logsnr(t)`` and ``t_from_logsnr(l)`` (strictly decreasing in t)."""

    name = "schedule"

    def logsnr(self, t: Number) -> torch.Tensor:
        """log(alpha^2 / sigma^2) at time t in [0, 1] (strictly decreasing)."""
        raise NotImplementedError

    def t_from_logsnr(self, logsnr: Number) -> torch.Tensor:
        """The time t whose logSNR is `logsnr` (inverse of `logsnr`)."""
        raise NotImplementedError

    def alpha(self, t: Number) -> torch.Tensor:
        """VP signal scale sqrt(alpha_bar(t))."""
        return torch.sigmoid(self.logsnr(t)).sqrt()

    def sigma(self, t: Number) -> torch.Tensor:
        """VP noise scale sqrt(1 - alpha_bar(t))."""
        return torch.sigmoid(-self.logsnr(t)).sqrt()

    def sigma_ve(self, t: Number) -> torch.Tensor:
        """The core's sigma: sigma(t) / alpha(t) = exp(-logsnr / 2)."""
        return torch.exp(-0.5 * self.logsnr(t))

    def t_from_sigma(self, sigma_ve: Number) -> torch.Tensor:
        """The time t whose core sigma is `sigma_ve`."""
        return self.t_from_logsnr(-2.0 * torch.log(_as_tensor(sigma_ve)))

    @property
    def sigma_min(self) -> float:
        """Core sigma at t = 0 (least noise)."""
        return float(self.sigma_ve(0.0))

    @property
    def sigma_max(self) -> float:
        """Core sigma at t = 1 (most noise)."""
        return float(self.sigma_ve(1.0))

    def dlogsnr_dt(self, t: torch.Tensor) -> torch.Tensor:
        """d logSNR / dt (negative), by autograd through ``logsnr``."""
        with torch.enable_grad():
            t = t.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(self.logsnr(t).sum(), t)
        return g

    def sigmas(self, n: int) -> torch.Tensor:
        """Sampling grid uniform in t: n values from t = 1 down to t = 0, then a final 0 (n + 1 entries)."""
        if n < 1:
            raise ValueError(f"number of steps must be >= 1, got {n}")
        ts = torch.linspace(1.0, 0.0, n, dtype=torch.float64)
        return torch.cat([self.sigma_ve(ts), ts.new_zeros(1)]).float()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma_min={self.sigma_min:.4g}, sigma_max={self.sigma_max:.4g})"


class _ClippedSchedule(Schedule):
    """A raw logSNR(u), u in [0, 1], restricted to [logsnr_min, logsnr_max] by an affine change of time."""

    def __init__(self, raw: Callable, raw_inv: Callable, logsnr_min: float, logsnr_max: float):
        self._raw, self._raw_inv = raw, raw_inv
        self.u0 = float(raw_inv(_as_tensor(logsnr_max)))
        self.u1 = float(raw_inv(_as_tensor(logsnr_min)))

    def logsnr(self, t: Number) -> torch.Tensor:
        return self._raw(self.u0 + _as_tensor(t) * (self.u1 - self.u0))

    def t_from_logsnr(self, logsnr: Number) -> torch.Tensor:
        return (self._raw_inv(_as_tensor(logsnr)) - self.u0) / (self.u1 - self.u0)


class Linear(_ClippedSchedule):
    """DDPM's linear betas (beta_start..beta_end over `steps`) as a continuous function: the VP-SDE limit
    (Song et al. 2021, beta(u) = 0.1 + 19.9 u for the defaults).

    With u = (k + 1) / steps for the 0-based discrete index k, -log alpha_bar(u) = steps * (b0 u + (b1 - b0) u^2 / 2)
    (the integral of the linear beta ramp), so t = 0 is step 0 and t = 1 the last step of the table. It stays
    within 0.1 of the table's logSNR; `discrete_table()` with `from_alphas_cumprod` gives the table exactly.
    """

    name = "linear"

    def __init__(self, beta_start: float = 1e-4, beta_end: float = 0.02, steps: int = 1000):
        a, b = steps * (beta_end - beta_start) / 2, steps * beta_start
        raw = lambda u: -torch.log(torch.expm1(a * u * u + b * u))
        raw_inv = lambda l: (-b + torch.sqrt(b * b + 4 * a * torch.nn.functional.softplus(-l))) / (2 * a)
        self.beta_start, self.beta_end, self.steps = beta_start, beta_end, steps
        super().__init__(raw, raw_inv, float(raw(torch.tensor(1.0, dtype=torch.float64))),
                         float(raw(torch.tensor(1.0 / steps, dtype=torch.float64))))

    def discrete_table(self) -> torch.Tensor:
        """The DDPM alphas_cumprod table, float64 [steps]."""
        betas = torch.linspace(self.beta_start, self.beta_end, self.steps, dtype=torch.float64)
        return torch.cumprod(1 - betas, 0)


class Cosine(_ClippedSchedule):
    """Improved DDPM: alpha_bar(u) = cos^2((u + s) / (1 + s) * pi / 2) / cos^2(s / (1 + s) * pi / 2)."""

    name = "cosine"

    def __init__(self, s: float = 0.008, logsnr_min: float = -20.0, logsnr_max: float = 20.0):
        c0 = math.cos(s / (1 + s) * math.pi / 2) ** 2

        def raw(u):
            ab = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2 / c0
            return torch.log(ab) - torch.log1p(-ab)

        def raw_inv(l):
            ab = torch.sigmoid(l)
            return torch.acos(torch.sqrt(ab * c0)) * 2 / math.pi * (1 + s) - s

        self.s = s
        super().__init__(raw, raw_inv, logsnr_min, min(logsnr_max, float(_finite_raw(raw, 0.0))))


def _finite_raw(raw: Callable, u: float) -> torch.Tensor:
    """logSNR at u, nudged inside the domain when it is infinite at the end point."""
    val = raw(torch.tensor(u, dtype=torch.float64))
    return val if torch.isfinite(val) else raw(torch.tensor(u + 1e-6, dtype=torch.float64))


class Sqrt(_ClippedSchedule):
    """Diffusion-LM: alpha_bar(u) = 1 - sqrt(u + s)."""

    name = "sqrt"

    def __init__(self, s: float = 1e-4, logsnr_min: float = -20.0):
        raw = lambda u: torch.log1p(-torch.sqrt(u + s)) - 0.5 * torch.log(u + s)
        raw_inv = lambda l: torch.sigmoid(-l) ** 2 - s
        self.s = s
        super().__init__(raw, raw_inv, logsnr_min, float(raw(torch.tensor(0.0, dtype=torch.float64))))


class EDM(Schedule):
    """Karras et al. (2022): sigma(t) = (smin^(1/rho) + t (smax^(1/rho) - smin^(1/rho)))^rho.

    Uniform t gives the Karras rho-grid; training sigmas come from the log-normal sampler in `losses`.
    """

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
        self._smin, self._smax, self.rho = sigma_min, sigma_max, rho
        self._a, self._b = sigma_min ** (1 / rho), sigma_max ** (1 / rho)

    def logsnr(self, t: Number) -> torch.Tensor:
        """-2 log sigma(t) on the rho-ramp."""
        return -2 * self.rho * torch.log(self._a + _as_tensor(t) * (self._b - self._a))

    def t_from_logsnr(self, logsnr: Number) -> torch.Tensor:
        """Inverse of the rho-ramp."""
        return (torch.exp(-_as_tensor(logsnr) / (2 * self.rho)) - self._a) / (self._b - self._a)


class Discrete(Schedule):
    """A discrete alphas_cumprod table [T]; index k sits at t = k / (T - 1), logSNR interpolated linearly in t."""

    name = "discrete"

    def __init__(self, alphas_cumprod: torch.Tensor):
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        if ac.ndim != 1 or len(ac) < 2 or not ((ac > 0) & (ac < 1)).all() or not (ac[1:] < ac[:-1]).all():
            raise ValueError("alphas_cumprod must be a 1-D table strictly decreasing inside (0, 1)")
        self.alphas_cumprod = ac
        self.table = torch.log(ac) - torch.log1p(-ac)  # logSNR per index, decreasing

    def logsnr(self, t: Number) -> torch.Tensor:
        """The table's logSNR, linearly interpolated between indices."""
        t = _as_tensor(t)
        pos = t.double().clamp(0, 1) * (len(self.table) - 1)
        lo = pos.floor().long().clamp(max=len(self.table) - 2)
        w = pos - lo
        out = self.table[lo] * (1 - w) + self.table[lo + 1] * w
        return out.to(t.dtype)

    def t_from_logsnr(self, logsnr: Number) -> torch.Tensor:
        """Inverse of the interpolated table (searchsorted, then linear within the interval)."""
        l = _as_tensor(logsnr)
        rev = self.table.flip(0)  # increasing
        idx = torch.searchsorted(rev, l.double().clamp(rev[0], rev[-1])).clamp(1, len(rev) - 1)
        l0, l1 = rev[idx - 1], rev[idx]
        pos_rev = idx - 1 + (l.double() - l0) / (l1 - l0)
        return ((len(rev) - 1 - pos_rev) / (len(rev) - 1)).to(l.dtype)


def from_alphas_cumprod(table: torch.Tensor) -> Discrete:
    """Wrap any discrete alphas_cumprod table (e.g. 1000 DDPM steps) as a schedule."""
    return Discrete(table)


_SCHEDULES = {"linear": Linear, "cosine": Cosine, "sqrt": Sqrt, "edm": EDM}


def register(name: str, cls: Callable[..., Schedule]) -> None:
    """Make a schedule class available to `get` (e.g. learned or warped schedules)."""
    _SCHEDULES[name] = cls


def get(name: str, **kw) -> Schedule:
    """The schedule called `name`, built with keyword settings `kw`."""
    if name not in _SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid choices: {', '.join(sorted(_SCHEDULES))}")
    return _SCHEDULES[name](**kw)


def names() -> list[str]:
    """Names `get` accepts."""
    return sorted(_SCHEDULES)
