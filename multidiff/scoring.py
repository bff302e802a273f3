"""Per-item anomaly scores from a trained model, thresholds, and separation metrics.

Scores are normalised per dimension (per token for text), so items of different sizes compare; higher means
more anomalous. Methods:
  elbo     the continuous-time variational bound, bits per dimension/token;
  ode      probability-flow ODE negative log-likelihood, bits per dimension (continuous modalities);
  denoise  the denoising error ||D(x0 + sigma eps, sigma) - x0||^2 / sigma^2 averaged over a fixed set of noise
           levels (AnoDDPM-style), per dimension.
  contrast log e(x) + weight * (log e(x) - log e(T x)), e the denoise error and T the modality's `contrast`
           transform (audio: the clip played backwards), scored with the same noise draws: a likelihood-ratio
           style score in which what T keeps (the spectra, loudness, amount of silence) cancels and what it
           breaks (the direction of time) remains. Natural log; for modalities with a `contrast` hook.

A class-conditional model (classifier-free guidance) can score with `labels`:
  given    each item's own condition (a label read from its name, or the null label when it has none);
  null     the null label for every item: the model's unconditional branch, p(x);
  best     every class label in turn, keeping the lowest score: for elbo/ode plus log2(C) / dims, since
           -log p(x) <= min_c -log p(x | c) + log C under a uniform class prior (still an upper bound on
           -log p(x)). Costs C times `given`; the conditional branches are trained on (1 - cond_dropout) of
           the data, the null branch on cond_dropout of it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import torch

from .core.draws import Draws
from .errors import ConfigError
from .model import DiffusionModel
from .modalities.base import Encoded

METHODS = ("elbo", "ode", "denoise", "contrast")
LABEL_MODES = ("given", "null", "best")
DENOISE_SIGMAS = (0.05, 0.1, 0.2, 0.5, 1.0)
CONTRAST_SIGMAS = (0.5, 1.0, 2.0, 4.0)
CONTRAST_WEIGHT = 4.0


def default_sigmas(method: str) -> tuple[float, ...]:
    """The noise levels `denoise` and `contrast` use when none are given (data units; () for elbo/ode)."""
    return {"denoise": DENOISE_SIGMAS, "contrast": CONTRAST_SIGMAS}.get(method, ())


@torch.no_grad()
def denoise_error(model: DiffusionModel, batch: Encoded, seed: int = 0,
                  sigmas: Sequence[float] = DENOISE_SIGMAS, per_level: bool = False) -> torch.Tensor:
    """Mean over `sigmas` of the per-dimension x0 error scaled by 1/sigma^2 (an eps-error), [B]; with
    `per_level`, each level's error [B, len(sigmas)] (one independent noise draw per level)."""
    if not sigmas or not all(float(s) > 0 for s in sigmas):
        raise ConfigError(f"denoise noise levels must be positive numbers (at least one), got {list(sigmas)}")
    x0 = batch.x0
    if not x0.is_floating_point():
        raise ConfigError(f"the denoise score needs continuous data, but {model.modality.name} items are "
                          "discrete tokens; score them with method 'elbo' (the bound per token)")
    D = model.denoiser()
    draws = Draws.seeded(seed, len(batch))
    levels = []
    for s in sigmas:
        noise = draws.randn(*x0.shape[1:])
        sig = torch.full((len(batch),), float(s))
        err = (D(x0 + s * noise, sig, **batch.cond) - x0) ** 2 / (s * s)
        m = batch.mask
        err = (err * m).flatten(1).sum(1) / m.expand_as(err).flatten(1).sum(1).clamp_min(1) if m is not None \
            else err.flatten(1).mean(1)
        levels.append(err.cpu())
    per = torch.stack(levels, 1)
    return per if per_level else per.mean(1)


def contrast_score(model: DiffusionModel, batch: Encoded, seed: int = 0, sigmas: Sequence[float] = CONTRAST_SIGMAS,
                   weight: float = CONTRAST_WEIGHT) -> torch.Tensor:
    """log e(x) + weight * (log e(x) - log e(T x)) [B], e = `denoise_error` with the same seed for x and T x."""
    transform = getattr(model.modality, "contrast", None)
    if transform is None:
        raise ConfigError(f"the contrast score needs a modality with a `contrast` transform; {model.modality.name} "
                          "has none: score with method 'denoise' or 'elbo'")
    own = denoise_error(model, batch, seed, sigmas).clamp_min(1e-12).log()
    other = denoise_error(model, transform(batch), seed, sigmas).clamp_min(1e-12).log()
    return own + float(weight) * (own - other)


def score_batch(model: DiffusionModel, batch: Encoded, method: str = "elbo", seed: int = 0,
                labels: str = "given", sigmas: Sequence[float] | None = None,
                contrast_weight: float = CONTRAST_WEIGHT) -> torch.Tensor:
    """Scores [B] (higher = more anomalous) in the units of `units(method)`; `labels` as in the module doc,
    `sigmas` the noise levels of `denoise` and `contrast` (in the model's data units; None: the method's
    `default_sigmas`)."""
    if method not in METHODS:
        raise ConfigError(f"unknown scoring method {method!r}; choose one of {', '.join(METHODS)}")
    if labels not in LABEL_MODES:
        raise ConfigError(f"unknown label mode {labels!r}; choose one of {', '.join(LABEL_MODES)}")
    options = {"seed": seed, "sigmas": default_sigmas(method) if sigmas is None else sigmas,
               "contrast_weight": contrast_weight}
    if labels == "given":
        return _score(model, batch, method, **options)
    key, null, num_classes = _class_condition(model)
    if labels == "null":
        return _score(model, _with_label(batch, key, null), method, **options)
    per_class = torch.stack([_score(model, _with_label(batch, key, c), method, **options)
                             for c in range(num_classes)])
    best = per_class.min(0).values
    if method in ("elbo", "ode"):
        best = best + math.log2(num_classes) / model.units_per_item(batch)
    return best


def default_label_mode(model: DiffusionModel) -> str:
    """'null' for a class-conditional model (every item scored alike, as p(x)), else 'given'."""
    return "null" if model.null_cond() else "given"


def _score(model: DiffusionModel, batch: Encoded, method: str, seed: int, sigmas: Sequence[float],
           contrast_weight: float) -> torch.Tensor:
    if method == "denoise":
        return denoise_error(model, batch, seed, sigmas)
    if method == "contrast":
        return contrast_score(model, batch, seed, sigmas, contrast_weight)
    nats = model.nll(batch, method=method, seed=seed).cpu()
    return nats / (model.units_per_item(batch) * math.log(2))


def _class_condition(model: DiffusionModel) -> tuple[str, int, int]:
    """(condition key, null value, number of classes) of a class-conditional model, else ConfigError."""
    null = model.null_cond()
    num_classes = int(getattr(model.modality, "num_classes", 0) or 0)
    if len(null) != 1 or num_classes < 1:
        raise ConfigError(f"label modes 'null' and 'best' need a class-conditional model; this "
                          f"{model.modality.name} model has no class labels: score with labels 'given'")
    (key, value), = null.items()
    return key, int(value), num_classes


def _with_label(batch: Encoded, key: str, value: int) -> Encoded:
    """`batch` with condition `key` set to `value` for every item (other conditions and x0 shared)."""
    label = torch.full((len(batch),), value, dtype=torch.long, device=batch.x0.device)
    return dataclasses.replace(batch, cond={**batch.cond, key: label})


def units(model: DiffusionModel, method: str) -> str:
    """Units of `method`'s scores, e.g. "bits/dim", "bits/token", "mse/dim", "log mse/dim"."""
    unit, _ = model.modality.units()
    return {"denoise": f"mse/{unit}", "contrast": f"log mse/{unit}"}.get(method, f"bits/{unit}")


def score_items(model: DiffusionModel, items: Sequence[Any], method: str = "elbo", seed: int = 0,
                batch_size: int = 64, progress: bool = False, labels: str = "given",
                sigmas: Sequence[float] | None = None, contrast_weight: float = CONTRAST_WEIGHT) -> list[float]:
    """Scores of raw items, batched; deterministic for a seed (each batch's seed is seed + offset)."""
    from tqdm import tqdm

    model.eval()
    out: list[float] = []
    starts = range(0, len(items), batch_size)
    for start in tqdm(starts, disable=not progress, desc=f"scoring ({method})"):
        batch = model.modality.encode(items[start:start + batch_size])
        out.extend(score_batch(model, batch, method, seed + start, labels, sigmas, contrast_weight).tolist())
    return out


# ------------------------------------------------------------------------------------- metrics
def auroc(normal: Sequence[float], anomalous: Sequence[float]) -> float:
    """Area under the ROC curve: P(score of an anomaly > score of a normal item), ties counted half."""
    n, a = torch.tensor(normal, dtype=torch.float64), torch.tensor(anomalous, dtype=torch.float64)
    if len(n) == 0 or len(a) == 0:
        raise ConfigError("AUROC needs at least one normal and one anomalous item")
    allv = torch.cat([n, a])
    ranks = _average_ranks(allv)
    return float((ranks[len(n):].sum() - len(a) * (len(a) + 1) / 2) / (len(a) * len(n)))


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(v)
    sorted_v = v[order]
    ranks = torch.empty_like(v)
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def auprc(normal: Sequence[float], anomalous: Sequence[float]) -> float:
    """Average precision with anomalies as the positive class: sum over distinct score thresholds of
    (recall gain) x (precision), so tied scores form one threshold (as scikit-learn's average_precision_score)."""
    scores = torch.tensor(list(normal) + list(anomalous), dtype=torch.float64)
    labels = torch.tensor([0] * len(normal) + [1] * len(anomalous), dtype=torch.float64)
    order = torch.argsort(scores, descending=True, stable=True)
    scores, hits = scores[order], labels[order]
    last_of_group = torch.ones_like(scores, dtype=torch.bool)
    last_of_group[:-1] = scores[1:] != scores[:-1]
    tp = hits.cumsum(0)[last_of_group]
    precision = tp / (torch.arange(1, len(hits) + 1, dtype=torch.float64)[last_of_group])
    recall_gain = torch.diff(tp, prepend=tp.new_zeros(1)) / hits.sum()
    return float((precision * recall_gain).sum())


def threshold_at_fpr(normal: Sequence[float], fpr: float) -> float:
    """Smallest threshold flagging at most a fraction `fpr` of the normal scores (score > threshold)."""
    if not 0 <= fpr < 1:
        raise ConfigError(f"fpr must be in [0, 1), got {fpr}")
    s = sorted(normal)
    k = int(math.floor(fpr * len(s)))  # number of normal items allowed above the threshold
    return s[len(s) - 1 - k] if k < len(s) else s[0]


def tpr_at_fpr(normal: Sequence[float], anomalous: Sequence[float], fpr: float = 0.01) -> float:
    """Fraction of anomalies flagged at the threshold that flags at most `fpr` of the normal items."""
    th = threshold_at_fpr(normal, fpr)
    return sum(a > th for a in anomalous) / len(anomalous)


def roc_curve(normal: Sequence[float], anomalous: Sequence[float]) -> tuple[list[float], list[float]]:
    """(false positive rates, true positive rates) over all thresholds, from (0, 0) to (1, 1)."""
    ths = sorted(set(normal) | set(anomalous), reverse=True)
    fprs, tprs = [0.0], [0.0]
    for th in ths:
        fprs.append(sum(n >= th for n in normal) / len(normal))
        tprs.append(sum(a >= th for a in anomalous) / len(anomalous))
    return fprs, tprs


def separation(normal: Sequence[float], anomalous: Sequence[float]) -> dict[str, float]:
    """AUROC, AUPRC and TPR at 1% FPR (anomalies are the positive class)."""
    return {"auroc": auroc(normal, anomalous), "auprc": auprc(normal, anomalous),
            "tpr_at_1pct_fpr": tpr_at_fpr(normal, anomalous, 0.01)}


def plot_roc(curves: dict[str, tuple[list[float], list[float]]], path, title: str = "") -> None:
    """Write ROC curves {label: (fpr, tpr)} to a PNG at `path` (labels should carry their AUROC)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    for label, (f, t) in curves.items():
        ax.plot(f, t, label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
