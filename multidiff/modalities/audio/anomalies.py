"""Non-speech sounds and time-reversed clips: the anomalies of the audio anomaly-detection recipe.

Every maker returns one float32 waveform [L] at `sample_rate` (peak 0.3-0.8 plus a 1e-3 noise floor, like
`synthetic.synth_clip`), 0.3-0.9 s long, and is deterministic for its `numpy.random.Generator`:

  tone    a steady sine with a few weak harmonics (whistle, beep, hum), 150-3000 Hz
  noise   a noise burst: white, pink or band-passed, with a fast attack and a short or long decay
  click   an impulse train (clicks or ticks, 3-40 per second), optionally with a ringing resonance
  notes   a fast melody of 4-8 short notes in a square/sawtooth "organ" timbre (music, not speech)
  reversed  `time_reversed(wave)`: any clip played backwards (speech keeps its spectrum, loses its order)

`make_anomaly_set(out_dir, per_type, seed)` writes `{kind}_{index}.wav` files for the synthetic kinds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .io import write_audio

NOISE_FLOOR = 1e-3


def _finish(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Peak to 0.3-0.8, add the recording noise floor, float32."""
    y = y / (np.abs(y).max() + 1e-9) * rng.uniform(0.3, 0.8)
    return (y + rng.normal(0, NOISE_FLOOR, y.shape[0])).astype(np.float32)


def _envelope(n: int, sample_rate: int, attack: float, release: float) -> np.ndarray:
    t = np.arange(n) / sample_rate
    dur = n / sample_rate
    return np.clip(np.minimum(t / max(attack, 1e-4), (dur - t) / max(release, 1e-4)), 0, 1)


def tone(rng: np.random.Generator, sample_rate: int = 8000) -> np.ndarray:
    """A steady tone: sine at 150-3000 Hz (log-uniform) with 0-2 weak harmonics below Nyquist."""
    n = int(rng.uniform(0.3, 0.9) * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = float(np.exp(rng.uniform(np.log(150), np.log(3000))))
    y = np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi))
    for k in range(2, 2 + int(rng.integers(0, 3))):
        if k * f0 < 0.45 * sample_rate:
            y += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    return _finish(y * _envelope(n, sample_rate, 0.01, 0.01), rng)


def noise(rng: np.random.Generator, sample_rate: int = 8000) -> np.ndarray:
    """A noise burst: white, pink (1/f) or band-passed noise with a fast attack and an exponential decay."""
    n = int(rng.uniform(0.3, 0.9) * sample_rate)
    white = rng.normal(0, 1, n)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    colour = rng.integers(0, 3)
    if colour == 1:      # pink
        spec = spec / np.sqrt(np.maximum(f, 20.0))
    elif colour == 2:    # band-passed around a random centre
        centre = float(np.exp(rng.uniform(np.log(300), np.log(3000))))
        width = centre * rng.uniform(0.2, 0.8)
        spec = spec * np.exp(-0.5 * ((f - centre) / width) ** 2)
    y = np.fft.irfft(spec, n)
    t = np.arange(n) / sample_rate
    decay = np.exp(-t * rng.uniform(0.0, 12.0))
    return _finish(y * decay * _envelope(n, sample_rate, 0.005, 0.02), rng)


def click(rng: np.random.Generator, sample_rate: int = 8000) -> np.ndarray:
    """Clicks: an impulse train at 3-40 per second (jittered), each click a few samples, some ringing."""
    n = int(rng.uniform(0.3, 0.9) * sample_rate)
    y = np.zeros(n)
    rate = rng.uniform(3, 40)
    pos = rng.uniform(0, 0.05) * sample_rate
    width = int(rng.integers(1, 8))
    ring = rng.random() < 0.5
    f_ring, tau = rng.uniform(500, 3000), rng.uniform(0.002, 0.02)
    kernel = np.ones(width) * rng.choice([-1.0, 1.0])
    if ring:
        tk = np.arange(int(5 * tau * sample_rate)) / sample_rate
        kernel = np.sin(2 * np.pi * f_ring * tk) * np.exp(-tk / tau)
    while pos < n:
        i = int(pos)
        seg = kernel[:n - i] * rng.uniform(0.5, 1.0)
        y[i:i + len(seg)] += seg
        pos += sample_rate / rate * rng.uniform(0.8, 1.2)
    return _finish(y, rng)


def notes(rng: np.random.Generator, sample_rate: int = 8000) -> np.ndarray:
    """Music: a melody of 4-8 short notes from a pentatonic scale, square or sawtooth timbre, staccato."""
    k = int(rng.integers(4, 9))
    note_s = rng.uniform(0.07, 0.13)
    base = float(np.exp(rng.uniform(np.log(180), np.log(600))))
    scale = np.array([0, 2, 4, 7, 9, 12, 14, 16])
    square = rng.random() < 0.5
    parts = []
    for _ in range(k):
        m = int(note_s * sample_rate)
        t = np.arange(m) / sample_rate
        f0 = base * 2 ** (rng.choice(scale) / 12)
        y = np.zeros(m)
        for h in range(1, 40):
            if h * f0 >= 0.45 * sample_rate:
                break
            if square and h % 2 == 0:
                continue
            y += np.sin(2 * np.pi * h * f0 * t) / h
        parts.append(y * _envelope(m, sample_rate, 0.005, 0.03) * np.exp(-t * 8))
    return _finish(np.concatenate(parts), rng)


def time_reversed(wave: np.ndarray | torch.Tensor) -> np.ndarray:
    """The clip played backwards (float32 [L])."""
    w = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    return np.ascontiguousarray(w.reshape(-1)[::-1]).astype(np.float32)


MAKERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "tone": tone, "noise": noise, "click": click, "notes": notes}


def make_anomaly(kind: str, seed: int, index: int, sample_rate: int = 8000) -> np.ndarray:
    """Anomaly number `index` of `kind` (one of MAKERS) for `seed`; the same arguments give the same wave."""
    if kind not in MAKERS:
        raise ValueError(f"unknown anomaly kind {kind!r}; choose one of {', '.join(MAKERS)}")
    rng = np.random.default_rng([int(seed), list(MAKERS).index(kind), int(index)])
    return MAKERS[kind](rng, sample_rate)


def make_anomaly_set(out_dir: str | Path, per_type: int = 20, seed: int = 0,
                     kinds: Sequence[str] | None = None, sample_rate: int = 8000) -> list[Path]:
    """Write `per_type` clips of each kind (default: all of MAKERS) as `{kind}_{index}.wav` (PCM16)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in kinds or MAKERS:
        for i in range(per_type):
            y = make_anomaly(kind, seed, i, sample_rate)
            paths.append(write_audio(out_dir / f"{kind}_{i}.wav", torch.from_numpy(y), sample_rate))
    return sorted(paths)
