"""Waveform I/O: soundfile read/write, mono mixdown, torchaudio resampling, level normalisation.

Waveforms are float32 tensors in [-1, 1], shape [L] (mono) or [C, L]. Errors a user can cause raise
`multidiff.errors.DataError` with the file name and the reason.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ...errors import DataError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
MANIFEST_SUFFIXES = (".csv", ".txt")


@dataclass
class AudioInfo:
    """What `load_audio` found and did: original sample rate and channel count, whether it resampled,
    mixed down, and whether the file looks clipped (>= 0.1% of samples at full scale)."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    resampled: bool = False
    mixed_down: bool = False
    clipped: bool = False


def load_audio(path: str | Path, sample_rate: int | None = None, mono: bool = True) -> tuple[torch.Tensor, AudioInfo]:
    """Read a wav/flac/ogg file as float32 [L] (mono) or [C, L], resampled to `sample_rate` if given.

    Raises DataError for unreadable/corrupt files, zero-length audio and NaN/Inf samples.
    """
    path = Path(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError on corrupt files
        raise DataError(f"{path}: cannot read audio ({type(e).__name__}: {str(e).strip() or 'corrupt file'})") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: zero-length audio")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: contains NaN or Inf samples")
    info = AudioInfo(str(path), int(sr), int(data.shape[1]), int(data.shape[0]))
    wave = torch.from_numpy(np.ascontiguousarray(data.T))  # [C, L]
    info.clipped = bool((wave.abs() >= 0.999).float().mean() > 1e-3)
    if mono:
        info.mixed_down = wave.shape[0] > 1
        wave = to_mono(wave)
    if sample_rate is not None and sample_rate != sr:
        wave = resample(wave, sr, sample_rate)
        info.resampled = True
    return wave, info


def to_mono(wave: torch.Tensor) -> torch.Tensor:
    """[C, L] -> [L] by averaging channels; [L] is returned as is."""
    return wave.mean(0) if wave.dim() == 2 else wave


def resample(wave: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Band-limited (windowed-sinc) resampling along the last axis with torchaudio."""
    if orig_freq == new_freq:
        return wave
    import torchaudio.functional as AF
    return AF.resample(wave, int(orig_freq), int(new_freq))


def peak_normalize(wave: torch.Tensor, peak: float = 0.95) -> torch.Tensor:
    """Scale so that max |x| = peak (silence is returned unchanged)."""
    m = wave.abs().max()
    return wave if m <= 0 else wave * (peak / m)


def loudness(wave: torch.Tensor, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770 via torchaudio); clips under 0.4 s fall back to
    RMS level in dBFS - 0.691 (what BS.1770 gives for a full-band stationary signal, roughly)."""
    x = wave if wave.dim() == 2 else wave.unsqueeze(0)
    if x.shape[-1] >= int(0.4 * sample_rate):
        import torchaudio.functional as AF
        val = float(AF.loudness(x, sample_rate))
        if math.isfinite(val):
            return val
    rms = float(x.pow(2).mean().sqrt())
    return -math.inf if rms == 0 else 20 * math.log10(rms) - 0.691


def loudness_normalize(wave: torch.Tensor, sample_rate: int, target_lufs: float = -23.0,
                       max_peak: float = 0.99) -> torch.Tensor:
    """Scale to `target_lufs`, then limit the peak to `max_peak` (by scaling down, never clipping)."""
    lufs = loudness(wave, sample_rate)
    if not math.isfinite(lufs):
        return wave
    out = wave * 10 ** ((target_lufs - lufs) / 20)
    m = out.abs().max()
    return out * (max_peak / m) if m > max_peak else out


_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


def write_audio(path: str | Path, wave: torch.Tensor, sample_rate: int, subtype: str | None = None) -> Path:
    """Write [L] or [C, L] float audio; the format comes from the suffix (.wav and .flac: PCM16 by
    default, .ogg: Vorbis). Samples are clipped to [-1, 1]. The write is atomic (temp file + rename)."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot write audio with suffix {path.suffix!r}; use one of {list(_FORMATS)}")
    x = wave.detach().float().cpu().clamp(-1, 1)
    x = x.numpy() if x.dim() == 1 else x.T.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, x, int(sample_rate), format=fmt[0], subtype=subtype or fmt[1])
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def list_audio(root: str | Path) -> list[Path]:
    """Audio files (wav/flac/ogg, any case) under `root`, recursively, sorted."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def read_manifest(path: str | Path) -> list[tuple[Path, str | None]]:
    """Rows `path[,label]` of a .csv/.txt manifest; relative paths are relative to the manifest's folder.
    A first row whose first field is 'path' (any case) is a header. Blank lines and '#' comments skipped."""
    path = Path(path)
    rows: list[tuple[Path, str | None]] = []
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.reader(f)):
            row = [c.strip() for c in row]
            if not row or not row[0] or row[0].startswith("#"):
                continue
            if i == 0 and row[0].lower() in ("path", "file", "filename"):
                continue
            p = Path(row[0])
            rows.append((p if p.is_absolute() else path.parent / p, row[1] if len(row) > 1 and row[1] else None))
    return rows
