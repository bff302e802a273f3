"""Likelihoods in nats per example: the probability-flow ODE (exact up to solver and trace estimation) and the
continuous-time variational bound (VDM), plus conversions to bits.

Both are written against a denoiser D(x, sigma[B], **cond) -> x0_hat only.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .draws import Draws

LN2 = math.log(2.0)


def bits_per_dim(nats: torch.Tensor, dims: int | torch.Tensor) -> torch.Tensor:
    """Convert nats per example to bits per dimension (or per token: pass the token count)."""
    return nats / (dims * LN2)


def gaussian_logpdf(x: torch.Tensor, mean: torch.Tensor | float, std: torch.Tensor | float,
                    reduce: bool = True) -> torch.Tensor:
    """log N(x; mean, std^2 I) summed over all but the first dim, [B] (per dimension, x's shape, with
    reduce=False)."""
    var = torch.as_tensor(std, dtype=x.dtype, device=x.device) ** 2
    lp = -0.5 * ((x - mean) ** 2 / var + torch.log(2 * math.pi * var))
    return lp.flatten(1).sum(1) if reduce else lp


def ode_nll(denoiser: Callable[..., torch.Tensor], x0: torch.Tensor, *, sigma_min: float, sigma_max: float,
            exact_trace: bool = False, generator: torch.Generator | None = None, steps: int = 32,
            cond: dict | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood [B] (nats per example) of x0 under the model's marginal at sigma_min.

    Integrates the probability-flow ODE dx/dlog(sigma) = x - D(x, sigma) from sigma_min to sigma_max together
    with the divergence of its right-hand side (instantaneous change of variables), and scores the end point
    under the prior N(0, sigma_max^2). The solver is classical RK4 with `steps` fixed steps uniform in
    log sigma: in log sigma the right-hand side is smooth (it interpolates between ~0 at small sigma and x at
    large sigma), a fixed grid costs a known 4 * steps network evaluations, and batches stay in lock-step.
    Heun's method was too coarse here: x grows like sigma at large sigma, and 2nd order left 0.017 nats/dim
    at 128 evaluations on the Gaussian fixture; RK4 with 32 steps (128 evaluations, about what adaptive
    dopri5 spends) is within a few 1e-3 (measured in the tests against the exact answer).

    The trace is Hutchinson's estimator with one Rademacher probe per example, fixed along the path, or the
    exact trace (one vector-Jacobian product per dimension) with `exact_trace=True`.

    `mask` (bool, broadcastable to x0): the dimensions that flow. The others stay at their x0 values, are
    not probed and not scored, so the result is -log p(masked dims | the rest) (e.g. a sentence's words
    given its padding and any known context).
    """
    if not (0 < sigma_min < sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if not torch.isfinite(x0).all():
        raise ValueError("x0 contains NaN or Inf")
    cond = cond or {}
    B = x0.shape[0]
    keep = None if mask is None else torch.broadcast_to(mask.to(x0.device, torch.bool), x0.shape)
    probe = None
    if not exact_trace:
        probe = torch.randint(0, 2, x0.shape, generator=generator, device="cpu" if generator is None
                              else generator.device, dtype=torch.int64).to(x0.device, x0.dtype) * 2 - 1
        if keep is not None:
            probe = probe * keep
    u = torch.linspace(math.log(sigma_min), math.log(sigma_max), steps + 1, dtype=torch.float64).tolist()

    def rhs(x: torch.Tensor, log_sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = torch.full((B,), math.exp(log_sigma), dtype=x.dtype, device=x.device)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            f = x - denoiser(x, sigma, **cond)
            if keep is not None:
                f = torch.where(keep, f, torch.zeros_like(f))
            if probe is not None:
                (g,) = torch.autograd.grad(f, x, probe)
                div = (g * probe).flatten(1).sum(1)
            else:
                div = _exact_divergence(f, x)
        return f.detach(), div.detach()

    x, delta = x0.clone(), torch.zeros(B, dtype=x0.dtype, device=x0.device)
    for a, b in zip(u[:-1], u[1:]):  # classical RK4 on (x, divergence integral)
        h, m = b - a, (a + b) / 2
        k1, d1 = rhs(x, a)
        k2, d2 = rhs(x + (h / 2) * k1, m)
        k3, d3 = rhs(x + (h / 2) * k2, m)
        k4, d4 = rhs(x + h * k3, b)
        x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        delta = delta + (h / 6) * (d1 + 2 * d2 + 2 * d3 + d4)
    prior = gaussian_logpdf(x, 0.0, sigma_max) if keep is None else \
        (gaussian_logpdf(x, 0.0, sigma_max, reduce=False) * keep).flatten(1).sum(1)
    return -(prior + delta)


def _exact_divergence(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    flat = f.flatten(1)
    div = torch.zeros(f.shape[0], dtype=f.dtype, device=f.device)
    for j in range(flat.shape[1]):
        (g,) = torch.autograd.grad(flat[:, j].sum(), x, retain_graph=True)
        div = div + g.flatten(1)[:, j]
    return div


def elbo(denoiser: Callable[..., torch.Tensor], x0: torch.Tensor, *, logsnr_min: float, logsnr_max: float,
         decoder_nll: Callable[[torch.Tensor, float], torch.Tensor] | None = None, samples: int = 16,
         generator: torch.Generator | None = None, cond: dict | None = None) -> torch.Tensor:
    """Continuous-time variational bound (Kingma et al. 2021), nats per example [B] (an upper bound on -log p).

    -log p(x0) <= KL(q(z_1 | x0) || N(0, I))                  prior term at logsnr_min (VP prior)
                + 1/2 int_{lmin}^{lmax} e^l ||x0 - D(x_l)||^2 dl  diffusion term, logSNR uniform, `samples`
                                                                  stratified draws per example
                + decoder_nll(x_at_sigma_min, sigma_min)         reconstruction term at logsnr_max.
    In VE coordinates the VP prior N(0, I) on z_1 is N(0, 1 + sigma_max^2) on x. `decoder_nll` defaults to a
    Gaussian decoder N(x0; x, sigma_min^2) for continuous data (in expectation d/2 (1 + log 2 pi sigma_min^2)).
    """
    if not logsnr_min < logsnr_max:
        raise ValueError(f"need logsnr_min < logsnr_max, got {logsnr_min}, {logsnr_max}")
    cond = cond or {}
    B, dims = x0.shape[0], x0[0].numel()
    s_max, s_min = math.exp(-logsnr_min / 2), math.exp(-logsnr_max / 2)
    # prior: KL(N(x0, s_max^2) || N(0, 1 + s_max^2)) per dim, summed
    var_p = 1 + s_max ** 2
    kl = 0.5 * ((s_max ** 2 + x0 ** 2) / var_p - 1 - math.log(s_max ** 2 / var_p)).flatten(1).sum(1)
    diff = torch.zeros(B, dtype=x0.dtype, device=x0.device)
    draws = Draws(generator if generator is not None else torch.Generator().manual_seed(0), B)
    u = draws.stratified()
    with torch.no_grad():
        for k in range(samples):
            frac = ((u + k / samples) % 1.0).to(x0)
            l = logsnr_min + frac * (logsnr_max - logsnr_min)
            sigma = (-l / 2).exp()
            x = x0 + sigma.reshape(-1, *([1] * (x0.ndim - 1))) * draws.randn(*x0.shape[1:]).to(x0)
            err = ((denoiser(x, sigma, **cond) - x0) ** 2).flatten(1).sum(1)
            diff = diff + 0.5 * (logsnr_max - logsnr_min) * l.exp() * err / samples
        if decoder_nll is None:
            rec = torch.full((B,), 0.5 * dims * (1 + math.log(2 * math.pi * s_min ** 2)), dtype=x0.dtype,
                             device=x0.device)
        else:
            rec = decoder_nll(x0 + s_min * draws.randn(*x0.shape[1:]).to(x0), s_min)
    return kl + diff + rec
