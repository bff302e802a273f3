"""Text diffusion objectives, the adaptive logSNR sampler, and the continuous-time bound.

Coordinates (the core's): x = x0 + sigma * eps with x0 = E[w] (the normalised embedding of token w),
logSNR lambda = -2 log sigma. Everything a network sees is relative to sigma_data (the per-coordinate
RMS of the embeddings): lambda_rel = lambda + 2 log sigma_data, so ranges mean the same for every
embedding normalisation and dimension.

- `logits(...)`: preconditioning x_in = x / sqrt(sigma^2 + sigma_data^2), c_noise = lambda_rel, known
  (context) positions clean, plus Plaid's output prior (the closed-form Gaussian log-likelihood
  (x . e_w - |e_w|^2 / 2) / sigma^2 added to the logits, so p(w | x) is exact when noise is small).
- `x0_hat = softmax(logits) @ E` (score interpolation / categorical reparameterisation).
- `LogSNRSampler`: CDCD-style time warping as importance sampling of lambda. It keeps a running
  per-bin estimate of the bound's integrand 0.5 e^lambda |x0 - x0_hat|^2 and draws lambda with density
  proportional to it (mixed with uniform). By the I-MMSE relation this integrand equals -d CE / d lambda for
  an exact model, i.e. it is CDCD's warping target; it is also the zero-variance proposal for the bound.
- Objectives: `score_interp` (CDCD cross-entropy at warped lambda), `elbo` (the VDM bound itself,
  importance-weighted), `diffusion_lm` (x0-MSE + rounding CE + prior term, sqrt schedule, uniform t).
- `bound_terms`: the continuous-time bound in nats per sequence (prior KL + diffusion integral +
  reconstruction -log p(w | z at lambda_max)), one readable function (Plaid's formula).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...core.draws import Draws
from ...errors import ConfigError

OBJECTIVES = ("score_interp", "elbo", "diffusion_lm")
KNOWN_LOGSNR = 20.0  # c_noise given to clean (known) positions


def _u(net: nn.Module) -> nn.Module:
    """The module behind a DDP/compile wrapper (attributes other than forward live there)."""
    return getattr(net, "module", getattr(net, "_orig_mod", net))


class LogSNRSampler(nn.Module):
    """Adaptive piecewise-constant density over lambda_rel in [lo, hi] with `bins` bins.

    `sample(u)` maps uniforms u [B] to (lambda_rel [B], pdf [B]) by the inverse CDF; `update(lam, value)`
    folds observed per-example integrand values into a running mean per bin (no gradient).
    `mix` of the density is uniform so every bin keeps being visited; `adaptive=False` keeps it uniform.
    State lives in buffers, so it is saved with the model.
    """

    def __init__(self, lo: float = -12.0, hi: float = 10.0, bins: int = 64, mix: float = 0.1,
                 decay: float = 0.98, adaptive: bool = True):
        super().__init__()
        if not hi > lo:
            raise ConfigError(f"logSNR range must have hi > lo, got [{lo}, {hi}]")
        self.lo, self.hi, self.bins, self.mix, self.decay = float(lo), float(hi), int(bins), mix, decay
        self.adaptive = adaptive
        self.register_buffer("est", torch.ones(bins))           # integrand estimate per bin
        self.register_buffer("ce", torch.zeros(bins))           # cross-entropy per bin (diagnostics)
        self.register_buffer("seen", torch.zeros(bins))

    @property
    def width(self) -> float:
        return (self.hi - self.lo) / self.bins

    def probs(self) -> torch.Tensor:
        """Probability mass of each bin [bins]."""
        uni = torch.full_like(self.est, 1.0 / self.bins)
        if not self.adaptive or bool((self.seen == 0).any()):
            return uni                                    # uniform until every bin has been seen
        e = self.est.clamp_min(0)
        e = torch.cat([e[:1], e, e[-1:]])
        e = 0.25 * e[:-2] + 0.5 * e[1:-1] + 0.25 * e[2:]   # light smoothing across neighbours
        p = e / e.sum().clamp_min(1e-30)
        return (1 - self.mix) * p + self.mix * uni

    def sample(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.probs().to(u.device)
        cdf = torch.cumsum(p, 0)
        k = torch.searchsorted(cdf, u.clamp(0, 1 - 1e-7), right=True).clamp_max(self.bins - 1)
        lo_cdf = cdf[k] - p[k]
        frac = ((u - lo_cdf) / p[k]).clamp(0, 1)
        lam = self.lo + (k.to(u.dtype) + frac) * self.width
        return lam, p[k] / self.width

    def pdf(self, lam: torch.Tensor) -> torch.Tensor:
        k = ((lam - self.lo) / self.width).long().clamp(0, self.bins - 1)
        return self.probs().to(lam.device)[k] / self.width

    @torch.no_grad()
    def update(self, lam: torch.Tensor, value: torch.Tensor, ce: torch.Tensor | None = None) -> None:
        dev = self.est.device
        k = ((lam.detach().to(dev) - self.lo) / self.width).long().clamp(0, self.bins - 1)
        n = torch.bincount(k, minlength=self.bins).to(self.est.dtype)
        s = torch.bincount(k, weights=value.detach().to(dev, self.est.dtype), minlength=self.bins)
        hit = n > 0
        mean = s / n.clamp_min(1)
        first = self.seen == 0
        new = torch.where(first, mean, self.decay * self.est + (1 - self.decay) * mean)
        self.est.copy_(torch.where(hit, new, self.est))
        if ce is not None:
            c = torch.bincount(k, weights=ce.detach().to(dev, self.est.dtype), minlength=self.bins) / n.clamp_min(1)
            self.ce.copy_(torch.where(hit, torch.where(first, c, self.decay * self.ce + (1 - self.decay) * c), self.ce))
        self.seen += n

    def mass_in(self, a: float, b: float) -> float:
        """Probability that a draw falls in lambda_rel [a, b] (for reports)."""
        centres = self.lo + (torch.arange(self.bins, device=self.est.device) + 0.5) * self.width
        return float(self.probs()[(centres >= a) & (centres <= b)].sum())


# ----------------------------------------------------------------------------------------------------
def logits(net: nn.Module, x: torch.Tensor, sigma: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
           known: torch.Tensor | None = None, self_cond: torch.Tensor | None = None,
           output_prior: bool = True) -> torch.Tensor:
    """Logits [B, L, V] of p(w_i | x) for x [B, L, d] at VE noise level sigma [B].

    Known positions must hold clean embeddings in x; they are given logSNR `KNOWN_LOGSNR`."""
    B, L, _ = x.shape
    sd = _u(net).sigma_data().to(x)
    s = sigma.to(x).view(B, 1, 1)
    c_in = torch.rsqrt(s * s + sd * sd)
    lam_rel = (-2 * torch.log(sigma.to(x)) + 2 * torch.log(sd)).view(B, 1).expand(B, L)
    if known is not None:
        kn = known.unsqueeze(-1)
        c_in = torch.where(kn, 1.0 / sd, c_in.expand(B, L, 1))
        lam_rel = torch.where(known, torch.full_like(lam_rel, KNOWN_LOGSNR), lam_rel)
    out = net(x * c_in, lam_rel, self_cond=self_cond, attention_mask=attention_mask, known=known)
    if output_prior:  # fp32 even under autocast: the 1/sigma^2 scale magnifies rounding errors
        with torch.autocast(device_type=x.device.type, enabled=False):
            E = _u(net).embedding_matrix().float()
            xf, s2 = x.float(), (s * s).float()
            prior = (xf @ E.t() - 0.5 * E.pow(2).sum(-1)) / s2
            if known is not None:
                prior = prior.masked_fill(known.unsqueeze(-1), 0.0)
            out = out.float() + prior
    return out


def x0_hat(lg: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """Score interpolation: softmax(logits) [B, L, V] @ E [V, d] -> [B, L, d]."""
    with torch.autocast(device_type=lg.device.type, enabled=False):
        return torch.softmax(lg.float(), dim=-1) @ E.float()


def denoise(net: nn.Module, x: torch.Tensor, sigma: torch.Tensor, *, self_cond_passes: int = 1,
            self_cond: torch.Tensor | None = None, self_cond_grad: bool = False,
            **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, x0_hat) with `self_cond_passes` extra passes feeding x0_hat back (if the net
    self-conditions); no-grad unless `self_cond_grad` (then x0_hat is differentiable through the whole
    chain, as the flow's divergence needs). `self_cond` starts the chain (None = zeros)."""
    E = _u(net).embedding_matrix()
    if getattr(_u(net), "use_self_cond", False) and self_cond is None:
        for _ in range(self_cond_passes):
            with torch.set_grad_enabled(self_cond_grad and torch.is_grad_enabled()):
                self_cond = x0_hat(logits(net, x, sigma, self_cond=self_cond, **kw), E)
    lg = logits(net, x, sigma, self_cond=self_cond, **kw)
    return lg, x0_hat(lg, E)


def _eps(net: nn.Module, draws: Draws, L: int) -> torch.Tensor:
    """Noise [b, L, d] drawn at the network's full length and cut to L, so the random stream does not
    depend on how much padding a batch happens to need."""
    n = _u(net)
    full = max(L, getattr(n, "max_len", L))
    return draws.randn(full, n.embed_dim)[:, :L]


def trim(b: "Batch") -> "Batch":
    """Drop trailing columns where no row has a position (padding shared by the whole batch)."""
    L = int(b.mask.any(0).nonzero().max()) + 1 if bool(b.mask.any()) else 1
    if L == b.ids.shape[1]:
        return b
    return Batch(b.ids[:, :L], b.mask[:, :L], b.target[:, :L], None if b.known is None else b.known[:, :L])


@dataclass
class Batch:
    """Token batch in the form the objectives need. ids/mask/known: [B, L]."""

    ids: torch.Tensor
    mask: torch.Tensor          # positions that exist (attention)
    target: torch.Tensor        # positions that count in the loss/bound (mask & ~known)
    known: torch.Tensor | None


def _noisy(net, b: Batch, sigma: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x0 = _u(net).embed(b.ids)
    x = x0 + sigma.view(-1, 1, 1) * eps
    if b.known is not None:
        x = torch.where(b.known.unsqueeze(-1), x0, x)
    return x0, x


def _self_cond_train(net, x, sigma, b: Batch, draws: Draws, p: float, output_prior: bool):
    """Previous-estimate input for training: x0_hat of a no-grad pass for a random fraction p of rows."""
    if not getattr(_u(net), "use_self_cond", False):
        return None
    pick = (draws.rand() < p).to(x.device)
    sc = torch.zeros_like(x)
    if p > 0 and bool(pick.any()):
        idx = pick.nonzero().squeeze(1)
        with torch.no_grad():
            lg = logits(net, x[idx], sigma[idx], attention_mask=b.mask[idx],
                        known=None if b.known is None else b.known[idx], output_prior=output_prior)
            sc[idx] = x0_hat(lg, _u(net).embedding_matrix()).to(sc.dtype)
    return sc


def training_loss(net: nn.Module, b: Batch, draws: Draws, *, objective: str = "score_interp",
                  sampler: LogSNRSampler, self_cond_prob: float = 0.5, output_prior: bool = True,
                  ce_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """One training loss (scalar, per counted token) and logs. Draw order: u, eps, self-cond coin.

    score_interp: mean CE over target tokens at lambda ~ sampler (CDCD).
    elbo: the bound's diffusion integral, importance-weighted by 1/pdf, + prior KL, per token
          (+ `ce_weight` x the CE term when ce_weight > 0, which speeds early training).
    """
    if objective == "diffusion_lm":
        return diffusion_lm_loss(net, b, draws)
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown text objective {objective!r}; use one of {OBJECTIVES}")
    b = trim(b)
    u = draws.stratified().to(b.ids.device)
    eps = _eps(net, draws, b.ids.shape[1]).to(b.ids.device)
    lam_rel, pdf = sampler.sample(u)
    sd = _u(net).sigma_data().to(eps)
    sigma = sd * torch.exp(-lam_rel / 2)
    x0, x = _noisy(net, b, sigma, eps)
    sc = _self_cond_train(net, x, sigma, b, draws, self_cond_prob, output_prior)
    lg = logits(net, x, sigma, attention_mask=b.mask, known=b.known, self_cond=sc, output_prior=output_prior)
    tgt = b.target.to(x.dtype)
    ntok = tgt.sum(1).clamp_min(1)
    ce_tok = F.cross_entropy(lg.transpose(1, 2).float(), b.ids, reduction="none") * tgt    # [B, L]
    ce_seq = ce_tok.sum(1)
    xh = x0_hat(lg, _u(net).embedding_matrix())
    lam_abs = lam_rel - 2 * torch.log(sd)
    sq = ((x0 - xh) ** 2).sum(-1) * tgt                                                    # [B, L]
    integrand = 0.5 * torch.exp(lam_abs) * sq.sum(1)                                       # nats / unit lambda
    sampler.update(lam_rel, integrand / ntok, ce_seq / ntok)
    logs = {"ce": float(ce_seq.detach().sum() / ntok.sum())}
    if objective == "score_interp":
        loss = ce_seq.sum() / ntok.sum()
    else:
        diff = (integrand / pdf).sum() / ntok.sum()
        prior = _prior_kl(x0, tgt, sampler.lo - 2 * torch.log(sd)).sum() / ntok.sum()
        loss = diff + prior + (ce_weight * ce_seq.sum() / ntok.sum() if ce_weight > 0 else 0.0)
        logs["bound_diffusion"] = float(diff.detach())
    return loss, logs


def _prior_kl(x0: torch.Tensor, tgt: torch.Tensor, lam_min: torch.Tensor | float) -> torch.Tensor:
    """KL(q(z_1 | x0) || N(0, I)) per sequence [B] at logSNR lam_min (VP form), over target positions."""
    lam = torch.as_tensor(lam_min, dtype=x0.dtype)
    a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
    kl = 0.5 * (a2 * x0.pow(2) + s2 - 1 - torch.log(s2))
    return (kl.sum(-1) * tgt).sum(1)


def bound_terms(net: nn.Module, b: Batch, draws: Draws, *, sampler: LogSNRSampler,
                output_prior: bool = True, self_cond_passes: int = 1) -> dict[str, torch.Tensor]:
    """The continuous-time variational bound on -log p(target tokens | length, context), nats per sequence.

        prior          KL(q(z_1 | x0) || N(0, I)) at lambda_min                     (closed form)
        diffusion      0.5 * int_{lambda_min}^{lambda_max} e^lambda |x0 - x0_hat(x_lambda)|^2 d lambda
                       one importance-sampled lambda per sequence: value / pdf(lambda)   (unbiased)
        reconstruction -log p(w | x at lambda_max) with the network's softmax decoder
    All sums run over target positions only. Returns a dict of [B] tensors plus 'tokens' [B].
    Draw order: u, eps (diffusion), eps (reconstruction)."""
    b = trim(b)
    u = draws.stratified().to(b.ids.device)
    L = b.ids.shape[1]
    eps = _eps(net, draws, L).to(b.ids.device)
    eps0 = _eps(net, draws, L).to(b.ids.device)
    sd = _u(net).sigma_data().to(eps)
    tgt = b.target.to(eps.dtype)
    lam_rel, pdf = sampler.sample(u)
    sigma = sd * torch.exp(-lam_rel / 2)
    x0, x = _noisy(net, b, sigma, eps)
    _, xh = denoise(net, x, sigma, attention_mask=b.mask, known=b.known, output_prior=output_prior,
                    self_cond_passes=self_cond_passes)
    lam_abs = lam_rel - 2 * torch.log(sd)
    diffusion = 0.5 * torch.exp(lam_abs) * (((x0 - xh) ** 2).sum(-1) * tgt).sum(1) / pdf
    sig0 = (sd * math.exp(-sampler.hi / 2)).expand(b.ids.shape[0])
    _, x_lo = _noisy(net, b, sig0, eps0)
    lg0, _ = denoise(net, x_lo, sig0, attention_mask=b.mask, known=b.known, output_prior=output_prior,
                     self_cond_passes=self_cond_passes)
    recon = (F.cross_entropy(lg0.transpose(1, 2).float(), b.ids, reduction="none") * tgt).sum(1)
    prior = _prior_kl(x0, tgt, sampler.lo - 2 * torch.log(sd))
    return {"prior": prior, "diffusion": diffusion, "reconstruction": recon,
            "total": prior + diffusion + recon, "tokens": tgt.sum(1)}


def flow_terms(net: nn.Module, b: Batch, draws: Draws, *, sampler: LogSNRSampler, output_prior: bool = True,
               self_cond_passes: int = 1, steps: int = 32) -> dict[str, torch.Tensor]:
    """A variational bound on -log p(target tokens | length, context) whose latent prior is the model's
    probability-flow ODE instead of its diffusion ELBO, nats per sequence (Song et al. 2021, sec. 4.3 style
    dequantisation with the Gaussian q(z0 | w) = N(E[w], sigma_0^2) at lambda_max):

        -log p(w) <= E_q [ -log p(w | z0) - log p_ODE(z0) + log q(z0 | w) ]
        reconstruction -log p(w | z0)    the softmax decoder at lambda_max (as in `bound_terms`)
        flow           -log p_ODE(z0)    the PF-ODE from sigma_0 to sigma_1 (lambda_min) with Hutchinson's
                                         trace (one Rademacher probe per sequence), prior N(0, sigma_1^2)
        entropy        log q(z0 | w)     closed form at the drawn z0 (negative: -H(q) in expectation)
    All over target positions only (context and padding held fixed). Unbiased up to the ODE solver's error
    (classical RK4, `steps` steps in log sigma: 4 * steps differentiable denoiser calls, each with
    `self_cond_passes` + 1 network passes). Returns [B] tensors 'reconstruction', 'flow', 'entropy',
    'diffusion' (flow + entropy: the counterpart of the ELBO's prior + diffusion terms), 'total', 'tokens'.
    Draw order: eps (z0), then the probe from the generator of `draws`."""
    from ...core.likelihood import ode_nll
    b = trim(b)
    L = b.ids.shape[1]
    eps0 = _eps(net, draws, L).to(b.ids.device)
    sd = float(_u(net).sigma_data())
    sig0, sig1 = sd * math.exp(-sampler.hi / 2), sd * math.exp(-sampler.lo / 2)
    B = b.ids.shape[0]
    tgt = b.target.unsqueeze(-1)
    x0, z0 = _noisy(net, b, torch.full((B,), sig0, device=eps0.device), eps0)
    kw = dict(attention_mask=b.mask, known=b.known, output_prior=output_prior)
    with torch.no_grad():
        lg0, _ = denoise(net, z0, torch.full((B,), sig0, device=z0.device), self_cond_passes=self_cond_passes, **kw)
    recon = (F.cross_entropy(lg0.transpose(1, 2).float(), b.ids, reduction="none") * b.target).sum(1)
    entropy = (-0.5 * (eps0 ** 2 + math.log(2 * math.pi * sig0 ** 2)) * tgt).flatten(1).sum(1)

    def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return denoise(net, x, sigma, self_cond_passes=self_cond_passes, self_cond_grad=True, **kw)[1].to(x.dtype)

    was = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        flow = ode_nll(D, z0.detach(), sigma_min=sig0, sigma_max=sig1, generator=draws.generator, steps=steps,
                       mask=tgt)
    finally:
        for p, r in zip(net.parameters(), was):
            p.requires_grad_(r)
    diffusion = flow + entropy
    return {"reconstruction": recon, "flow": flow, "entropy": entropy, "diffusion": diffusion,
            "total": recon + diffusion, "tokens": b.target.sum(1).to(recon.dtype)}


# ----------------------------------------------------------------------------------------------------
def sqrt_logsnr(t: torch.Tensor, s: float = 1e-4) -> torch.Tensor:
    """Diffusion-LM's sqrt schedule: alpha_bar(t) = 1 - sqrt(t + s), as logSNR (t in [0, 1])."""
    ab = (1 - torch.sqrt(t + s)).clamp(1e-7, 1 - 1e-7)
    return torch.log(ab) - torch.log1p(-ab)


def diffusion_lm_loss(net: nn.Module, b: Batch, draws: Draws) -> tuple[torch.Tensor, dict[str, float]]:
    """Diffusion-LM's L_e2e (x0-simple), continuous t, sqrt schedule, in VE coordinates:

        x_start = E[w] + sigma_0 eps_0          (q_phi(x0 | w), sigma_0 at t = 0)
        mse     = |x_start - x0_hat(x_t)|^2     (x0_hat = softmax(logits) @ E: the tied readout)
        rounding = CE(x_start @ E^T, w)         (-log p(w | x0), readout tied to the embedding)
        prior   = |sqrt(alpha_bar_T) x_start|^2 (keeps unnormalised embeddings from growing)
    averaged over target tokens, summed with weight 1 (as the reference code's '# KEY' line)."""
    b = trim(b)
    u = draws.stratified().to(b.ids.device)
    L = b.ids.shape[1]
    eps = _eps(net, draws, L).to(b.ids.device)
    eps0 = _eps(net, draws, L).to(b.ids.device)
    lam = sqrt_logsnr(u)
    lam0, lamT = sqrt_logsnr(torch.zeros(())), sqrt_logsnr(torch.ones(()))
    E = _u(net).embedding_matrix()
    x_mean = _u(net).embed(b.ids)
    x_start = x_mean + torch.exp(-lam0 / 2) / torch.sqrt(1 + torch.exp(-lam0)) * eps0
    sigma = torch.exp(-lam / 2).to(eps)
    x = x_start + sigma.view(-1, 1, 1) * eps
    if b.known is not None:
        x = torch.where(b.known.unsqueeze(-1), x_mean, x)
    lg = logits(net, x, sigma, attention_mask=b.mask, known=b.known, output_prior=False)
    xh = x0_hat(lg, E)
    tgt = b.target.to(eps.dtype)
    n = tgt.sum().clamp_min(1)
    mse = (((x_start - xh) ** 2).sum(-1) * tgt).sum() / n
    rounding = (F.cross_entropy((x_start @ E.t()).transpose(1, 2), b.ids, reduction="none") * tgt).sum() / n
    prior = ((torch.sigmoid(lamT) * x_start.pow(2)).sum(-1) * tgt).sum() / n
    return mse + rounding + prior, {"mse": float(mse.detach()), "rounding": float(rounding.detach()),
                                    "prior": float(prior.detach())}
