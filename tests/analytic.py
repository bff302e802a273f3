"""Analytic references for the core's tests: Gaussian data and Gaussian mixtures with exact denoisers.

Gaussian data N(mu, S^2) elementwise, in the core's coordinates x = x0 + sigma * eps:
  exact denoiser     D(x, sigma) = (S^2 x + sigma^2 mu) / (S^2 + sigma^2)
  exact PF-ODE path  x(sigma) = mu + (x(sigma_max) - mu) sqrt(S^2 + sigma^2) / sqrt(S^2 + sigma_max^2)
  exact marginal     log N(x; mu, S^2 + sigma^2)
"""

from __future__ import annotations

import math

import torch


class Gaussian:
    def __init__(self, mu: float = 0.3, std: float = 0.5):
        self.mu, self.std = mu, std

    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype) ** 2
        return (self.std ** 2 * x + s2 * self.mu) / (self.std ** 2 + s2)

    def ode_endpoint(self, x_T: torch.Tensor, sigma_max: float, sigma: float = 0.0) -> torch.Tensor:
        return self.mu + (x_T - self.mu) * math.sqrt(self.std ** 2 + sigma ** 2) / math.sqrt(
            self.std ** 2 + sigma_max ** 2)

    def log_prob(self, x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        var = self.std ** 2 + sigma ** 2
        return (-0.5 * ((x - self.mu) ** 2 / var + math.log(2 * math.pi * var))).flatten(1).sum(1)

    def sample(self, shape, generator=None) -> torch.Tensor:
        return self.mu + self.std * torch.randn(shape, generator=generator, dtype=torch.float64).float()


class Mixture:
    """Isotropic Gaussian mixture in d dims: weights w_k, means mu_k [K, d], stds s_k."""

    def __init__(self, weights, means, stds):
        self.w = torch.tensor(weights, dtype=torch.float64)
        self.mu = torch.tensor(means, dtype=torch.float64)
        self.s = torch.tensor(stds, dtype=torch.float64)

    def _resp(self, x: torch.Tensor, sigma: torch.Tensor):
        x = x.double()
        var = (self.s ** 2)[None, :] + sigma.double()[:, None] ** 2  # [B, K]
        d = x.shape[1]
        sq = ((x[:, None, :] - self.mu[None]) ** 2).sum(-1)  # [B, K]
        logp = torch.log(self.w)[None] - 0.5 * sq / var - 0.5 * d * torch.log(2 * math.pi * var)
        return torch.softmax(logp, 1), var, torch.logsumexp(logp, 1)

    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        r, var, _ = self._resp(x, sigma)
        s2 = (self.s ** 2)[None, :, None]
        sig2 = sigma.double()[:, None, None] ** 2
        comp = (s2 * x.double()[:, None, :] + sig2 * self.mu[None]) / (s2 + sig2)
        return (r[:, :, None] * comp).sum(1).to(x.dtype)

    def log_prob(self, x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        return self._resp(x, torch.full((x.shape[0],), sigma))[2]

    def sample(self, n: int, generator=None):
        k = torch.multinomial(self.w, n, replacement=True, generator=generator)
        z = torch.randn((n, self.mu.shape[1]), generator=generator, dtype=torch.float64)
        return (self.mu[k] + self.s[k, None] * z).float(), k
