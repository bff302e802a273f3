"""The `audio` modality: waveforms <-> normalised log-mel spectrograms [B, 1, n_mels, T].

read -> items {path, wave [L] float32 at the preset rate, label | None, speaker | None}
prepare -> label vocabulary (sorted) + normalisation statistics of the log-mels
encode -> Encoded(x0 [B, 1, F, T], mask [B, 1, 1, T] or None, cond {"label": LongTensor [B]})
decode -> de-normalise, vocoder -> list of waveforms [L]

Every clip is centre-padded (digital silence) or centre-cropped to `clip_seconds`. With
`padding="silence"` (default) the padding is data the model learns to generate (silence around the
sound, as in the calibration runs) and `Encoded.mask` is None; with `padding="mask"` the mask marks the
real frames and padded frames do not count in the loss.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ...errors import ConfigError, DataError, MismatchError
from ..base import Encoded, Modality
from . import io as aio
from .mel import MelPreset, get_preset
from .vocoders import GriffinLimVocoder, HiFiGANVocoder, Vocoder

log = logging.getLogger(__name__)

SILENCE_PEAK = 1e-4  # files whose peak is below this are skipped as silent


@dataclass
class AudioConfig:
    """Settings of the audio modality.

    preset: a registered mel preset name ("speech-8k", "hifigan-22k") or a dict of MelPreset fields
            (optionally with "base": name).
    clip_seconds: fixed clip length; longer clips are centre-cropped, shorter ones centre-padded.
    padding: "silence" (padding is data) or "mask" (padded frames masked out of the loss).
    label_pattern: regex over the file stem with a `label` group (None: unconditional);
    speaker_pattern: regex with a `speaker` group (used for held-out speaker splits).
    level: waveform level before the mel: "peak" (to `peak`), "loudness" (to `lufs`), or "none".
    normalisation: "per_bin" (mean/std per mel band) or "global" (one mean/std); the result is scaled
            to standard deviation `target_std` (0.5 = EDM's sigma_data).
    unet: defaults for `denoiser_net` (UNet2D arguments). (Label dropout for classifier-free guidance
            is DiffusionConfig.cond_dropout; the null label is `null_cond()`.)
    vocoder: "griffinlim" (griffinlim_iters iterations) or "hifigan" (vocoder_checkpoint, vocoder_config).
    """

    preset: Any = "speech-8k"
    clip_seconds: float = 1.0
    padding: str = "silence"
    label_pattern: str | None = r"^(?P<label>[^_]+)_"
    speaker_pattern: str | None = r"^[^_]+_(?P<speaker>[^_]+)_"
    level: str = "peak"
    peak: float = 0.95
    lufs: float = -23.0
    normalisation: str = "per_bin"
    target_std: float = 0.5
    unet: dict[str, Any] = field(default_factory=dict)
    vocoder: str = "griffinlim"
    griffinlim_iters: int = 32
    vocoder_checkpoint: str | None = None
    vocoder_config: str | None = None


class AudioModality(Modality):
    name = "audio"
    Config = AudioConfig

    def __init__(self, config: AudioConfig | dict | None = None):
        if isinstance(config, dict):
            known = set(AudioConfig.__dataclass_fields__)
            bad = set(config) - known
            if bad:
                raise ConfigError(f"unknown audio config keys {sorted(bad)}; known: {sorted(known)}")
            config = AudioConfig(**config)
        super().__init__(config)
        c = self.config
        if c.padding not in ("silence", "mask"):
            raise ConfigError(f"audio padding must be 'silence' or 'mask', got {c.padding!r}")
        if c.normalisation not in ("per_bin", "global"):
            raise ConfigError(f"audio normalisation must be 'per_bin' or 'global', got {c.normalisation!r}")
        if c.level not in ("peak", "loudness", "none"):
            raise ConfigError(f"audio level must be 'peak', 'loudness' or 'none', got {c.level!r}")
        if c.clip_seconds <= 0:
            raise ConfigError(f"clip_seconds must be > 0, got {c.clip_seconds}")
        self.preset: MelPreset = get_preset(c.preset)
        self.labels: list[str] = []
        self.mean: torch.Tensor | None = None  # [F, 1]
        self.std: torch.Tensor | None = None   # [F, 1]
        self.read_report: dict[str, Any] = {}
        self._vocoder: Vocoder | None = None
        try:
            self._label_re = re.compile(c.label_pattern) if c.label_pattern else None
            self._speaker_re = re.compile(c.speaker_pattern) if c.speaker_pattern else None
        except re.error as e:
            raise ConfigError(f"bad label/speaker pattern: {e}") from None

    # --- geometry -------------------------------------------------------------------------------
    @property
    def clip_samples(self) -> int:
        hop = self.preset.hop_length
        return max(hop, int(round(self.config.clip_seconds * self.preset.sample_rate / hop)) * hop)

    @property
    def num_frames(self) -> int:
        return self.preset.num_frames(self.clip_samples)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def units(self) -> tuple[str, int]:
        return "dim", self.preset.n_mels * self.num_frames

    # --- reading --------------------------------------------------------------------------------
    def _meta_from_name(self, path: Path) -> tuple[str | None, str | None]:
        stem = path.stem
        label = speaker = None
        if self._label_re and (m := self._label_re.search(stem)) and "label" in m.groupdict():
            label = m.group("label")
        if self._speaker_re and (m := self._speaker_re.search(stem)) and "speaker" in m.groupdict():
            speaker = m.group("speaker")
        return label, speaker

    def load_wave(self, path: str | Path) -> tuple[torch.Tensor, aio.AudioInfo]:
        """One file at the preset's rate, mono, level-normalised. Raises DataError with the reason."""
        wave, info = aio.load_audio(path, self.preset.sample_rate, mono=True)
        if float(wave.abs().max()) < SILENCE_PEAK:
            raise DataError(f"{path}: silent (peak below {SILENCE_PEAK:g})")
        return self.level(wave), info

    def level(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.level == "peak":
            return aio.peak_normalize(wave, c.peak)
        if c.level == "loudness":
            return aio.loudness_normalize(wave, self.preset.sample_rate, c.lufs)
        return wave

    def read(self, path: str | Path) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """Read a folder (recursive; wav/flac/ogg) or a manifest (.csv/.txt of `path[,label]`).

        Returns (items, skipped); skipped = [(path, reason)]. Resampled / mixed-down / clipped counts are
        in `self.read_report`. Raises DataError when nothing usable is found.
        """
        path = Path(path)
        if path.is_dir():
            entries = [(p, None) for p in aio.list_audio(path)]
        elif path.is_file() and path.suffix.lower() in aio.MANIFEST_SUFFIXES:
            entries = aio.read_manifest(path)
        elif path.is_file() and path.suffix.lower() in aio.AUDIO_SUFFIXES:
            entries = [(path, None)]
        else:
            raise DataError(f"{path}: not a folder, an audio file or a .csv/.txt manifest of audio paths")
        items, skipped = [], []
        counts = {"resampled": 0, "mixed_down": 0, "clipped": 0}
        for p, manifest_label in entries:
            try:
                wave, info = self.load_wave(p)
            except DataError as e:
                skipped.append((str(p), str(e).split(": ", 1)[-1] if str(e).startswith(str(p)) else str(e)))
                continue
            for k in counts:
                counts[k] += int(getattr(info, k))
            label, speaker = self._meta_from_name(Path(p))
            items.append({"path": str(p), "wave": wave, "label": manifest_label or label, "speaker": speaker,
                          "sample_rate": info.sample_rate})
        self.read_report = {"files": len(entries), "usable": len(items), **counts, "skipped": skipped}
        if counts["resampled"]:
            log.info("resampled %d files to %d Hz", counts["resampled"], self.preset.sample_rate)
        if skipped:
            log.warning("skipped %d of %d audio files (first: %s: %s)", len(skipped), len(entries), *skipped[0])
        if not items:
            detail = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:5])
            raise DataError(f"{path}: no usable audio among {len(entries)} files"
                            + (f" ({detail}{', ...' if len(skipped) > 5 else ''})" if skipped else
                               " (looked for .wav/.flac/.ogg)"))
        return items, skipped

    # --- clips and mels -------------------------------------------------------------------------
    def fit_length(self, wave: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Centre-pad (zeros) or centre-crop [L] to clip_samples. Returns (clip, start, stop) of the real part."""
        n, L = self.clip_samples, wave.shape[-1]
        if L >= n:
            s = (L - n) // 2
            return wave[..., s:s + n], 0, n
        s = (n - L) // 2
        return torch.nn.functional.pad(wave, (s, n - L - s)), s, s + L

    def log_mels(self, waves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed-length log-mels [B, F, T] of waves (each centre-padded/cropped) and frame masks [B, T]."""
        clips, masks = [], []
        T, hop = self.num_frames, self.preset.hop_length
        for w in waves:
            clip, a, b = self.fit_length(w.float().reshape(-1))
            clips.append(clip)
            m = torch.zeros(T)
            m[a // hop: min(T, -(-b // hop))] = 1
            masks.append(m)
        mel = self.preset.log_mel(torch.stack(clips))
        return mel, torch.stack(masks)

    def normalise(self, log_mel: torch.Tensor) -> torch.Tensor:
        """[.., F, T] log-mel -> model space (needs `prepare`)."""
        self._need_stats()
        return (log_mel - self.mean.to(log_mel)) / self.std.to(log_mel) * self.config.target_std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        self._need_stats()
        return x / self.config.target_std * self.std.to(x) + self.mean.to(x)

    def _need_stats(self) -> None:
        if self.mean is None:
            raise ConfigError("the audio modality has no normalisation statistics: call prepare(items) first "
                              "(or load a saved model)")

    # --- protocol -------------------------------------------------------------------------------
    def prepare(self, items: Sequence[dict[str, Any]]) -> None:
        """Fit the label vocabulary (sorted) and the log-mel statistics. Idempotent for the same items."""
        if not items:
            raise DataError("prepare() got no items")
        self.labels = sorted({it["label"] for it in items if it.get("label") is not None})
        sums = torch.zeros(self.preset.n_mels, dtype=torch.float64)
        sq = torch.zeros_like(sums)
        count = torch.zeros_like(sums)
        for i in range(0, len(items), 64):
            mel, mask = self.log_mels([it["wave"] for it in items[i:i + 64]])
            w = mask[:, None, :].double() if self.config.padding == "mask" else torch.ones_like(mel, dtype=torch.float64)
            mel = mel.double()
            sums += (mel * w).sum((0, 2))
            sq += (mel * mel * w).sum((0, 2))
            count += w.expand_as(mel).sum((0, 2))
        if self.config.normalisation == "global":
            sums, sq, count = sums.sum().expand_as(sums), sq.sum().expand_as(sq), count.sum().expand_as(count)
        mean = sums / count
        std = (sq / count - mean * mean).clamp(min=1e-6).sqrt()
        self.mean, self.std = mean.float()[:, None], std.clamp(min=1e-3).float()[:, None]

    def label_index(self, label: str | int) -> int:
        if isinstance(label, str) and label in self.labels:
            return self.labels.index(label)
        if isinstance(label, int) or (isinstance(label, str) and label.isdigit() and label not in self.labels):
            i = int(label)
            if 0 <= i < self.num_classes:
                return i
        raise ConfigError(f"unknown label {label!r}; the model knows {self.labels or 'no labels (unconditional)'}")

    def encode(self, items: Sequence[dict[str, Any]]) -> Encoded:
        mel, mask = self.log_mels([it["wave"] for it in items])
        x0 = self.normalise(mel).unsqueeze(1)
        enc = Encoded(x0, mask[:, None, None, :] if self.config.padding == "mask" else None)
        if self.labels:
            null = self.num_classes
            enc.cond["label"] = torch.tensor(
                [self.labels.index(it["label"]) if it.get("label") in self.labels else null for it in items],
                dtype=torch.long)
        return enc

    def contrast(self, batch: Encoded) -> Encoded:
        """The clips played backwards, as log-mels [B, 1, F, T] with frames (and mask) in reverse order: the same
        spectra and loudness with the direction of time broken (the `contrast` anomaly score's transform)."""
        mask = batch.mask.flip(-1) if batch.mask is not None else None
        return Encoded(batch.x0.flip(-1), mask, dict(batch.cond))

    def null_cond(self) -> dict[str, int]:
        """The classifier-free-guidance null condition: {"label": num_classes} (none when unconditional)."""
        return {"label": self.num_classes} if self.labels else {}

    def sample_shape(self, num: int, label: str | int | Sequence | None = None, **cond: Any
                     ) -> tuple[tuple[int, ...], Encoded | None]:
        """Shape [num, 1, F, T] and the conditioning: `label` a name, an index, a list of either, or None
        for one per class round robin (None too for an unconditional model)."""
        shape = (num, 1, self.preset.n_mels, self.num_frames)
        if not self.labels:
            if label is not None:
                raise ConfigError(f"this audio model is unconditional; got label={label!r}")
            return shape, None
        if label is None:
            idx = torch.arange(num) % self.num_classes
        elif isinstance(label, (list, tuple)):
            if len(label) != num:
                raise ConfigError(f"got {len(label)} labels for {num} samples")
            idx = torch.tensor([self.label_index(l) for l in label])
        elif isinstance(label, torch.Tensor):
            idx = label.long().reshape(-1).expand(num)
        else:
            idx = torch.full((num,), self.label_index(label))
        return shape, Encoded(torch.zeros(shape), None, {"label": idx.long()})

    def label_names(self, idx: torch.Tensor | Sequence[int]) -> list[str]:
        return [self.labels[i] if 0 <= i < self.num_classes else "null" for i in map(int, idx)]

    # --- vocoder --------------------------------------------------------------------------------
    @property
    def vocoder(self) -> Vocoder:
        if self._vocoder is None:
            c = self.config
            if c.vocoder == "griffinlim":
                self._vocoder = GriffinLimVocoder(self.preset, n_iter=c.griffinlim_iters)
            elif c.vocoder == "hifigan":
                if not c.vocoder_checkpoint:
                    raise ConfigError("vocoder 'hifigan' needs vocoder_checkpoint (and vocoder_config)")
                self._vocoder = HiFiGANVocoder.from_checkpoint(c.vocoder_checkpoint, c.vocoder_config)
                self.preset.check_same(self._vocoder.preset, what="the HiFi-GAN vocoder")
            else:
                raise ConfigError(f"unknown vocoder {c.vocoder!r}; use 'griffinlim' or 'hifigan'")
        return self._vocoder

    @vocoder.setter
    def vocoder(self, voc: Vocoder) -> None:
        if voc.preset.fingerprint() != self.preset.fingerprint():
            raise MismatchError(f"vocoder expects mel preset {voc.preset.describe()} but this model makes "
                                f"{self.preset.describe()}; use a vocoder trained on the model's preset")
        self._vocoder = voc

    def decode(self, x0: torch.Tensor, encoded: Encoded | None = None, net: nn.Module | None = None,
               vocoder: Vocoder | None = None) -> list[torch.Tensor]:
        """x0 [B, 1, F, T] (model space) -> list of B waveforms [L] (float32, preset rate).
        `net` (the denoiser) is not needed; `vocoder` overrides the configured one."""
        mel = self.denormalise(x0.float().cpu()).reshape(x0.shape[0], self.preset.n_mels, -1)
        voc = vocoder or self.vocoder
        waves = voc.decode(mel, preset=self.preset)
        return [w for w in waves]

    def write_samples(self, samples: list[torch.Tensor], out: str | Path,
                      labels: Sequence[str | int] | torch.Tensor | None = None, fmt: str = "wav") -> list[Path]:
        """Write PCM16 files `{label}_{i:03d}.wav` (or `sample_{i:03d}.wav`) into folder `out`."""
        out = Path(out)
        if labels is not None and not isinstance(labels, (list, tuple)):
            labels = labels.tolist()
        names = None
        if labels is not None:
            names = [self.label_names([l])[0] if isinstance(l, int) else str(l) for l in labels]
        return [aio.write_audio(out / f"{names[i] if names else 'sample'}_{i:03d}.{fmt}", w, self.preset.sample_rate)
                for i, w in enumerate(samples)]

    # --- model ----------------------------------------------------------------------------------
    def denoiser_net(self, net_config: dict[str, Any] | None = None) -> nn.Module:
        """The U-Net over [B, 1, F, T], called as net(x_in, c_noise [B], label=LongTensor[B] | None):
        2-D over (mel bin, frame) by default; with `dims: 1`, 1-D over the frames with the F mel bins as
        channels (`MelBinsAsChannels`)."""
        from ...nn.unet import UNet2D
        kw = {**self.config.unet, **(net_config or {})}
        kw.setdefault("num_classes", self.num_classes)
        one_d = kw.get("dims", 2) == 1
        kw.setdefault("in_channels", self.preset.n_mels if one_d else 1)
        kw.setdefault("out_channels", self.preset.n_mels if one_d else 1)
        try:
            net = UNet2D(**kw)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad U-Net settings {kw}: {e}") from None
        return MelBinsAsChannels(net) if one_d else net

    # --- persistence ----------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        self._need_stats()
        meta = {"preset": self.preset.to_dict(), "labels": list(self.labels),
                "normalisation": self.config.normalisation, "target_std": self.config.target_std,
                "clip_seconds": self.config.clip_seconds, "padding": self.config.padding,
                "level": self.config.level}
        return meta, {"mel_mean": self.mean.reshape(-1).clone(), "mel_std": self.std.reshape(-1).clone()}

    def load_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        saved = MelPreset.from_dict(meta["preset"])
        if saved.fingerprint() != self.preset.fingerprint():
            raise MismatchError(f"the saved audio model was trained with mel preset {saved.describe()} but the "
                                f"config asks for {self.preset.describe()}; drop the preset override or retrain")
        self.preset = saved
        self.labels = list(meta.get("labels", []))
        for k in ("normalisation", "target_std", "clip_seconds", "padding", "level"):
            if k in meta:
                setattr(self.config, k, meta[k])
        self.mean = tensors["mel_mean"].float().reshape(-1, 1)
        self.std = tensors["mel_std"].float().reshape(-1, 1)
        if self.mean.shape[0] != self.preset.n_mels:
            raise MismatchError(f"saved mel statistics have {self.mean.shape[0]} bands, preset "
                                f"{self.preset.describe()} has {self.preset.n_mels}")
        self._vocoder = None


class MelBinsAsChannels(nn.Module):
    """A 1-D U-Net over time with the mel bins as its channels, called like the 2-D one: [B, 1, F, T] in and out."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(x[:, 0], c_noise, label=label).unsqueeze(1)
