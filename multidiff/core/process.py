"""Forward process and parameterizations, all in the core's coordinates x = x0 + sigma * eps.

A network of any parameterization becomes a denoiser D(x, sigma) -> x0_hat through the EDM form

    D(x, sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x, c_noise(sigma))

Parameterizations (F predicts ...):
  eps:  noise.          c_skip = 1,                  c_out = -sigma
  x0:   clean data.     c_skip = 0,                  c_out = 1
  v:    v = alpha*eps - s*x0 (VP, Salimans & Ho).   c_skip = 1/(sigma^2+1), c_out = -sigma/sqrt(sigma^2+1)
  edm:  EDM's F.        c_skip = sd^2/(sigma^2+sd^2), c_out = sigma*sd/sqrt(sigma^2+sd^2)
Input scaling c_in: "vp" 1/sqrt(1+sigma^2) (the VP sample), "edm" 1/sqrt(sigma^2+sd^2), "none" 1.
Default for each: eps/x0/v -> "vp", edm -> "edm". c_noise = log(sigma) / 4 (= -logSNR / 8) for all.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

PARAMETERIZATIONS = ("eps", "x0", "v", "edm")
INPUT_SCALINGS = ("vp", "edm", "none")


def add_noise(x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Forward process: x = x0 + sigma * noise, sigma [B] broadcast over the remaining dims."""
    return x0 + _bcast(sigma, x0) * noise


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def coefficients(sigma: torch.Tensor, parameterization: str, sigma_data: float = 0.5,
                 input_scaling: str | None = None) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise), each shaped like `sigma` [B]."""
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {parameterization!r}; valid: {', '.join(PARAMETERIZATIONS)}")
    scaling = input_scaling or ("edm" if parameterization == "edm" else "vp")
    if scaling not in INPUT_SCALINGS:
        raise ValueError(f"unknown input scaling {scaling!r}; valid: {', '.join(INPUT_SCALINGS)}")
    s2, sd2 = sigma * sigma, sigma_data * sigma_data
    one = torch.ones_like(sigma)
    if parameterization == "eps":
        c_skip, c_out = one, -sigma
    elif parameterization == "x0":
        c_skip, c_out = torch.zeros_like(sigma), one
    elif parameterization == "v":
        c_skip, c_out = 1 / (s2 + 1), -sigma / (s2 + 1).sqrt()
    else:
        c_skip, c_out = sd2 / (s2 + sd2), sigma * sigma_data / (s2 + sd2).sqrt()
    c_in = {"vp": lambda: (1 + s2).rsqrt(), "edm": lambda: (s2 + sd2).rsqrt(), "none": lambda: one}[scaling]()
    return c_skip, c_out, c_in, sigma.log() / 4


class Denoiser(nn.Module):
    """Wraps a network F(x_in, c_noise, **cond) of any parameterization as D(x, sigma, **cond) -> x0_hat.

    Args:
        net: module called as net(c_in * x, c_noise [B], **cond) returning a tensor shaped like x.
        parameterization: "eps" | "x0" | "v" | "edm".
        sigma_data: data standard deviation used by the "edm" formulas.
        input_scaling: "vp" | "edm" | "none" (default depends on the parameterization; see module doc).
    """

    def __init__(self, net: nn.Module, parameterization: str = "edm", sigma_data: float = 0.5,
                 input_scaling: str | None = None):
        super().__init__()
        coefficients(torch.ones(1), parameterization, sigma_data, input_scaling)  # validate early
        self.net, self.parameterization = net, parameterization
        self.sigma_data, self.input_scaling = sigma_data, input_scaling

    def _coef(self, sigma: torch.Tensor, like: torch.Tensor) -> list[torch.Tensor]:
        c = coefficients(sigma.to(torch.float32), self.parameterization, self.sigma_data, self.input_scaling)
        return [_bcast(v, like).to(like.dtype) for v in c[:3]] + [c[3]]

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **cond: Any) -> torch.Tensor:
        c_skip, c_out, c_in, c_noise = self._coef(sigma, x)
        return c_skip * x + c_out * self.net(c_in * x, c_noise, **cond).to(x.dtype)

    def loss(self, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, weight: torch.Tensor,
             mask: torch.Tensor | None = None, **cond: Any) -> torch.Tensor:
        """Per-example weighted denoising loss [B]: weight(sigma) * mean ||D(x) - x0||^2 over (masked) dims.

        Computed in the network's own output space, ``c_out^2 ||F - F_target||^2``, which equals the x0 error
        exactly but does not lose precision when c_out is small. `weight` [B] is in x0-MSE units (see `losses`).
        """
        x = add_noise(x0, sigma, noise)
        c_skip, c_out, c_in, c_noise = self._coef(sigma, x)
        out = self.net(c_in * x, c_noise, **cond).float()
        target = (x0 - c_skip * x) / c_out
        err = ((out - target.float()) * c_out.float()) ** 2
        return weight * masked_mean(err, mask)


def masked_mean(err: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `err` [B, ...] over all but the first dim, counting only where `mask` (broadcastable) is set."""
    if mask is None:
        return err.flatten(1).mean(1)
    m = mask.to(err.dtype).expand_as(err)
    return (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)


def wrap(fn: Callable[..., torch.Tensor], parameterization: str, sigma_data: float = 0.5,
         input_scaling: str | None = "none") -> Callable[..., torch.Tensor]:
    """Turn a plain function F(x_in, c_noise, **cond) into a denoiser without making it a module."""
    return Denoiser(_FnModule(fn), parameterization, sigma_data, input_scaling)


class _FnModule(nn.Module):
    def __init__(self, fn: Callable[..., torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any, **kw: Any) -> torch.Tensor:
        return self.fn(*args, **kw)
