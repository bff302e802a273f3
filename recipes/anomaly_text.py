"""Anomaly detection on text: train on one domain's sentences, score held-out in-domain and out-of-domain ones.

    python recipes/anomaly_text.py --out runs/anomaly_text                      # synthetic restaurant corpus
    python recipes/anomaly_text.py --normal ../shared/data/e2e/e2e_nlg_valid.txt --out runs/anomaly_e2e \
        --max-steps 3000 [--anomalous FILE] [--config OVERRIDES.yaml]

Normal data: `--normal`, a line file (plain text, or E2E ``MR||sentence`` lines: the sentence is used), or
the project's embedded synthetic restaurant corpus (`corpus.synthetic_corpus`). It is split 90/10 by MR
(or by distinct line), so no held-out sentence shares its MR with a training one.

Anomalies: `--anomalous` (a line file, one type "given"), or made here by
`multidiff.modalities.text.anomalies`: word-shuffled held-out sentences (`shuffled`: same words, broken
order), weather reports (`weather`) and product reviews (`reviews`), `eval.per_type` each.

Score: the text modality's variational bound (method `elbo`, the only one text has) in bits per token
(words + EOS, length term included), the mean of `eval.repeats` stratified estimates per item. Words the
tokenizer never saw in training become UNK; the report gives the UNK share of each type, since an
out-of-domain vocabulary is the easy part of the task (the shuffled sentences have none).

With `--model RUN` nothing is trained: RUN's saved text model (for example `recipes/text_unconditional.py`'s
output on the same `--normal` file and `--seed`, hence the same split) scores the held-out sentences.

Writes OUT/model/ (when it trains), OUT/metrics.json (AUROC, AUPRC, TPR at 1% FPR over all anomalies and per type, items/s),
OUT/report.md and OUT/roc.png. Config: recipes/configs/text.yaml merged with --config (sections
modality_options, net, train, eval).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multidiff import scoring  # noqa: E402
from multidiff.config import from_dict  # noqa: E402
from multidiff.errors import run_script  # noqa: E402
from multidiff.model import DiffusionConfig, DiffusionModel, build_modality  # noqa: E402
from multidiff.modalities.text import corpus  # noqa: E402
from multidiff.modalities.text.anomalies import other_domain, word_shuffled  # noqa: E402
from multidiff.train.trainer import TrainConfig, Trainer  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from text_unconditional import load_config as load_text_config  # noqa: E402
EVAL_DEFAULTS = {"per_type": 200, "repeats": 8, "batch_size": 128}


def load_config(path: str | None) -> dict:
    """recipes/configs/text.yaml merged with `path` (as the text recipes do), eval settings of this recipe."""
    cfg = load_text_config(path)
    cfg["eval"] = {**EVAL_DEFAULTS, **{k: v for k, v in cfg.get("eval", {}).items() if k in EVAL_DEFAULTS}}
    return cfg


def score(model, items, seed: int, repeats: int, batch_size: int) -> list[float]:
    """Bits per token, the mean of `repeats` bound estimates per item.

    The text bound draws one logSNR per sequence, stratified over the batch (u0 + i / B). Scoring a chunk
    of c items laid out `repeats` times ([x1..xc, x1..xc, ...]) in one batch puts each item's copies 1/repeats
    apart in u: a stratified estimate per item, much less noisy than `repeats` independent draws."""
    c = max(1, batch_size // repeats)
    out: list[float] = []
    for start in range(0, len(items), c):
        chunk = list(items[start:start + c])
        s = scoring.score_items(model, chunk * repeats, "elbo", seed=seed + start, batch_size=len(chunk) * repeats)
        out += [sum(s[j::len(chunk)]) / repeats for j in range(len(chunk))]
    return out


def unk_share(modality, texts: list[str]) -> float:
    tok = modality.tokenizer
    ids = tok.encode_batch(texts, modality.config.max_len)
    return sum(i == tok.unk_id for s in ids for i in s) / max(1, sum(len(s) for s in ids))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--normal", help="line file (plain or E2E MR||sentence); default: embedded synthetic corpus")
    ap.add_argument("--anomalous", help="line file of anomalous sentences (default: made here)")
    ap.add_argument("--out", default="runs/anomaly_text")
    ap.add_argument("--max-steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", help="YAML overrides of recipes/configs/text.yaml")
    ap.add_argument("--model", help="score with this trained run/model folder instead of training one")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(a.config)
    ev = cfg["eval"]
    log = (lambda s: None) if a.quiet else (lambda s: print(s, flush=True))

    # --- data --------------------------------------------------------------------------------------
    model = DiffusionModel.from_pretrained(a.model).eval() if a.model else None
    modality = model.modality if model else build_modality("text", {**cfg.get("modality_options", {}),
                                                                    "task": "unconditional"})
    if a.normal:
        items, skipped = modality.read(a.normal)
        source = a.normal
    else:
        items, skipped = corpus.parse_examples(corpus.synthetic_corpus(seed=a.seed)), []
        source = f"embedded synthetic restaurant corpus (synthetic_corpus, seed {a.seed})"
    train, test = corpus.split_by_mr(items, 0.1, seed=a.seed)
    if model is None:
        modality.prepare(train)
    test_texts = [e.text for e in test]
    per_type = int(ev["per_type"])
    if a.anomalous:
        anomalies = {"given": [e.text for e in modality.read(a.anomalous)[0]]}
    else:
        pick = random.Random(a.seed).sample(range(len(test_texts)), min(per_type, len(test_texts)))
        anomalies = {"shuffled": word_shuffled([test_texts[i] for i in pick], seed=a.seed),
                     "weather": other_domain(per_type, "weather", seed=a.seed),
                     "reviews": other_domain(per_type, "reviews", seed=a.seed)}
    (out / "anomalies.txt").write_text("".join(f"{k}\t{s}\n" for k, v in anomalies.items() for s in v))

    # --- train, unless --model gave a trained model -----------------------------------------------------
    log(f"text: {len(train)} train / {len(test)} held-out sentences, anomalies "
        + ", ".join(f"{k} {len(v)}" for k, v in anomalies.items()) + f"; vocabulary {modality.tokenizer.vocab_size}")
    if model is not None:
        trained = Path(a.model) / "metrics.json"
        prior = json.loads(trained.read_text()) if trained.is_file() else {}
        train_metrics, train_seconds = {"step": prior.get("train_steps"), "loss": None}, 0.0
    else:
        model = DiffusionModel(modality, cfg.get("net", {}), DiffusionConfig())
        sd = float(model.net.sigma_data())  # the saved model's sigma range = the trained logSNR range
        mo = modality.config
        model.diffusion.sigma_min = sd * math.exp(-mo.logsnr_max / 2)
        model.diffusion.sigma_max = sd * math.exp(-mo.logsnr_min / 2)
        tcfg = from_dict(TrainConfig, {**cfg.get("train", {}), "max_steps": a.max_steps, "seed": a.seed,
                                       "quiet": a.quiet or not sys.stderr.isatty()}, "train")
        t0 = time.time()
        trainer = Trainer(model, modality.encode(train), tcfg, out)
        train_metrics = trainer.train()
        train_seconds = time.time() - t0
        if trainer.ema is not None:
            trainer.ema.copy_to(model)
        model.eval()

    # --- score -------------------------------------------------------------------------------------
    reps, bs = int(ev["repeats"]), int(ev["batch_size"])
    t0 = time.time()
    s_norm = score(model, test_texts, a.seed, reps, bs)
    s_types = {k: score(model, v, a.seed, reps, bs) for k, v in anomalies.items()}
    n_items = len(s_norm) + sum(len(v) for v in s_types.values())
    rate = n_items * reps / (time.time() - t0)
    s_anom = [s for v in s_types.values() for s in v]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    result = {**scoring.separation(s_norm, s_anom), "items_per_second": rate, "repeats": reps,
              "units": scoring.units(model, "elbo"),
              "per_type": {k: scoring.separation(s_norm, v) for k, v in s_types.items()},
              "mean_score_normal": mean(s_norm), "mean_score_per_type": {k: mean(v) for k, v in s_types.items()}}
    metrics = {
        "normal_data": source, "model": a.model or str(out / "model"), "items": len(items), "skipped": len(skipped), "train": len(train),
        "test_normal": len(test), "test_anomalous": len(s_anom),
        "anomaly_counts": {k: len(v) for k, v in anomalies.items()},
        "unk_share": {"normal": unk_share(modality, test_texts),
                      **{k: unk_share(modality, v) for k, v in anomalies.items()}},
        "vocab": modality.tokenizer.vocab_size, "net_params": model.net.num_params(),
        "train_steps": train_metrics["step"], "train_loss": train_metrics.get("loss"),
        "train_seconds": round(train_seconds, 1), "threads": torch.get_num_threads(), "methods": {"elbo": result},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    scoring.plot_roc({f"all (AUROC {result['auroc']:.3f})": scoring.roc_curve(s_norm, s_anom),
                      **{f"{k} ({result['per_type'][k]['auroc']:.3f})": scoring.roc_curve(s_norm, v)
                         for k, v in s_types.items()}},
                     out / "roc.png", "text: held-out normal vs anomalies (elbo)")
    (out / "report.md").write_text(report(metrics))
    log(f"elbo: AUROC {result['auroc']:.3f}; per type "
        + ", ".join(f"{k} {v['auroc']:.3f}" for k, v in result["per_type"].items()))
    print(f"anomaly (text): AUROC {result['auroc']:.3f} with elbo; report: {out / 'report.md'}")
    return metrics


def report(m: dict) -> str:
    r = m["methods"]["elbo"]
    lines = ["# Anomaly detection on text", "",
             f"Normal data: {m['normal_data']} - {m['train']} training / {m['test_normal']} held-out sentences "
             f"(split by MR), vocabulary {m['vocab']}. Diffusion network `{m['model']}`, {m['net_params']:,} parameters, "
             f"{m['train_steps']} training steps. Score: the variational bound ({r['units']}, "
             f"mean of {r['repeats']} estimates), {r['items_per_second']:.1f} bound estimates per second.", "",
             "| anomalies | count | UNK share | mean bits/token | AUROC | AUPRC | TPR @ 1% FPR |",
             "|---|---|---|---|---|---|---|",
             f"| (held-out normal) | {m['test_normal']} | {m['unk_share']['normal']:.1%} | "
             f"{r['mean_score_normal']:.3f} | | | |"]
    for k, s in r["per_type"].items():
        lines.append(f"| {k} | {m['anomaly_counts'][k]} | {m['unk_share'][k]:.1%} | {r['mean_score_per_type'][k]:.3f} "
                     f"| {s['auroc']:.3f} | {s['auprc']:.3f} | {s['tpr_at_1pct_fpr']:.3f} |")
    lines += [f"| **all** | {m['test_anomalous']} | | | **{r['auroc']:.3f}** | {r['auprc']:.3f} | "
              f"{r['tpr_at_1pct_fpr']:.3f} |", "",
              "Examples of the anomalies: `anomalies.txt`. ![ROC](roc.png)", ""]
    return "\n".join(lines)



if __name__ == "__main__":
    sys.exit(run_script(main))
