"""Embeddings of scalars (noise level, time, position) shared by the backbones."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal features of a scalar per example: [B] -> [B, dim].

    Frequencies are geometric from 1 down to 1/max_period; the input is multiplied by `scale` first.
    EDM's c_noise = ln(sigma)/4 spans only a few units, so a backbone fed it may use scale ~ 100-1000
    to spread it over the frequencies.
    Output order: [cos(...), sin(...)]. Parameter-free; deterministic.
    """

    def __init__(self, dim: int, max_period: float = 10000.0, scale: float = 1.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"SinusoidalEmbedding dim must be even, got {dim}")
        self.dim, self.max_period, self.scale = dim, float(max_period), float(scale)
        half = dim // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = (x.float().reshape(-1, 1) * self.scale) * self.freqs.to(x.device)
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class FourierEmbedding(nn.Module):
    """Random Fourier features (NCSN++ / EDM): [B] -> [B, dim], fixed Gaussian frequencies * 2 pi."""

    def __init__(self, dim: int, std: float = 16.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(dim // 2, generator=g) * std, persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = x.float().reshape(-1, 1) * (2 * math.pi) * self.freqs
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
