"""A small labelled audio set made by the project (offline demos and tests).

Ten classes of synthesised notes and chords, told apart by their pitch pattern (a rising glide, a chord,
a trill, ...), played by a few "speakers" = timbres (harmonic recipes, attack/decay envelopes, vibrato,
inharmonicity, register). Files are `{label}_{speaker}_{index}.wav`, 8 kHz mono PCM16, 0.45-0.85 s,
the layout of the Free Spoken Digit Dataset, so the same recipe runs on both. Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .io import write_audio

# label -> list of (start_semitone, end_semitone, t_start, t_end) voices, times as fractions of the note
CLASSES: dict[str, list[tuple[float, float, float, float]]] = {
    "rise": [(0, 7, 0.0, 1.0)],
    "fall": [(7, 0, 0.0, 1.0)],
    "low": [(-7, -7, 0.0, 1.0)],
    "high": [(12, 12, 0.0, 1.0)],
    "fifth": [(0, 0, 0.0, 1.0), (7, 7, 0.0, 1.0)],
    "octave": [(0, 0, 0.0, 1.0), (12, 12, 0.0, 1.0)],
    "major": [(0, 0, 0.0, 1.0), (4, 4, 0.0, 1.0), (7, 7, 0.0, 1.0)],
    "minor": [(0, 0, 0.0, 1.0), (3, 3, 0.0, 1.0), (7, 7, 0.0, 1.0)],
    "trill": [("trill", 2, 0.0, 1.0)],  # alternates 0 / +2 semitones at ~9 Hz
    "steps": [(0, 0, 0.0, 0.34), (4, 4, 0.33, 0.67), (7, 7, 0.66, 1.0)],
}

# speaker -> timbre: base frequency (Hz), harmonic amplitude law, attack/decay (s), vibrato depth, inharmonicity
SPEAKERS: dict[str, dict[str, float]] = {
    "flute": dict(base=330.0, rolloff=2.5, odd_only=0, attack=0.06, decay=0.0, vibrato=0.25, inharm=0.0),
    "reed": dict(base=220.0, rolloff=1.0, odd_only=1, attack=0.02, decay=0.0, vibrato=0.0, inharm=0.0),
    "string": dict(base=260.0, rolloff=1.0, odd_only=0, attack=0.12, decay=0.0, vibrato=0.15, inharm=0.0),
    "pluck": dict(base=300.0, rolloff=1.6, odd_only=0, attack=0.003, decay=4.0, vibrato=0.0, inharm=0.0),
    "bell": dict(base=400.0, rolloff=1.3, odd_only=0, attack=0.002, decay=2.5, vibrato=0.0, inharm=0.015),
}


def synth_clip(label: str, speaker: str, rng: np.random.Generator, sample_rate: int = 8000) -> np.ndarray:
    """One clip (float32, peak 0.3-0.8) of class `label` played with timbre `speaker`."""
    voices, tim = CLASSES[label], SPEAKERS[speaker]
    dur = rng.uniform(0.45, 0.85)
    n = int(dur * sample_rate)
    t = np.arange(n) / sample_rate
    base = tim["base"] * 2 ** (rng.uniform(-2, 2) / 12)
    vib_rate = rng.uniform(4.5, 6.5)
    y = np.zeros(n)
    for start, end, a, b in voices:
        seg = (t >= a * dur) & (t < b * dur)
        if start == "trill":
            semis = np.where(np.floor(t * 2 * rng.uniform(8.5, 9.5)) % 2 == 0, 0.0, float(end))
        else:
            frac = np.clip((t - a * dur) / max((b - a) * dur, 1e-6), 0, 1)
            semis = start + (end - start) * frac
        semis = semis + tim["vibrato"] * np.sin(2 * np.pi * vib_rate * t)
        f0 = base * 2 ** (semis / 12)
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        k = 1
        while True:
            fk = k * (1 + tim["inharm"] * k * k)
            if fk * f0.max() >= 0.47 * sample_rate or k > 40:
                break
            if not (tim["odd_only"] and k % 2 == 0):
                y += seg * np.sin(fk * phase + rng.uniform(0, 2 * np.pi)) / k ** tim["rolloff"]
            k += 1
    env = np.minimum(1.0, t / tim["attack"]) * np.minimum(1.0, (dur - t) / 0.03)
    if tim["decay"]:
        env = env * np.exp(-tim["decay"] * t)
    y = y * np.clip(env, 0, 1)
    y = y / (np.abs(y).max() + 1e-9) * rng.uniform(0.3, 0.8)
    y = y + rng.normal(0, 1e-3, n)  # a recording's noise floor
    return y.astype(np.float32)


def make_synthetic_set(out_dir: str | Path, per_speaker: int = 10, speakers: Sequence[str] | None = None,
                       labels: Sequence[str] | None = None, seed: int = 0, sample_rate: int = 8000) -> list[Path]:
    """Write `per_speaker` clips per (label, speaker) as `{label}_{speaker}_{index}.wav` in `out_dir`.
    Defaults: all 10 classes x 5 speakers (flute, reed, string, pluck, bell). Returns the paths (sorted)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    speakers = list(speakers or SPEAKERS)
    labels = list(labels or CLASSES)
    paths = []
    for ci, label in enumerate(labels):
        for si, spk in enumerate(speakers):
            for i in range(per_speaker):
                rng = np.random.default_rng([seed, ci, si, i])
                y = synth_clip(label, spk, rng, sample_rate)
                paths.append(write_audio(out_dir / f"{label}_{spk}_{i}.wav", torch.from_numpy(y), sample_rate))
    return sorted(paths)
