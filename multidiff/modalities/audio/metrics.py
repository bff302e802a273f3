"""Audio metrics: a judge classifier on log-mels and the Frechet distance on its embeddings,
log-spectral distance and mel L1 for reconstructions, real-time factor, spectrogram grids.

All mels here are natural-log mels [B, F, T] of one `MelPreset` (the judge stores its fingerprint and
refuses others).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CheckpointError, MismatchError
from .mel import MelPreset, get_preset


# ------------------------------------------------------------------------------------------------
# Judge classifier
# ------------------------------------------------------------------------------------------------

class JudgeCNN(nn.Module):
    """Small CNN on log-mels [B, F, T] (or [B, 1, F, T]) -> logits [B, num_classes].

    Four conv blocks (3x3 conv, BatchNorm, ReLU, 2x2 max-pool) of width w, 2w, 4w, 8w, global average
    pooling -> the embedding [B, 8w] used for Frechet distances -> linear classifier. Inputs are
    standardised with the stored global mean/std of the training log-mels. ~130k parameters at w = 16.
    """

    def __init__(self, n_mels: int, num_classes: int, width: int = 16, labels: Sequence[str] | None = None,
                 preset: MelPreset | None = None):
        super().__init__()
        self.n_mels, self.num_classes, self.width = n_mels, num_classes, width
        self.labels = list(labels) if labels is not None else [str(i) for i in range(num_classes)]
        self.preset = preset
        chans = [1, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(8 * width, num_classes)
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    @property
    def embed_dim(self) -> int:
        return 8 * self.width

    def _prep(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel if mel.dim() == 4 else mel.unsqueeze(1)
        return (x.float().to(self.mean.device) - self.mean) / self.std

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        return self.features(self._prep(mel)).mean((2, 3))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(mel)))

    @torch.no_grad()
    def embeddings(self, mel: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """Eval-mode embeddings [B, D] (batched, no grad)."""
        self.eval()
        return torch.cat([self.embed(mel[i:i + batch_size]) for i in range(0, len(mel), batch_size)])

    @torch.no_grad()
    def predict(self, mel: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        self.eval()
        return torch.cat([self(mel[i:i + batch_size]).argmax(-1) for i in range(0, len(mel), batch_size)])

    def accuracy(self, mel: torch.Tensor, labels: torch.Tensor) -> float:
        return float((self.predict(mel) == labels.to(self.mean.device)).float().mean())

    def per_class_accuracy(self, mel: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        pred, labels = self.predict(mel).cpu(), labels.cpu()
        return {self.labels[c]: float((pred[labels == c] == c).float().mean())
                for c in range(self.num_classes) if (labels == c).any()}

    def check_preset(self, preset: MelPreset | str) -> None:
        if self.preset is not None:
            self.preset.check_same(get_preset(preset), what="the mels given to the judge")

    # --- persistence ----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """`judge.json` (sizes, labels, preset) + `judge.safetensors`."""
        from safetensors.torch import save_file
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"n_mels": self.n_mels, "num_classes": self.num_classes, "width": self.width,
                "labels": self.labels, "preset": self.preset.to_dict() if self.preset else None}
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "judge.safetensors"))
        (folder / "judge.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: str | Path, preset: MelPreset | str | None = None) -> "JudgeCNN":
        """Load a saved judge; with `preset`, refuse a judge trained on another mel preset."""
        from safetensors.torch import load_file
        folder = Path(folder)
        try:
            meta = json.loads((folder / "judge.json").read_text())
            tensors = load_file(str(folder / "judge.safetensors"))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot load judge from {folder}: {e}") from None
        saved = MelPreset.from_dict(meta["preset"]) if meta.get("preset") else None
        judge = cls(meta["n_mels"], meta["num_classes"], meta["width"], meta["labels"], saved)
        judge.load_state_dict(tensors)
        if preset is not None and saved is not None:
            judge.check_preset(preset)
        return judge.eval()


def train_judge(mels: torch.Tensor, labels: torch.Tensor, num_classes: int, *, label_names: Sequence[str] | None = None,
                preset: MelPreset | None = None, width: int = 16, epochs: int = 15, batch_size: int = 64,
                lr: float = 2e-3, seed: int = 0, shift_frames: int = 12, val: tuple[torch.Tensor, torch.Tensor] | None = None,
                log: Callable[[str], None] | None = None) -> JudgeCNN:
    """Train a `JudgeCNN` on log-mels [N, F, T] with integer labels [N] (AdamW, cosine LR, random
    time shifts of up to `shift_frames` and gains of +-0.5 nats as augmentation)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    judge = JudgeCNN(mels.shape[-2], num_classes, width, label_names, preset)
    judge.mean.fill_(float(mels.mean()))
    judge.std.fill_(float(mels.std()))
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=1e-2)
    steps = epochs * math.ceil(len(mels) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    floor = float(mels.min())
    for ep in range(epochs):
        judge.train()
        perm = torch.randperm(len(mels), generator=g)
        total = 0.0
        for i in range(0, len(mels), batch_size):
            idx = perm[i:i + batch_size]
            x = mels[idx].clone()
            if shift_frames:
                shifts = torch.randint(-shift_frames, shift_frames + 1, (len(idx),), generator=g)
                x = torch.stack([_shift(xi, int(s), floor) for xi, s in zip(x, shifts)])
            x = x + (torch.rand(len(idx), 1, 1, generator=g) - 0.5)
            loss = F.cross_entropy(judge(x), labels[idx].long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if log:
            msg = f"judge epoch {ep + 1}/{epochs} loss {total / len(mels):.4f}"
            if val is not None:
                msg += f" val acc {judge.accuracy(*val):.3f}"
            log(msg)
    return judge.eval()


def _shift(x: torch.Tensor, s: int, floor: float) -> torch.Tensor:
    """Shift [F, T] by s frames, filling with `floor` (silence)."""
    if s == 0:
        return x
    out = torch.full_like(x, floor)
    if s > 0:
        out[:, s:] = x[:, :-s]
    else:
        out[:, :s] = x[:, -s:]
    return out


# ------------------------------------------------------------------------------------------------
# Frechet distance
# ------------------------------------------------------------------------------------------------

def frechet_distance_from_stats(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)) in float64, via the symmetric form
    tr((C1^(1/2) C2 C1^(1/2))^(1/2)) (eigendecompositions; no complex sqrtm)."""
    mu1, mu2, c1, c2 = (torch.as_tensor(t, dtype=torch.float64) for t in (mu1, mu2, cov1, cov2))
    e1, v1 = torch.linalg.eigh((c1 + c1.T) / 2)
    s1 = (v1 * e1.clamp(min=0).sqrt()) @ v1.T
    m = s1 @ c2 @ s1
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + torch.trace(c1) + torch.trace(c2) - 2 * tr_sqrt)


def gaussian_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(x, dtype=torch.float64)
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / max(len(x) - 1, 1)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to embeddings a [N, D] and b [M, D]."""
    return frechet_distance_from_stats(*gaussian_stats(a), *gaussian_stats(b))


# ------------------------------------------------------------------------------------------------
# Reconstruction distances, speed
# ------------------------------------------------------------------------------------------------

def _match(ref: torch.Tensor, est: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(ref.shape[-1], est.shape[-1])
    return ref[..., :n].float(), est[..., :n].float()


def log_spectral_distance(ref: torch.Tensor, est: torch.Tensor, preset: MelPreset | str = "speech-8k",
                          eps: float = 1e-5) -> float:
    """LSD in dB: mean over frames of sqrt(mean over bins of (10 log10 (|X|^2 / |Y|^2))^2), with the
    preset's STFT; power floored at eps^2 (-100 dB). Waves [L] or [B, L], cropped to the shorter."""
    p = get_preset(preset)
    ref, est = _match(ref, est)
    px = p.stft(ref).abs().pow(2).clamp(min=eps * eps)
    py = p.stft(est).abs().pow(2).clamp(min=eps * eps)
    d = 10 * torch.log10(px / py)
    return float(d.pow(2).mean(-2).sqrt().mean())


def mel_l1(ref: torch.Tensor, est: torch.Tensor, preset: MelPreset | str = "speech-8k") -> float:
    """Mean |log-mel(ref) - log-mel(est)| in nats, preset's front end, waves cropped to the shorter."""
    p = get_preset(preset)
    ref, est = _match(ref, est)
    return float((p.log_mel(ref) - p.log_mel(est)).abs().mean())


def real_time_factor(fn: Callable[[], Any], audio_seconds: float, repeats: int = 3, warmup: int = 1) -> float:
    """Seconds of compute per second of audio (median of `repeats` timed calls of `fn()`; < 1 is faster
    than real time, and 1 / RTF is the 'x real time' speed)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / audio_seconds


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

def spectrogram_grid(mels: Sequence[torch.Tensor] | torch.Tensor, path: str | Path, titles: Sequence[str] | None = None,
                     ncols: int = 5, preset: MelPreset | str | None = None, suptitle: str | None = None,
                     vmin: float | None = None, vmax: float | None = None) -> Path:
    """A PNG grid of log-mel images [F, T] (low frequencies at the bottom, shared colour scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mels = [m.detach().float().cpu().reshape(m.shape[-2], m.shape[-1]) for m in mels]
    n = len(mels)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    lo = vmin if vmin is not None else min(float(m.min()) for m in mels)
    hi = vmax if vmax is not None else max(float(m.max()) for m in mels)
    p = get_preset(preset) if preset is not None else None
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.0 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        m = mels[i].numpy()
        extent = None
        if p is not None:
            extent = (0, m.shape[1] / p.frames_per_second, 0, m.shape[0])
            ax.set_xticks([0, round(m.shape[1] / p.frames_per_second, 2)])
        ax.imshow(m, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma", extent=extent)
        if titles:
            ax.set_title(str(titles[i]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
