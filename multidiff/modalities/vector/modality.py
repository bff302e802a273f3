"""Fixed-size continuous vectors: the smallest real plugin (tabular data, anomaly detection, tutorials)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ...errors import DataError
from ...nn.embeddings import SinusoidalEmbedding
from ..base import Encoded, Modality, NamedItems


@dataclass
class VectorConfig:
    standardize: bool = True  # fit per-column mean/std in prepare() and diffuse standardized vectors


class VectorModality(Modality):
    """Items are 1-D float arrays of one fixed size D; x0 is [B, D] (standardized)."""

    name = "vector"
    Config = VectorConfig

    def __init__(self, config: VectorConfig | None = None):
        super().__init__(config)
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    # --- data -------------------------------------------------------------------------------
    def read(self, path: str | Path) -> tuple[list[np.ndarray], list[tuple[str, str]]]:
        """Rows of a .npy ([N, D]) or .csv (optional header) file. Rows with the wrong number of columns,
        non-numeric cells, NaN or Inf are skipped and listed as (row, reason)."""
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p} does not exist; pass a .npy or .csv file of vectors")
        if p.suffix.lower() == ".npy":
            try:
                arr = np.load(p, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise DataError(f"{p} is not a readable .npy array ({e})") from None
            if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
                raise DataError(f"{p}: expected a numeric 2-D array [N, D], got shape {arr.shape} {arr.dtype}")
            rows = [(f"row {i}", r.astype(np.float32)) for i, r in enumerate(arr)]
        elif p.suffix.lower() in (".csv", ".txt"):
            rows = list(_csv_rows(p))
        else:
            raise DataError(f"{p}: unsupported file type {p.suffix!r}; use .npy or .csv")
        items, names, skipped = [], [], []
        width = self.mean.numel() if self.mean is not None else _common_width([r for _, r in rows])
        for where, r in rows:
            if isinstance(r, str):
                skipped.append((where, r))
            elif r.shape[0] != width:
                skipped.append((where, f"has {r.shape[0]} columns, expected {width}"))
            elif not np.isfinite(r).all():
                skipped.append((where, "contains NaN or Inf"))
            else:
                items.append(r)
                names.append(where)
        if not items:
            reason = f" (first problem: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
            raise DataError(f"{p} holds no usable vectors{reason}")
        return NamedItems(items, names), skipped

    def prepare(self, items: Sequence[np.ndarray]) -> None:
        x = torch.as_tensor(np.stack(items), dtype=torch.float32)
        if self.config.standardize:
            self.mean, self.std = x.mean(0), x.std(0).clamp_min(1e-6) if len(x) > 1 else torch.ones(x.shape[1])
        else:
            self.mean, self.std = torch.zeros(x.shape[1]), torch.ones(x.shape[1])

    def _need_stats(self) -> None:
        if self.mean is None:
            raise DataError("the vector modality is not prepared: call prepare(items) on the training data first")

    def encode(self, items: Sequence[np.ndarray]) -> Encoded:
        self._need_stats()
        x = torch.as_tensor(np.stack(items), dtype=torch.float32)
        if x.ndim != 2 or x.shape[1] != self.mean.numel():
            raise DataError(f"expected vectors of size {self.mean.numel()}, got shape {tuple(x.shape)}")
        return Encoded((x - self.mean) / self.std)

    def decode(self, x0: torch.Tensor, encoded: Encoded | None = None, net: nn.Module | None = None
               ) -> list[np.ndarray]:
        self._need_stats()
        return list((x0.float().cpu() * self.std + self.mean).numpy())

    def sample_shape(self, num: int, **cond: Any) -> tuple[tuple[int, ...], None]:
        self._need_stats()
        if cond:
            raise DataError(f"the vector modality takes no conditioning, got {', '.join(cond)}")
        return (num, self.mean.numel()), None

    def write_samples(self, samples: list[np.ndarray], out: str | Path) -> list[Path]:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        arr = np.stack(samples).astype(np.float32)
        if out.suffix.lower() == ".csv":
            np.savetxt(out, arr, delimiter=",", fmt="%.6g")
        else:
            out = out if out.suffix.lower() == ".npy" else out.with_suffix(".npy")
            np.save(out, arr)
        return [out]

    def units(self) -> tuple[str, int]:
        self._need_stats()
        return "dim", self.mean.numel()

    # --- model ------------------------------------------------------------------------------
    def denoiser_net(self, net_config: dict[str, Any]) -> nn.Module:
        self._need_stats()
        opts = {"hidden": 128, "depth": 3, **(net_config or {})}
        unknown = set(opts) - {"hidden", "depth"}
        if unknown:
            from ...errors import ConfigError
            raise ConfigError(f"net: unknown key {sorted(unknown)[0]!r} for the vector MLP; valid: depth, hidden")
        return ResidualMLP(self.mean.numel(), int(opts["hidden"]), int(opts["depth"]))

    # --- persistence ------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        self._need_stats()
        return {"dims": self.mean.numel()}, {"mean": self.mean, "std": self.std}

    def load_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        if "mean" not in tensors or "std" not in tensors:
            from ...errors import CheckpointError
            raise CheckpointError("vector modality state lacks mean/std statistics")
        self.mean, self.std = tensors["mean"].float(), tensors["std"].float()


def _csv_rows(p: Path):
    try:
        with open(p, newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.reader(f)):
                if not row or all(not c.strip() for c in row):
                    continue
                try:
                    yield f"line {i + 1}", np.array([float(c) for c in row], dtype=np.float32)
                except ValueError:
                    if i == 0:
                        continue  # a header
                    yield f"line {i + 1}", "has a non-numeric cell"
    except UnicodeDecodeError as e:
        raise DataError(f"{p} is not UTF-8 text ({e}); save the CSV as UTF-8") from None


def _common_width(rows: list) -> int:
    widths = [r.shape[0] for r in rows if not isinstance(r, str)]
    return max(set(widths), key=widths.count) if widths else 0


class ResidualMLP(nn.Module):
    """MLP denoiser for [B, D] vectors: net(x_in [B, D], c_noise [B]) -> [B, D].

    The noise level enters every residual block through a sinusoidal embedding (scale 250 spreads
    c_noise = ln(sigma)/4, a few units wide, over the frequencies)."""

    def __init__(self, dims: int, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.embed = nn.Sequential(SinusoidalEmbedding(64, scale=250.0), nn.Linear(64, hidden), nn.SiLU())
        self.inp = nn.Linear(dims, hidden)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"norm": nn.LayerNorm(hidden), "film": nn.Linear(hidden, 2 * hidden),
                           "mlp": nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))})
            for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dims))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, **_: Any) -> torch.Tensor:
        e = self.embed(c_noise)
        h = self.inp(x)
        for b in self.blocks:
            scale, shift = b["film"](e).chunk(2, dim=-1)
            h = h + b["mlp"](b["norm"](h) * (1 + scale) + shift)
        return self.out(h)
