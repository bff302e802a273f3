"""Training HiFi-GAN generators: the official discriminators and losses (jik876/hifi-gan `models.py`,
`train.py`), written against our `HiFiGANGenerator` and mel presets.

* `MultiPeriodDiscriminator` (periods 2, 3, 5, 7, 11) and `MultiScaleDiscriminator` (3 scales, the first
  spectral-normalised, `AvgPool1d(4, 2, padding=2)` between scales), layer for layer as the official code;
  `scale` < 1 narrows every layer for CPU-sized runs (1.0 = official widths).
  Both return `(real_scores, fake_scores, real_fmaps, fake_fmaps)`, one entry per sub-discriminator.
* Losses (LSGAN): `discriminator_loss` = sum_k mean((1 - D_k(y))^2) + mean(D_k(y_hat)^2);
  `generator_loss` = sum_k mean((1 - D_k(y_hat))^2); `feature_loss` = 2 * sum over layers of mean |f - f_hat|;
  `mel_loss` = 45 * mean |logmel(y) - logmel(y_hat)| with the preset's mel and f_max = sample_rate / 2
  (HiFi-GAN's `fmax_for_loss = None`).
* `GANTrainer`: AdamW(lr, betas (0.8, 0.99)) for the generator and for both discriminators, ExponentialLR
  0.999 stepped once per epoch; `step(wave [B, 1, L])` runs one discriminator and one generator update.
* `random_segments`: batches of `segment_size`-sample crops (zero-padded on the right when shorter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from .mel import MelPreset, get_preset
from .vocoders import LRELU_SLOPE, HiFiGANVocoder

PERIODS = (2, 3, 5, 7, 11)
MEL_WEIGHT = 45.0
FM_WEIGHT = 2.0

Scores = list[torch.Tensor]
FMaps = list[list[torch.Tensor]]


def _width(c: int, scale: float, multiple: int = 16) -> int:
    """Channel count c scaled, rounded up to a multiple of `multiple` (grouped convs need it)."""
    return c if scale == 1 else max(multiple, int(math.ceil(c * scale / multiple)) * multiple)


def _padding(k: int, d: int = 1) -> int:
    return (k * d - d) // 2


class DiscriminatorP(nn.Module):
    """Period discriminator: the waveform [B, 1, L] reshaped to [B, 1, L/p, p] (reflect-padded to a multiple
    of p), five (5 x 1) convs with stride (3, 1), then a (3 x 1) conv to one channel."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3, use_spectral_norm: bool = False,
                 scale: float = 1.0):
        super().__init__()
        self.period = period
        norm = spectral_norm if use_spectral_norm else weight_norm
        ch = [1] + [_width(c, scale) for c in (32, 128, 512, 1024, 1024)]
        pad = (_padding(5, 1), 0)
        self.convs = nn.ModuleList(
            [norm(nn.Conv2d(ch[i], ch[i + 1], (kernel_size, 1), (stride, 1), padding=pad)) for i in range(4)]
            + [norm(nn.Conv2d(ch[4], ch[5], (kernel_size, 1), 1, padding=(2, 0)))])
        self.conv_post = norm(nn.Conv2d(ch[5], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t += n_pad
        x = x.view(b, c, t // self.period, self.period)
        return _conv_stack(self.convs, self.conv_post, x)


def _conv_stack(convs: nn.ModuleList, conv_post: nn.Module, x: torch.Tensor
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU conv layers then the output conv: (flattened scores [B, N], feature maps of every layer)."""
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


class DiscriminatorS(nn.Module):
    """Scale discriminator: grouped 1-D convs over the waveform [B, 1, L]."""

    LAYERS = ((1, 128, 15, 1, 1, 7), (128, 128, 41, 2, 4, 20), (128, 256, 41, 2, 16, 20),
              (256, 512, 41, 4, 16, 20), (512, 1024, 41, 4, 16, 20), (1024, 1024, 41, 1, 16, 20),
              (1024, 1024, 5, 1, 1, 2))  # (in, out, kernel, stride, groups, padding)

    def __init__(self, use_spectral_norm: bool = False, scale: float = 1.0):
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        w = lambda c: 1 if c == 1 else _width(c, scale)  # noqa: E731
        self.convs = nn.ModuleList(norm(nn.Conv1d(w(ci), w(co), k, s, groups=g, padding=p))
                                   for ci, co, k, s, g, p in self.LAYERS)
        self.conv_post = norm(nn.Conv1d(w(1024), 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _conv_stack(self.convs, self.conv_post, x)


class _Multi(nn.Module):
    discriminators: nn.ModuleList

    def _inputs(self, y: torch.Tensor, y_hat: torch.Tensor):
        for d in self.discriminators:
            yield d, y, y_hat

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> tuple[Scores, Scores, FMaps, FMaps]:
        """Real y and generated y_hat [B, 1, L] -> (real scores, fake scores, real fmaps, fake fmaps)."""
        rs, gs, frs, fgs = [], [], [], []
        for d, a, b in self._inputs(y, y_hat):
            r, fr = d(a)
            g, fg = d(b)
            rs.append(r)
            gs.append(g)
            frs.append(fr)
            fgs.append(fg)
        return rs, gs, frs, fgs


class MultiPeriodDiscriminator(_Multi):
    def __init__(self, periods: Sequence[int] = PERIODS, scale: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(DiscriminatorP(p, scale=scale) for p in periods)


class MultiScaleDiscriminator(_Multi):
    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList([DiscriminatorS(use_spectral_norm=True, scale=scale),
                                             DiscriminatorS(scale=scale), DiscriminatorS(scale=scale)])
        self.meanpools = nn.ModuleList([nn.AvgPool1d(4, 2, padding=2), nn.AvgPool1d(4, 2, padding=2)])

    def _inputs(self, y: torch.Tensor, y_hat: torch.Tensor):
        for i, d in enumerate(self.discriminators):
            if i:
                y, y_hat = self.meanpools[i - 1](y), self.meanpools[i - 1](y_hat)
            yield d, y, y_hat


# ------------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------------

def discriminator_loss(real: Scores, fake: Scores) -> torch.Tensor:
    """LSGAN: sum over sub-discriminators of mean((1 - D(y))^2) + mean(D(y_hat)^2)."""
    return sum(torch.mean((1 - r) ** 2) + torch.mean(g ** 2) for r, g in zip(real, fake))


def generator_loss(fake: Scores) -> torch.Tensor:
    """LSGAN: sum over sub-discriminators of mean((1 - D(y_hat))^2)."""
    return sum(torch.mean((1 - g) ** 2) for g in fake)


def feature_loss(real_fmaps: FMaps, fake_fmaps: FMaps) -> torch.Tensor:
    """Feature matching: 2 * sum over sub-discriminators and layers of mean |f(y) - f(y_hat)|."""
    return FM_WEIGHT * sum(torch.mean(torch.abs(r - g))
                           for dr, dg in zip(real_fmaps, fake_fmaps) for r, g in zip(dr, dg))


def loss_preset(preset: MelPreset | str) -> MelPreset:
    """The preset of the mel loss: the training preset with f_max = sample_rate / 2 (fmax_for_loss None)."""
    p = get_preset(preset)
    return p if p.f_max is None else p.replace(f_max=None, name=f"{p.name}-loss")


def mel_loss(y: torch.Tensor, y_hat: torch.Tensor, preset: MelPreset | str) -> torch.Tensor:
    """45 * mean |logmel(y) - logmel(y_hat)| ([B, 1, L] or [B, L] waves), mel of `preset` as given."""
    p = get_preset(preset)
    return MEL_WEIGHT * F.l1_loss(p.log_mel(y_hat.squeeze(1)), p.log_mel(y.squeeze(1)))


# ------------------------------------------------------------------------------------------------
# Data and training
# ------------------------------------------------------------------------------------------------

def random_segments(waves: Sequence[torch.Tensor], segment_size: int, batch_size: int,
                    generator: torch.Generator) -> torch.Tensor:
    """[batch_size, 1, segment_size] random crops of random waves [L] (right zero-padding when shorter)."""
    out = torch.zeros(batch_size, 1, segment_size)
    idx = torch.randint(len(waves), (batch_size,), generator=generator)
    for b, i in enumerate(idx.tolist()):
        w = waves[i]
        if w.shape[-1] >= segment_size:
            s = int(torch.randint(w.shape[-1] - segment_size + 1, (1,), generator=generator))
            out[b, 0] = w[s:s + segment_size]
        else:
            out[b, 0, :w.shape[-1]] = w
    return out


@dataclass
class GANConfig:
    """Optimisation settings (HiFi-GAN's config.json names)."""

    learning_rate: float = 2e-4
    adam_b1: float = 0.8
    adam_b2: float = 0.99
    lr_decay: float = 0.999
    discriminator_scale: float = 1.0  # width multiplier of MPD/MSD (1.0 = official)
    discriminator_start: int = 0      # steps of mel-L1-only generator training first (0 = official; a
                                      # ParallelWaveGAN-style warm-up for short CPU runs)


class GANTrainer:
    """One HiFi-GAN training state: generator (a `HiFiGANVocoder`), MPD + MSD, two AdamW, two ExponentialLR.

    `step(y)` for a batch of real segments y [B, 1, L] (L a multiple of the hop) returns the loss terms;
    `end_epoch()` decays both learning rates by `lr_decay`. Before `discriminator_start` steps only the
    mel loss trains the generator (the discriminators are not run)."""

    def __init__(self, vocoder: HiFiGANVocoder, config: GANConfig | None = None):
        self.vocoder = vocoder
        self.config = c = config or GANConfig()
        self.mpd = MultiPeriodDiscriminator(scale=c.discriminator_scale)
        self.msd = MultiScaleDiscriminator(scale=c.discriminator_scale)
        betas = (c.adam_b1, c.adam_b2)
        self.opt_g = torch.optim.AdamW(vocoder.generator.parameters(), c.learning_rate, betas=betas)
        self.opt_d = torch.optim.AdamW([*self.msd.parameters(), *self.mpd.parameters()], c.learning_rate,
                                       betas=betas)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.opt_g, gamma=c.lr_decay)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.opt_d, gamma=c.lr_decay)
        self.preset = vocoder.preset
        self.loss_preset = loss_preset(vocoder.preset)
        self.steps = 0

    def to(self, device: torch.device | str) -> "GANTrainer":
        for m in (self.vocoder, self.mpd, self.msd):
            m.to(device)
        return self

    def step(self, y: torch.Tensor) -> dict[str, float]:
        gen = self.vocoder.generator
        for m in (gen, self.mpd, self.msd):
            m.train()
        mel = self.preset.log_mel(y.squeeze(1))
        y_hat = gen(mel)
        self.steps += 1
        if self.steps <= self.config.discriminator_start:
            self.opt_g.zero_grad(set_to_none=True)
            loss_mel = mel_loss(y, y_hat, self.loss_preset)
            loss_mel.backward()
            self.opt_g.step()
            return {"loss_g": loss_mel.item(), "mel_l1": loss_mel.item() / MEL_WEIGHT}
        # discriminators
        self.opt_d.zero_grad(set_to_none=True)
        loss_d = (discriminator_loss(*self.mpd(y, y_hat.detach())[:2])
                  + discriminator_loss(*self.msd(y, y_hat.detach())[:2]))
        loss_d.backward()
        self.opt_d.step()
        # generator
        self.opt_g.zero_grad(set_to_none=True)
        loss_mel = mel_loss(y, y_hat, self.loss_preset)
        _, f_fake, f_rmaps, f_gmaps = self.mpd(y, y_hat)
        _, s_fake, s_rmaps, s_gmaps = self.msd(y, y_hat)
        loss_fm = feature_loss(f_rmaps, f_gmaps) + feature_loss(s_rmaps, s_gmaps)
        loss_adv = generator_loss(f_fake) + generator_loss(s_fake)
        loss_g = loss_adv + loss_fm + loss_mel
        loss_g.backward()
        self.opt_g.step()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "loss_adv": loss_adv.item(),
                "loss_fm": loss_fm.item(), "mel_l1": loss_mel.item() / MEL_WEIGHT}

    def state_dict(self) -> dict:
        """Discriminators, optimisers, schedulers and the step count: with the generator file, everything
        needed to continue training (HiFi-GAN's `do_XXXXXXXX` file holds the same)."""
        return {"mpd": self.mpd.state_dict(), "msd": self.msd.state_dict(), "optim_g": self.opt_g.state_dict(),
                "optim_d": self.opt_d.state_dict(), "sched_g": self.sched_g.state_dict(),
                "sched_d": self.sched_d.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.mpd.load_state_dict(state["mpd"])
        self.msd.load_state_dict(state["msd"])
        self.opt_g.load_state_dict(state["optim_g"])
        self.opt_d.load_state_dict(state["optim_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.steps = int(state["steps"])

    def end_epoch(self) -> None:
        self.sched_g.step()
        if self.steps > self.config.discriminator_start:  # the discriminators' decay starts with their training
            self.sched_d.step()
