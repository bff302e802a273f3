"""A small U-Net denoiser over 2-D (spectrograms, images) or 1-D (time series) inputs, with noise-level and
class conditioning.

`UNet2D(...)(x [B, C, H, W], c_noise [B], label=LongTensor[B] | None) -> [B, C_out, H, W]`;
with `dims=1`: x [B, C, T] -> [B, C_out, T] (e.g. a mel spectrogram with its bins as channels).

* Noise level: sinusoidal features of c_noise (EDM: ln(sigma)/4) -> MLP -> embedding `emb`.
* Classes: `nn.Embedding(num_classes + 1, emb_dim)` added to `emb`; index `num_classes` is the null label
  of classifier-free guidance (used when `label` is None).
* Every residual block applies FiLM from `emb` after its first GroupNorm (AdaGN: h * (1 + scale) + shift).
* Absolute position: fixed channels concatenated to the input (H and W ramps in [-1, 1] and their
  sin/cos; T's ramp and its sin/cos in 1-D), so the network knows where in the window (time) and which band
  (frequency) it is.
* Any size: the input is padded at the end of each axis to a multiple of 2^(levels-1) and the output cropped.
* Self-attention at the levels in `attention_levels` (and in the middle). bf16-friendly (GroupNorm, SDPA).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import SinusoidalEmbedding


def _groups(ch: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if ch % g == 0 and ch // g >= 4 or g == 1:
            return g
    return 1


def _conv(dims: int) -> type[nn.Module]:
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    return nn.Conv1d if dims == 1 else nn.Conv2d


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0, dims: int = 2):
        super().__init__()
        conv = _conv(dims)
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = conv(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = conv(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb).reshape(*emb.shape[:1], -1, *[1] * (x.dim() - 2)).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, ch: int, heads: int = 4, dims: int = 2):
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = _conv(dims)(ch, 3 * ch, 1)
        self.out = _conv(dims)(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, N = x.shape[0], x.shape[1], x[0, 0].numel()   # N positions (H * W, or T)
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, N).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, C/heads]
        return x + self.out(h.transpose(-1, -2).reshape(x.shape))


class UNet2D(nn.Module):
    """See the module docstring. Defaults give ~2.3M parameters (10 classes) (CPU-sized).

    in_channels/out_channels: data channels; channels: width of level 0; channel_mults: width multiplier
    per level (len = number of levels); num_res_blocks: per level on the way down (one more on the way
    up); attention_levels: level indices with self-attention (cost quadratic in the positions of the
    level: keep it to the lowest levels); mid_attention: attention between the two middle blocks;
    num_classes: 0 = unconditional;
    position_channels: add the absolute-position input channels; noise_scale: multiplies c_noise before
    the sinusoidal features; dims: 2 (x [B, C, H, W]) or 1 (x [B, C, T]).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, channels: int = 32,
                 channel_mults: Sequence[int] = (1, 2, 2, 3), num_res_blocks: int = 1,
                 attention_levels: Sequence[int] = (3,), heads: int = 4, num_classes: int = 0,
                 position_channels: bool = True, dropout: float = 0.0, emb_dim: int | None = None,
                 noise_scale: float = 250.0, mid_attention: bool = True, dims: int = 2):
        super().__init__()
        conv = _conv(dims)
        self.dims = dims
        self.levels = len(channel_mults)
        self.num_classes = int(num_classes)
        self.position_channels = bool(position_channels)
        emb_dim = emb_dim or 4 * channels
        self.noise_features = SinusoidalEmbedding(channels, scale=noise_scale)
        self.noise_mlp = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # N(0, 1) rows (ADM; EDM's label map is unit-scale too): a class must move the noise-level embedding as
        # much as sigma does from the first step. With small rows (std 0.02) the few, noisy per-class gradients
        # left them near their init for thousands of steps and the model ignored its labels.
        self.label_emb = nn.Embedding(self.num_classes + 1, emb_dim) if self.num_classes > 0 else None
        n_pos = (6 if dims == 2 else 3) if self.position_channels else 0
        self.conv_in = conv(in_channels + n_pos, channels, 3, padding=1)

        widths = [channels * m for m in channel_mults]
        self.down = nn.ModuleList()
        skips = [channels]
        ch = channels
        for lvl, w in enumerate(widths):
            for _ in range(num_res_blocks):
                blk = nn.ModuleList([ResBlock(ch, w, emb_dim, dropout, dims)])
                if lvl in attention_levels:
                    blk.append(Attention(w, heads, dims))
                self.down.append(blk)
                ch = w
                skips.append(ch)
            if lvl < self.levels - 1:
                self.down.append(nn.ModuleList([conv(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
        self.mid1 = ResBlock(ch, ch, emb_dim, dropout, dims)
        self.mid_attn = Attention(ch, heads, dims) if mid_attention else nn.Identity()
        self.mid2 = ResBlock(ch, ch, emb_dim, dropout, dims)
        self.up = nn.ModuleList()
        for lvl in reversed(range(self.levels)):
            w = widths[lvl]
            for _ in range(num_res_blocks + 1):
                blk = nn.ModuleList([ResBlock(ch + skips.pop(), w, emb_dim, dropout, dims)])
                if lvl in attention_levels:
                    blk.append(Attention(w, heads, dims))
                self.up.append(blk)
                ch = w
            if lvl > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              conv(ch, ch, 3, padding=1)]))
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = conv(ch, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @staticmethod
    def position_grid(H: int, W: int, Hp: int, Wp: int, like: torch.Tensor) -> torch.Tensor:
        """[1, 6, Hp, Wp]: ramps over the real extent (H, W) in [-1, 1] (continued into padding) and sin/cos."""
        fh = (torch.arange(Hp, device=like.device, dtype=torch.float32) / max(H - 1, 1)) * 2 - 1
        fw = (torch.arange(Wp, device=like.device, dtype=torch.float32) / max(W - 1, 1)) * 2 - 1
        gh, gw = torch.meshgrid(fh, fw, indexing="ij")
        pi = torch.pi / 2
        grid = torch.stack([gh, gw, torch.sin(pi * gh), torch.cos(pi * gh), torch.sin(pi * gw), torch.cos(pi * gw)])
        return grid.unsqueeze(0).to(like.dtype)

    def _positions(self, size: list[int], padded: list[int], like: torch.Tensor) -> torch.Tensor:
        """[1, 6, Hp, Wp] (2-D) or [1, 3, Tp] (1-D: the T ramp and its sin/cos, the W rows of the 2-D grid)."""
        if self.dims == 2:
            return self.position_grid(*size, *padded, like)
        return self.position_grid(1, size[0], 1, padded[0], like)[:, [1, 4, 5], 0]

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != self.dims + 2:
            raise ValueError(f"a {self.dims}-D U-Net takes [B, C, {'H, W' if self.dims == 2 else 'T'}], "
                             f"got shape {list(x.shape)}")
        B, size = x.shape[0], list(x.shape[2:])
        m = 2 ** (self.levels - 1)
        padded = [-(-n // m) * m for n in size]
        pad = [p for n, q in zip(reversed(size), reversed(padded)) for p in (0, q - n)]
        h = F.pad(x, pad) if padded != size else x
        if self.position_channels:
            h = torch.cat([h, self._positions(size, padded, h).expand(B, *[-1] * (self.dims + 1))], dim=1)

        emb = self.noise_mlp(self.noise_features(c_noise.reshape(-1).expand(B) if c_noise.numel() == 1
                                                  else c_noise.reshape(B)).to(h.dtype))
        if self.label_emb is not None:
            if label is None:
                label = torch.full((B,), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.label_emb(label.reshape(B).long())
        emb = F.silu(emb)

        h = self.conv_in(h)
        hs = [h]
        for blk in self.down:
            if isinstance(blk[0], ResBlock):
                h = blk[0](h, emb)
                for extra in blk[1:]:
                    h = extra(h)
            else:
                h = blk[0](h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for blk in self.up:
            if isinstance(blk[0], ResBlock):
                h = blk[0](torch.cat([h, hs.pop()], dim=1), emb)
                for extra in blk[1:]:
                    h = extra(h)
            else:
                h = blk[1](blk[0](h))
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out[(..., *[slice(0, n) for n in size])]
