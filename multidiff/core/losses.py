"""Denoising losses: weightings as functions of logSNR, and samplers of training noise levels.

Every weighting is expressed in **x0-MSE units**: the per-example loss is ``w(logsnr) * ||D(x) - x0||^2``
(mean over dims). The classic objectives are the same loss with another w (SNR = exp(logsnr), sd = sigma_data):

  eps      L_simple, ||eps - eps_hat||^2           w = SNR
  x0       ||x0 - x0_hat||^2                        w = 1
  v        ||v - v_hat||^2                          w = SNR + 1
  min_snr  Min-SNR-gamma (Hang et al. 2023)         w = min(SNR, gamma)
  edm      EDM lambda(sigma)                        w = SNR + 1 / sd^2
  sigmoid  Kingma & Gao (2023), bias b              w = SNR * sigmoid(b - logsnr)
  elbo     VDM continuous ELBO, t ~ U(0, 1)         w = -1/2 * SNR * dlogsnr/dt * D_dims  (nats, needs a schedule)

Time samplers return sigma [B] from per-example uniforms/normals in a `Draws`: ``uniform`` and ``stratified``
(t over a schedule) and ``lognormal`` (EDM: log sigma ~ N(p_mean, p_std^2)).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .draws import Draws
from .schedules import Schedule

WEIGHTINGS = ("eps", "x0", "v", "min_snr", "edm", "sigmoid", "elbo")
TIME_SAMPLERS = ("uniform", "stratified", "lognormal")


def weight(name: str, logsnr: torch.Tensor, *, sigma_data: float = 0.5, gamma: float = 5.0,
           bias: float = -3.0, dlogsnr_dt: torch.Tensor | None = None, dims: int = 1) -> torch.Tensor:
    """x0-MSE weight w(logsnr) [B] of weighting `name` (see the module table)."""
    snr = logsnr.exp()
    if name == "eps":
        return snr
    if name == "x0":
        return torch.ones_like(logsnr)
    if name == "v":
        return snr + 1
    if name == "min_snr":
        return snr.clamp(max=gamma)
    if name == "edm":
        return snr + 1 / sigma_data ** 2
    if name == "sigmoid":
        return snr * torch.sigmoid(bias - logsnr)
    if name == "elbo":
        if dlogsnr_dt is None:
            raise ValueError("the 'elbo' weighting needs dlogsnr_dt from the schedule the times were drawn on")
        return -0.5 * snr * dlogsnr_dt * dims
    raise ValueError(f"unknown loss weighting {name!r}; valid choices: {', '.join(WEIGHTINGS)}")


def sample_sigma(name: str, draws: Draws, *, schedule: Schedule | None = None, p_mean: float = -1.2,
                 p_std: float = 1.2) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training noise levels: (sigma [B], t [B] or None when not drawn on a schedule)."""
    if name == "lognormal":
        return (p_mean + p_std * draws.randn()).exp(), None
    if name in ("uniform", "stratified"):
        if schedule is None:
            raise ValueError(f"time sampler {name!r} needs a schedule")
        t = draws.rand() if name == "uniform" else draws.stratified()
        return schedule.sigma_ve(t).float(), t
    raise ValueError(f"unknown time sampler {name!r}; valid choices: {', '.join(TIME_SAMPLERS)}")


def denoising_loss(denoiser, x0: torch.Tensor, draws: Draws, *, weighting: str = "edm",
                   time_sampler: str = "lognormal", schedule: Schedule | None = None, mask=None,
                   sigma_data: float = 0.5, gamma: float = 5.0, bias: float = -3.0, p_mean: float = -1.2,
                   p_std: float = 1.2, cond: dict | None = None) -> torch.Tensor:
    """Per-example loss [B] for a `process.Denoiser`: draws sigma and noise, weights by `weighting`."""
    sigma, t = sample_sigma(time_sampler, draws, schedule=schedule, p_mean=p_mean, p_std=p_std)
    logsnr = -2 * sigma.log()
    slope = None
    if weighting == "elbo":
        if t is None or schedule is None:
            raise ValueError("the 'elbo' weighting needs time_sampler 'uniform' or 'stratified' with a schedule")
        slope = schedule.dlogsnr_dt(t).float()
    dims = x0[0].numel() if mask is None else None
    w = weight(weighting, logsnr, sigma_data=sigma_data, gamma=gamma, bias=bias, dlogsnr_dt=slope,
               dims=dims or 1)
    if weighting == "elbo" and mask is not None:
        w = w * mask.to(w.dtype).expand_as(x0).flatten(1).sum(1)
    noise = draws.randn(*x0.shape[1:]).to(x0)
    return denoiser.loss(x0, sigma.to(x0.device), noise, w.to(x0.device), mask=mask, **(cond or {}))
