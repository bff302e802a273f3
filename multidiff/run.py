"""A training run from one config: read data, prepare the modality, build the model, train.

The YAML layout (every section optional except data.path):

    modality: vector            # a registered modality name
    modality_options: {...}     # the modality's Config dataclass
    data: {path: FILE, eval_fraction: 0.1, seed: 0}
    net: {...}                  # passed to modality.denoiser_net
    diffusion: {...}            # DiffusionConfig
    train: {...}                # TrainConfig
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import from_dict
from .errors import ConfigError, DataError
from .model import DiffusionConfig, DiffusionModel, build_modality, resolve_model_dir
from .train.trainer import TrainConfig, Trainer


@dataclass
class DataConfig:
    path: str = ""
    eval_fraction: float = 0.0  # held out (deterministic for `seed`) and reported as eval_loss
    seed: int = 0

    def validate(self) -> None:
        """Raise ConfigError for an eval_fraction outside [0, 1)."""
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(f"data.eval_fraction must be in [0, 1), got {self.eval_fraction}")


@dataclass
class RunConfig:
    modality: str = "vector"
    modality_options: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    net: dict[str, Any] = field(default_factory=dict)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """Check the training settings (sizes, choices)."""
        self.train.validate()


def parse_run_config(data: dict[str, Any]) -> RunConfig:
    """A RunConfig from a YAML mapping; unknown keys and wrong types raise ConfigError naming the key path."""
    return from_dict(RunConfig, data)


def split_items(items: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Deterministic (train, held-out) split of `items`."""
    if fraction <= 0:
        return items, []
    perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    n_eval = max(1, int(round(fraction * len(items))))
    return [items[i] for i in perm[n_eval:]], [items[i] for i in perm[:n_eval]]


def train_run(cfg: RunConfig, out_dir: str | Path, *, resume: bool = False) -> tuple[DiffusionModel, dict]:
    """Train a model as configured into `out_dir` (checkpoint and final model in out_dir/model/)."""
    if not cfg.data.path:
        raise ConfigError("data.path is not set; pass it in the config or with --set data.path=FILE")
    out = Path(out_dir)
    modality = build_modality(cfg.modality, cfg.modality_options)
    items, skipped = modality.read(cfg.data.path)
    train_items, eval_items = split_items(items, cfg.data.eval_fraction, cfg.data.seed)
    if not train_items:
        raise DataError(f"{cfg.data.path}: nothing left to train on after holding out {len(eval_items)} items")
    modality.prepare(train_items)
    model = DiffusionModel(modality, cfg.net, cfg.diffusion)
    trainer = Trainer(model, modality.encode(train_items), cfg.train, out,
                      eval_data=modality.encode(eval_items) if eval_items else None)
    out.mkdir(parents=True, exist_ok=True)
    report = {"data": str(cfg.data.path), "items": len(items), "train": len(train_items), "eval": len(eval_items),
              "skipped": [{"item": str(w), "reason": r} for w, r in skipped]}
    (out / "data_report.json").write_text(json.dumps(report, indent=2))
    (out / "run_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    metrics = trainer.train(resume=resume)
    metrics["skipped_items"] = len(skipped)
    if trainer.ema is not None:
        trainer.ema.copy_to(model)
    return model, metrics


def load(run_dir: str | Path, ema: bool = True) -> DiffusionModel:
    """Load the model a run (or recipe) wrote."""
    return DiffusionModel.from_pretrained(resolve_model_dir(run_dir), ema=ema)
