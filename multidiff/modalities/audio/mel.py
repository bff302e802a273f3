"""Mel front ends as frozen presets that carry every setting.

A `MelPreset` turns a waveform into a natural-log mel magnitude spectrogram `[..., n_mels, T]`.
Every setting that changes the numbers is a field, so two presets with equal fields give equal mels and
equal `fingerprint()`s; models and vocoders store the fingerprint and refuse mels made otherwise.

Built-in presets:
  * ``hifigan-22k``: HiFi-GAN's `meldataset.mel_spectrogram` exactly (22.05 kHz, n_fft 1024, hop 256,
    80 Slaney mels 0-8 kHz, reflect padding by (n_fft-hop)/2 with center=False,
    sqrt(re^2+im^2+1e-9), ln(clamp(x, 1e-5))). T = len / hop frames.
  * ``speech-8k``: the same conventions for 8 kHz speech (n_fft 512, hop 64, 64 mels 20-4000 Hz):
    125 frames per second.

User presets: `MelPreset(name=..., ...)` directly, `preset.replace(**changes)`, or `register_preset`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import ConfigError, MismatchError

# Fields that do not change the numbers (excluded from the fingerprint).
_COSMETIC = ("name",)


@dataclass(frozen=True)
class MelPreset:
    """Every setting of a log-mel front end.

    sample_rate: Hz of the waveform the preset expects (readers resample to it).
    n_fft, hop_length, win_length: STFT sizes in samples (Hann window of win_length, periodic).
    n_mels, f_min, f_max: mel bands and their range in Hz (f_max None = sample_rate / 2).
    mel_scale: "slaney" or "htk"; mel_norm: "slaney" (area normalisation) or None.
    padding: "hifigan" = reflect-pad (n_fft - hop) / 2 on both sides then center=False (T = len / hop);
             "center" = torch.stft(center=True, pad_mode="reflect") (T = len / hop + 1).
    magnitude: "hifigan" = sqrt(re^2 + im^2 + 1e-9); "abs" = |X|; "power" = |X|^2.
    log_clamp: mel values are clamped to at least this before the natural log.
    """

    name: str = "custom"
    sample_rate: int = 8000
    n_fft: int = 512
    hop_length: int = 64
    win_length: int = 512
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float | None = 4000.0
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"
    padding: str = "hifigan"
    magnitude: str = "hifigan"
    log_clamp: float = 1e-5

    def __post_init__(self) -> None:
        problems = []
        if self.mel_scale not in ("slaney", "htk"):
            problems.append(f"mel_scale={self.mel_scale!r} (use 'slaney' or 'htk')")
        if self.mel_norm not in ("slaney", None):
            problems.append(f"mel_norm={self.mel_norm!r} (use 'slaney' or None)")
        if self.padding not in ("hifigan", "center"):
            problems.append(f"padding={self.padding!r} (use 'hifigan' or 'center')")
        if self.magnitude not in ("hifigan", "abs", "power"):
            problems.append(f"magnitude={self.magnitude!r} (use 'hifigan', 'abs' or 'power')")
        if self.win_length > self.n_fft or self.hop_length <= 0 or self.n_mels <= 0:
            problems.append("need 0 < hop_length, win_length <= n_fft, n_mels > 0")
        if self.padding == "hifigan" and (self.n_fft - self.hop_length) % 2:
            problems.append("padding='hifigan' needs n_fft - hop_length even")
        fmax = self.sample_rate / 2 if self.f_max is None else self.f_max
        if not 0 <= self.f_min < fmax <= self.sample_rate / 2 + 1e-6:
            problems.append(f"need 0 <= f_min < f_max <= sample_rate/2, got {self.f_min}, {self.f_max}")
        if problems:
            raise ConfigError(f"mel preset {self.name!r}: " + "; ".join(problems))

    # --- identity -------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The fields that determine the numbers (everything but the name)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _COSMETIC}

    def fingerprint(self) -> str:
        """A 16-hex-digit hash of `settings()`: equal settings <=> equal fingerprints."""
        canon = json.dumps(self.settings(), sort_keys=True, separators=(",", ":"), default=float)
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    def describe(self) -> str:
        return f"{self.name} [{self.fingerprint()}]"

    def to_dict(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self), fingerprint=self.fingerprint())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MelPreset":
        """Inverse of `to_dict`; checks the stored fingerprint if present."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields - {"fingerprint"}
        if unknown:
            raise ConfigError(f"unknown mel preset fields {sorted(unknown)}; known: {sorted(fields)}")
        preset = cls(**{k: v for k, v in d.items() if k in fields})
        if "fingerprint" in d and d["fingerprint"] != preset.fingerprint():
            raise MismatchError(f"mel preset {preset.name!r}: stored fingerprint {d['fingerprint']} does not "
                                f"match its settings ({preset.fingerprint()}); the file was edited or corrupted")
        return preset

    def replace(self, **changes: Any) -> "MelPreset":
        return dataclasses.replace(self, **changes)

    # --- geometry -------------------------------------------------------------------------------
    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        if self.padding == "hifigan":
            return (num_samples - self.hop_length) // self.hop_length + 1
        return num_samples // self.hop_length + 1

    def num_samples(self, num_frames: int) -> int:
        """Waveform length a vocoder returns for `num_frames` frames (hop * T for hifigan padding)."""
        return num_frames * self.hop_length if self.padding == "hifigan" else (num_frames - 1) * self.hop_length

    # --- numbers --------------------------------------------------------------------------------
    def filterbank(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Mel filters [n_mels, n_freqs] (torchaudio's construction; tested against librosa)."""
        key = (self.fingerprint(), str(device), dtype)
        fb = _FB_CACHE.get(key)
        if fb is None:
            import torchaudio.functional as AF
            fb = AF.melscale_fbanks(self.n_freqs, float(self.f_min),
                                    float(self.sample_rate / 2 if self.f_max is None else self.f_max),
                                    self.n_mels, self.sample_rate, norm=self.mel_norm,
                                    mel_scale=self.mel_scale).T.contiguous().to(device=device, dtype=dtype)
            _FB_CACHE[key] = fb
        return fb

    def window(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.hann_window(self.win_length, device=device, dtype=dtype)

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        """Complex STFT [..., n_freqs, T] with this preset's framing."""
        lead = wave.shape[:-1]
        x = wave.reshape(-1, wave.shape[-1]).float()
        if self.padding == "hifigan":
            p = (self.n_fft - self.hop_length) // 2
            if x.shape[-1] <= p:  # reflect padding needs more samples than the pad: zero-extend first
                x = F.pad(x, (0, p + 1 - x.shape[-1]))
            x = F.pad(x.unsqueeze(1), (p, p), mode="reflect").squeeze(1)
            center = False
        else:
            center = True
        spec = torch.stft(x, self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window(x.device), center=center, pad_mode="reflect",
                          normalized=False, onesided=True, return_complex=True)
        return spec.reshape(*lead, *spec.shape[-2:])

    def magnitude_of(self, spec: torch.Tensor) -> torch.Tensor:
        if self.magnitude == "hifigan":
            return torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
        mag = spec.abs()
        return mag.pow(2) if self.magnitude == "power" else mag

    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Linear mel magnitudes [..., n_mels, T] of `wave` [..., L] (float in [-1, 1])."""
        mag = self.magnitude_of(self.stft(wave))
        return torch.matmul(self.filterbank(mag.device), mag)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """ln(clamp(mel, log_clamp)) [..., n_mels, T] of `wave` [..., L]."""
        return torch.log(torch.clamp(self.mel(wave), min=self.log_clamp))

    __call__ = log_mel

    def check_same(self, other: "MelPreset", what: str = "this mel") -> None:
        """Raise MismatchError naming both presets unless their settings are equal."""
        if other.fingerprint() != self.fingerprint():
            diff = {k: (v, other.settings()[k]) for k, v in self.settings().items() if other.settings()[k] != v}
            raise MismatchError(
                f"{what} was made with mel preset {other.describe()} but expects {self.describe()}; "
                f"differing settings (expected, given): {diff}. Recompute the mel with the expected preset "
                f"or use a vocoder/model trained on {other.name!r}.")


_FB_CACHE: dict[tuple, torch.Tensor] = {}

PRESETS: dict[str, MelPreset] = {}


def register_preset(preset: MelPreset) -> MelPreset:
    """Make `preset` available by name to `get_preset` (overwrites a previous one of the same name)."""
    PRESETS[preset.name] = preset
    return preset


register_preset(MelPreset(name="hifigan-22k", sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024,
                          n_mels=80, f_min=0.0, f_max=8000.0))
register_preset(MelPreset(name="speech-8k", sample_rate=8000, n_fft=512, hop_length=64, win_length=512,
                          n_mels=64, f_min=20.0, f_max=4000.0))


def get_preset(spec: "str | dict[str, Any] | MelPreset", **overrides: Any) -> MelPreset:
    """A preset from a registered name, a dict of fields (optionally with "base": name), or a MelPreset;
    `overrides` replace fields (the result is renamed "<name>+custom" unless a name is given)."""
    if isinstance(spec, MelPreset):
        preset = spec
    elif isinstance(spec, str):
        if spec not in PRESETS:
            raise ConfigError(f"unknown mel preset {spec!r}; available: {', '.join(sorted(PRESETS))}, "
                              f"or give a dict of MelPreset fields")
        preset = PRESETS[spec]
    elif isinstance(spec, dict):
        d = dict(spec)
        base = d.pop("base", None)
        d.pop("fingerprint", None)
        preset = get_preset(base, **d) if base else MelPreset.from_dict(d)
    else:
        raise ConfigError(f"mel preset must be a name, a dict or a MelPreset, got {type(spec).__name__}")
    if overrides:
        overrides.setdefault("name", f"{preset.name}+custom")
        preset = preset.replace(**overrides)
    return preset
