"""Editing mel clips with a trained `DiffusionModel`, through the core samplers' hooks.

All functions take mels in the model's normalised space, `x0 [B, 1, F, T]` (what `AudioModality.encode`
returns and `DiffusionModel.sample_x0` produces; any `[B, ..., T]` works), and return mels of the same
space and shape. Decode them with `model.modality.decode(x)`. Time is the last axis (frames:
`model.modality.preset.frames_per_second` per second).

* `inpaint(model, x0, start, end)`: regenerate frames [start, end), keep the rest exactly (`known` hook).
* `continue_clip(model, x0, keep)`: outpainting: keep the first `keep` frames, generate the rest.
* `vary(model, x0, strength)`: SDEdit: noise to a strength-dependent sigma and sample down from there.
* `invert(model, x0)`: DDIM inversion (deterministic ODE from sigma_min up to sigma_max).
* `interpolate(model, a, b, alphas)`: invert both, `slerp` the latents, decode deterministically.

`label` (a name, an index or a list, as `sample_x0`) conditions a class-conditional model; without it
the model runs unconditionally (its null label). `guidance` (classifier-free) applies only with a label.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ...core import samplers


def _prepared(model, n: int, label: Any, guidance: float | None):
    """(denoiser, cond dict, device) for `n` items: conditional with CFG when `label` is given."""
    device = next(model.net.parameters()).device
    D = model.denoiser()
    null = model.null_cond()
    if not null:
        return D, {}, device
    if label is None:
        cond = {k: torch.full((n,), v, dtype=torch.long, device=device) for k, v in null.items()}
        return D, cond, device
    _, ctx = model.modality.sample_shape(n, label=label)
    scale = model.diffusion.guidance if guidance is None else guidance
    if scale != 1.0:
        D = samplers.cfg(D, scale, null)
    return D, {k: v.to(device) for k, v in ctx.cond.items()}, device


def _run(model, x: torch.Tensor, sigmas: torch.Tensor, *, method: str | None, seed: int, label: Any,
         guidance: float | None, known: tuple[torch.Tensor, torch.Tensor] | None = None, callback=None
         ) -> torch.Tensor:
    """Sample from `x` (already at noise level sigmas[0]) down `sigmas`, in eval mode, on the model's device."""
    net = model.net
    was_training = net.training
    net.eval()
    try:
        D, cond, device = _prepared(model, x.shape[0], label, guidance)
        g = torch.Generator().manual_seed(int(seed))
        opts: dict[str, Any] = {"cond": cond}
        if known is not None:
            opts["known"] = (known[0].to(device), known[1].to(device))
        out = samplers.sample(D, x.to(device), sigmas.to(device), method or model.diffusion.sampler,
                              generator=g, callback=callback, **opts)
    finally:
        net.train(was_training)
    return out


def _noise(x0: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(x0.shape, generator=g, dtype=torch.float32).to(x0)


# ------------------------------------------------------------------------------------------------
# In/outpainting
# ------------------------------------------------------------------------------------------------

def time_mask(x0: torch.Tensor, start_frame: int, end_frame: int) -> torch.Tensor:
    """Bool mask [1, ..., T] broadcastable to x0: True on frames OUTSIDE [start_frame, end_frame) (the known ones)."""
    T = x0.shape[-1]
    if not 0 <= start_frame < end_frame <= T:
        raise ValueError(f"need 0 <= start_frame < end_frame <= {T} frames, got {start_frame}, {end_frame}")
    keep = torch.ones(T, dtype=torch.bool, device=x0.device)
    keep[start_frame:end_frame] = False
    return keep.reshape(*[1] * (x0.dim() - 1), T)


@torch.no_grad()
def inpaint(model, x0: torch.Tensor, start_frame: int, end_frame: int, *, steps: int | None = None,
            method: str | None = None, seed: int = 0, label: Any = None, guidance: float | None = None
            ) -> torch.Tensor:
    """Regenerate frames [start_frame, end_frame) of x0 [B, ..., T], keeping every other frame exactly.

    The sampler's `known` hook replaces the denoiser's estimate by x0 outside the span and keeps the known
    frames of x on their forward-process path x0 + sigma * z, so the span is generated in context."""
    mask = time_mask(x0, start_frame, end_frame)
    sig = model.sigmas(steps)
    x = _noise(x0, seed + 1) * sig[0]
    return _run(model, x, sig, method=method, seed=seed, label=label, guidance=guidance, known=(x0, mask))


def continue_clip(model, x0: torch.Tensor, keep_frames: int, **kw: Any) -> torch.Tensor:
    """Outpainting: keep the first `keep_frames` frames of x0 [B, ..., T] and generate the rest
    (options as `inpaint`)."""
    return inpaint(model, x0, keep_frames, x0.shape[-1], **kw)


def extend(model, x0: torch.Tensor, overlap_frames: int, times: int = 1, **kw: Any) -> torch.Tensor:
    """A longer clip: `times` times, place the last `overlap_frames` frames at the start of a new window,
    `continue_clip` it, and append the new frames. Returns [B, ..., T + times * (T - overlap_frames)]."""
    T = x0.shape[-1]
    if not 0 < overlap_frames < T:
        raise ValueError(f"overlap_frames must be in (0, {T}), got {overlap_frames}")
    out, seed = x0, kw.pop("seed", 0)
    for i in range(times):
        window = torch.cat([out[..., -overlap_frames:], torch.zeros_like(x0[..., overlap_frames:])], dim=-1)
        new = continue_clip(model, window, overlap_frames, seed=seed + i, **kw)
        out = torch.cat([out, new[..., overlap_frames:]], dim=-1)
    return out


# ------------------------------------------------------------------------------------------------
# Variations (SDEdit)
# ------------------------------------------------------------------------------------------------

def strength_sigma(model, strength: float, rho: float = 7.0) -> float:
    """The sigma `vary` starts from: the position `strength` along the model's Karras ramp from sigma_min
    (strength 0+) to sigma_max (strength 1); 0.0 for strength 0."""
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if strength == 0:
        return 0.0
    d = model.diffusion
    a, b = d.sigma_max ** (1 / rho), d.sigma_min ** (1 / rho)
    return (b + strength * (a - b)) ** rho


@torch.no_grad()
def vary(model, x0: torch.Tensor, strength: float, *, steps: int | None = None, method: str | None = None,
         seed: int = 0, label: Any = None, guidance: float | None = None) -> torch.Tensor:
    """SDEdit variation of x0: x = x0 + sigma_s * eps with sigma_s = `strength_sigma(strength)`, then sample
    down a Karras grid from sigma_s to sigma_min (ceil(strength * steps) steps, at least 1) and 0.
    strength 0 returns x0 unchanged; strength 1 ignores x0 (a fresh sample)."""
    s_start = strength_sigma(model, strength)
    if s_start == 0.0:
        return x0.clone()
    d = model.diffusion
    n = max(1, math.ceil(strength * (steps or d.steps)))
    if s_start > d.sigma_min * (1 + 1e-6) and n > 1:
        sig = samplers.karras_sigmas(n, d.sigma_min, s_start)
    else:
        sig = torch.tensor([s_start, 0.0])
    x = x0 + _noise(x0, seed + 1) * s_start
    return _run(model, x, sig, method=method, seed=seed, label=label, guidance=guidance)


# ------------------------------------------------------------------------------------------------
# Inversion and interpolation
# ------------------------------------------------------------------------------------------------

@torch.no_grad()
def invert(model, x0: torch.Tensor, steps: int | None = None, *, method: str = "euler", label: Any = None,
           guidance: float = 1.0) -> torch.Tensor:
    """DDIM inversion: integrate the probability-flow ODE from x0 (taken as x at sigma_min) up the
    reversed grid `model.sigmas(steps)` to sigma_max. `method` "euler" (= DDIM, one evaluation per step)
    or "heun" (2nd order). Sampling the result with the same method and grid gives back x0 up to the
    discretisation error. Returns the latent [B, ...] at sigma_max."""
    if method not in ("euler", "heun"):
        raise ValueError(f"invert: method must be 'euler' or 'heun', got {method!r}")
    up = model.sigmas(steps).tolist()[:-1][::-1]  # sigma_min ... sigma_max
    net = model.net
    was_training = net.training
    net.eval()
    try:
        D, cond, device = _prepared(model, x0.shape[0], label, guidance)
        x = x0.to(device).clone()
        table = {s: torch.full((x.shape[0],), s, dtype=torch.float32, device=device) for s in up}
        for s, s_next in zip(up[:-1], up[1:]):
            d = (x - D(x, table[s], **cond)) / s
            x_pred = x + d * (s_next - s)
            if method == "heun":
                d2 = (x_pred - D(x_pred, table[s_next], **cond)) / s_next
                x_pred = x + (d + d2) * ((s_next - s) / 2)
            x = x_pred
    finally:
        net.train(was_training)
    return x


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation per item of a, b [B, ...]: the direction moves along the great circle from
    a to b, the norm linearly from |a| to |b| (so equal-norm inputs keep their norm). t=0 -> a, t=1 -> b."""
    if t == 0:
        return a.clone()
    if t == 1:
        return b.clone()
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    na, nb = fa.norm(dim=1, keepdim=True), fb.norm(dim=1, keepdim=True)
    ua, ub = fa / na, fb / nb
    omega = torch.arccos((ua * ub).sum(1, keepdim=True).clamp(-1, 1))
    so = torch.sin(omega)
    parallel = so < 1e-6
    wa = torch.where(parallel, torch.full_like(so, 1 - t), torch.sin((1 - t) * omega) / so.clamp(min=1e-12))
    wb = torch.where(parallel, torch.full_like(so, t), torch.sin(t * omega) / so.clamp(min=1e-12))
    u = wa * ua + wb * ub
    u = u / u.norm(dim=1, keepdim=True)
    return (u * ((1 - t) * na + t * nb)).to(a.dtype).reshape(a.shape)


@torch.no_grad()
def interpolate(model, a: torch.Tensor, b: torch.Tensor, alphas: Sequence[float], *, steps: int | None = None,
                method: str = "euler", label: Any = None) -> torch.Tensor:
    """Invert a and b [B, ...], slerp their latents at each alpha, and sample each back deterministically
    (same method and grid as the inversion). Returns [len(alphas), B, ...]; alpha 0 ~ a, 1 ~ b."""
    za = invert(model, a, steps, method=method, label=label)
    zb = invert(model, b, steps, method=method, label=label)
    z = torch.cat([slerp(za, zb, float(t)) for t in alphas])
    labels = None if label is None else (list(label) * len(alphas) if isinstance(label, (list, tuple)) else label)
    out = _run(model, z, model.sigmas(steps), method=method, seed=0, label=labels, guidance=1.0)
    return out.reshape(len(alphas), *a.shape)
