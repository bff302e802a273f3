"""Vocoders: natural-log mel [n_mels, T] (or [B, n_mels, T]) -> waveform, behind one interface.

Every vocoder holds the `MelPreset` it expects. `decode(mel, preset=...)` refuses (MismatchError naming
both presets) a mel made with another preset; without `preset` only n_mels is checked.

* `GriffinLimVocoder`: mel -> linear magnitude with the filterbank's pseudo-inverse (clamped >= 0, then a
  few projected-gradient refinements), then torchaudio's fast Griffin-Lim (momentum 0.99). No training.
* `HiFiGANVocoder`: HiFi-GAN's generator (V1/V2/V3 configs or any other), weight-normalised as in the
  official code; `from_checkpoint(generator_file, config_json)` loads the official `{'generator': ...}`
  files (keys `weight_g`/`weight_v`) with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from ...errors import CheckpointError, ConfigError, MismatchError
from .mel import MelPreset, get_preset


class Vocoder:
    """Interface: `decode(mel [n_mels, T] | [B, n_mels, T], preset=None) -> [L] | [B, L]` at
    `preset.sample_rate`, L = preset.num_samples(T)."""

    preset: MelPreset

    @property
    def fingerprint(self) -> str:
        return self.preset.fingerprint()

    def check(self, mel: torch.Tensor, preset: "MelPreset | str | None" = None) -> None:
        if preset is not None:
            self.preset.check_same(get_preset(preset), what=f"the mel given to {type(self).__name__}")
        if mel.dim() not in (2, 3) or mel.shape[-2] != self.preset.n_mels:
            raise MismatchError(f"{type(self).__name__} expects a log-mel [.., {self.preset.n_mels}, T] from preset "
                                f"{self.preset.describe()}, got shape {tuple(mel.shape)}")

    def decode(self, mel: torch.Tensor, preset: "MelPreset | str | None" = None) -> torch.Tensor:
        raise NotImplementedError

    __call__ = decode


# ------------------------------------------------------------------------------------------------
# Griffin-Lim
# ------------------------------------------------------------------------------------------------

class GriffinLimVocoder(Vocoder):
    """Griffin-Lim from a log-mel. `n_iter` GL iterations with `momentum` (fast GL); `refine` projected
    gradient steps on ||fb @ S - mel||^2 (S >= 0) after the pseudo-inverse; `seed` fixes the random
    initial phase."""

    def __init__(self, preset: MelPreset | str = "speech-8k", n_iter: int = 32, momentum: float = 0.99,
                 refine: int = 10, seed: int = 0):
        self.preset = get_preset(preset)
        self.n_iter, self.momentum, self.refine, self.seed = int(n_iter), float(momentum), int(refine), seed

    def linear_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """[.., n_mels, T] natural-log mel -> [.., n_freqs, T] non-negative magnitude (preset's units)."""
        p = self.preset
        fb = p.filterbank(log_mel.device)
        mel = torch.exp(log_mel.float())
        pinv = torch.linalg.pinv(fb)
        s = torch.clamp(pinv @ mel, min=0)
        if self.refine:
            # projected gradient on 0.5||fb s - mel||^2, step 1/L with L = ||fb||_2^2
            step = 1.0 / torch.linalg.matrix_norm(fb, ord=2).pow(2)
            for _ in range(self.refine):
                s = torch.clamp(s - step * (fb.T @ (fb @ s - mel)), min=0)
        return s

    def decode(self, mel: torch.Tensor, preset: "MelPreset | str | None" = None) -> torch.Tensor:
        import torchaudio.functional as AF
        self.check(mel, preset)
        p = self.preset
        batched = mel.dim() == 3
        s = self.linear_magnitude(mel if batched else mel.unsqueeze(0))
        T = s.shape[-1]
        if p.padding == "hifigan":
            # hifigan frame t is centred at x[t*hop + hop/2]. Run GL on center=True frames of y with
            # y[m] = x[m - hop/2] and one extra frame at each end (y-frame t+1 <-> x-frame t), then
            # x[n] = y[n + hop/2].
            s = torch.cat([s[..., :1], s, s[..., -1:]], dim=-1)
            length = (T + 1) * p.hop_length
        else:
            length = (T - 1) * p.hop_length
        power = 2.0 if p.magnitude == "power" else 1.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            y = AF.griffinlim(s, p.window(s.device), p.n_fft, p.hop_length, p.win_length, power, self.n_iter,
                              self.momentum, length, True)
        if p.padding == "hifigan":
            h = p.hop_length // 2
            y = y[..., h:h + T * p.hop_length]
        return y if batched else y[0]


# ------------------------------------------------------------------------------------------------
# HiFi-GAN generator
# ------------------------------------------------------------------------------------------------

@dataclass
class HiFiGANConfig:
    """The generator fields of HiFi-GAN's config.json (other fields are kept in `extra`)."""

    resblock: str = "1"
    upsample_rates: Sequence[int] = (8, 8, 2, 2)
    upsample_kernel_sizes: Sequence[int] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: Sequence[int] = (3, 7, 11)
    resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    num_mels: int = 80
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HiFiGANConfig":
        names = {"resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                 "resblock_kernel_sizes", "resblock_dilation_sizes", "num_mels"}
        kw = {k: d[k] for k in names if k in d}
        kw["resblock"] = str(kw.get("resblock", "1"))
        return cls(**kw, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**extra, **{k: (list(map(list, v)) if k == "resblock_dilation_sizes" else
                               list(v) if isinstance(v, (tuple, list)) else v) for k, v in d.items()}}

    @property
    def hop(self) -> int:
        out = 1
        for r in self.upsample_rates:
            out *= int(r)
        return out


HIFIGAN_V1 = HiFiGANConfig()
HIFIGAN_V2 = HiFiGANConfig(upsample_initial_channel=128)
HIFIGAN_V3 = HiFiGANConfig(resblock="2", upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8),
                           upsample_initial_channel=256, resblock_kernel_sizes=(3, 5, 7),
                           resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)))
HIFIGAN_CONFIGS = {"v1": HIFIGAN_V1, "v2": HIFIGAN_V2, "v3": HIFIGAN_V3}

LRELU_SLOPE = 0.1


def _padding(k: int, d: int = 1) -> int:
    return (k * d - d) // 2


def _wn_conv(cin: int, cout: int, k: int, d: int = 1) -> nn.Module:
    conv = nn.Conv1d(cin, cout, k, 1, dilation=d, padding=_padding(k, d))
    nn.init.normal_(conv.weight, 0.0, 0.01)
    return weight_norm(conv)


class ResBlock1(nn.Module):
    def __init__(self, ch: int, k: int, dilations: Sequence[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(_wn_conv(ch, ch, k, d) for d in dilations)
        self.convs2 = nn.ModuleList(_wn_conv(ch, ch, k, 1) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE)) + x
        return x


class ResBlock2(nn.Module):
    def __init__(self, ch: int, k: int, dilations: Sequence[int]):
        super().__init__()
        self.convs = nn.ModuleList(_wn_conv(ch, ch, k, d) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.convs:
            x = c(F.leaky_relu(x, LRELU_SLOPE)) + x
        return x


class HiFiGANGenerator(nn.Module):
    """HiFi-GAN's generator, module for module as the official `models.Generator` (so its state dict,
    converted by `official_state_dict`, has the official keys). [B, num_mels, T] -> [B, 1, hop * T]."""

    def __init__(self, config: HiFiGANConfig):
        super().__init__()
        self.config = c = config
        C = c.upsample_initial_channel
        self.num_kernels = len(c.resblock_kernel_sizes)
        self.conv_pre = weight_norm(nn.Conv1d(c.num_mels, C, 7, 1, padding=3))
        block = ResBlock1 if c.resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes)):
            up = nn.ConvTranspose1d(C // 2 ** i, C // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            nn.init.normal_(up.weight, 0.0, 0.01)
            self.ups.append(weight_norm(up))
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = C // 2 ** (i + 1)
            for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes):
                self.resblocks.append(block(ch, k, d))
        self.conv_post = weight_norm(nn.Conv1d(C // 2 ** len(self.ups), 1, 7, 1, padding=3))
        nn.init.normal_(self.conv_post.parametrizations.weight.original1, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            xs = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        x = F.leaky_relu(x)  # slope 0.01, as in the official code
        return torch.tanh(self.conv_post(x))

    def remove_weight_norm(self) -> None:
        """Fold w = g * v / ||v|| into plain weights (inference speed; output unchanged)."""
        for m in self.modules():
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict with the official keys (`weight_g`/`weight_v`), as HiFi-GAN's `g_XXXXXXXX` files hold."""
        out = {}
        for k, v in self.state_dict().items():
            k = k.replace("parametrizations.weight.original0", "weight_g").replace(
                "parametrizations.weight.original1", "weight_v")
            out[k] = v
        return out

    def load_official_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        """Load official keys (`weight_g`/`weight_v`) or this module's own; strict, with a clear error."""
        own = self.state_dict()
        mapped = {}
        for k, v in sd.items():
            k2 = k.replace("weight_g", "parametrizations.weight.original0").replace(
                "weight_v", "parametrizations.weight.original1")
            if k2 not in own and k in own:
                k2 = k
            mapped[k2] = v
        missing = sorted(set(own) - set(mapped))
        unexpected = sorted(set(mapped) - set(own))
        bad_shape = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in mapped.items()
                     if k in own and tuple(v.shape) != tuple(own[k].shape)]
        if missing or unexpected or bad_shape:
            raise CheckpointError(
                "HiFi-GAN generator checkpoint does not match its config: "
                f"{len(missing)} missing keys {missing[:4]}, {len(unexpected)} unexpected {unexpected[:4]}, "
                f"shape mismatches {bad_shape[:4]}. Use the config.json that came with the checkpoint.")
        self.load_state_dict(mapped, strict=True)


def preset_from_hifigan_config(d: dict[str, Any], name: str | None = None) -> MelPreset:
    """The mel preset an official HiFi-GAN config.json implies (its `mel_spectrogram` conventions)."""
    try:
        p = MelPreset(name=name or "hifigan-config", sample_rate=int(d["sampling_rate"]), n_fft=int(d["n_fft"]),
                      hop_length=int(d["hop_size"]), win_length=int(d["win_size"]), n_mels=int(d["num_mels"]),
                      f_min=float(d["fmin"]), f_max=None if d.get("fmax") is None else float(d["fmax"]),
                      mel_scale="slaney", mel_norm="slaney", padding="hifigan", magnitude="hifigan", log_clamp=1e-5)
    except KeyError as e:
        raise ConfigError(f"HiFi-GAN config lacks {e.args[0]!r} (needs sampling_rate, n_fft, hop_size, win_size, "
                          f"num_mels, fmin, fmax)") from None
    from .mel import PRESETS
    for known in PRESETS.values():  # give it the registered name when the settings are equal
        if known.fingerprint() == p.fingerprint():
            return known
    return p


class HiFiGANVocoder(nn.Module, Vocoder):
    """HiFi-GAN generator as a `Vocoder`. `decode` runs in eval mode without gradients."""

    def __init__(self, config: HiFiGANConfig | str | dict = "v1", preset: MelPreset | str = "hifigan-22k"):
        super().__init__()
        if isinstance(config, str):
            if config.lower() not in HIFIGAN_CONFIGS:
                raise ConfigError(f"unknown HiFi-GAN config {config!r}; use v1, v2, v3 or a dict")
            config = HIFIGAN_CONFIGS[config.lower()]
        elif isinstance(config, dict):
            config = HiFiGANConfig.from_dict(config)
        self.preset = get_preset(preset)
        if config.num_mels != self.preset.n_mels:
            config = HiFiGANConfig(**{**asdict(config), "num_mels": self.preset.n_mels})
        if config.hop != self.preset.hop_length or self.preset.padding != "hifigan":
            raise ConfigError(f"HiFi-GAN upsample_rates {list(config.upsample_rates)} multiply to {config.hop}, but "
                              f"preset {self.preset.describe()} has hop {self.preset.hop_length} and padding "
                              f"{self.preset.padding!r}; the product must equal the hop and padding be 'hifigan'")
        self.config = config
        self.generator = HiFiGANGenerator(config)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, T] -> [B, 1, hop * T] (differentiable; for training)."""
        return self.generator(mel)

    @torch.no_grad()
    def decode(self, mel: torch.Tensor, preset: "MelPreset | str | None" = None) -> torch.Tensor:
        self.check(mel, preset)
        was_training = self.training
        self.eval()
        p = next(self.parameters())
        x = mel if mel.dim() == 3 else mel.unsqueeze(0)
        y = self.generator(x.to(p.device, p.dtype)).squeeze(1).float()
        self.train(was_training)
        return y if mel.dim() == 3 else y[0]

    def remove_weight_norm(self) -> "HiFiGANVocoder":
        self.generator.remove_weight_norm()
        return self

    def save_checkpoint(self, generator_file: str | Path, config_json: str | Path | None = None) -> None:
        """Write the official layout: `{'generator': state_dict}` with weight_g/weight_v keys, and config.json."""
        torch.save({"generator": self.generator.official_state_dict()}, str(generator_file))
        if config_json is not None:
            p = self.preset
            cfg = {**self.config.to_dict(), "num_mels": p.n_mels, "n_fft": p.n_fft, "hop_size": p.hop_length,
                   "win_size": p.win_length, "sampling_rate": p.sample_rate, "fmin": p.f_min, "fmax": p.f_max}
            Path(config_json).write_text(json.dumps(cfg, indent=2))

    @classmethod
    def from_checkpoint(cls, generator_file: str | Path, config_json: str | Path | dict | None = None,
                        preset: MelPreset | str | None = None, fold_weight_norm: bool = True) -> "HiFiGANVocoder":
        """Load an official HiFi-GAN generator file (`{'generator': state_dict}`, weight_g/weight_v keys).

        config_json: the checkpoint's config.json (default: config.json beside the file) or a dict.
        preset: the mel preset; default derived from the config (equals `hifigan-22k` for the official
        22.05 kHz configs). Loading uses `torch.load(weights_only=True)`: a file that would run code is refused.
        """
        generator_file = Path(generator_file)
        if config_json is None:
            config_json = generator_file.parent / "config.json"
        if isinstance(config_json, dict):
            cfg = config_json
        else:
            try:
                cfg = json.loads(Path(config_json).read_text())
            except (OSError, ValueError) as e:
                raise CheckpointError(f"cannot read HiFi-GAN config {config_json}: {e}") from None
        try:
            ckpt = torch.load(str(generator_file), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise CheckpointError(f"{generator_file}: refused to load: it is not a plain tensor checkpoint "
                                  f"(weights_only loading rejected it: {str(e).splitlines()[0]}). Only load "
                                  f"files you trust with other tools.") from None
        except (OSError, RuntimeError, EOFError) as e:
            raise CheckpointError(f"{generator_file}: cannot load checkpoint ({e})") from None
        sd = ckpt.get("generator") if isinstance(ckpt, dict) else None
        if not isinstance(sd, dict):
            raise CheckpointError(f"{generator_file}: expected a dict with a 'generator' state dict (HiFi-GAN's "
                                  f"g_XXXXXXXX layout), found keys {list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt)}")
        preset = get_preset(preset) if preset is not None else preset_from_hifigan_config(cfg)
        voc = cls(HiFiGANConfig.from_dict(cfg), preset)
        voc.generator.load_official_state_dict(sd)
        if fold_weight_norm:
            voc.remove_weight_norm()
        return voc.eval()


def get_vocoder(name: str, preset: MelPreset | str, **kw: Any) -> Vocoder:
    """'griffinlim' (kw: n_iter, momentum, refine, seed) or 'hifigan' (kw: checkpoint, config)."""
    if name == "griffinlim":
        return GriffinLimVocoder(preset, **kw)
    if name == "hifigan":
        if "checkpoint" not in kw:
            raise ConfigError("vocoder 'hifigan' needs checkpoint=<generator file> (and config=<config.json>)")
        return HiFiGANVocoder.from_checkpoint(kw["checkpoint"], kw.get("config"), preset=preset)
    raise ConfigError(f"unknown vocoder {name!r}; use 'griffinlim' or 'hifigan'")
