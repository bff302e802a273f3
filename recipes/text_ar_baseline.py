"""The autoregressive baseline and judge: a GPT-2-config transformer on the same split and tokenizer.

    python recipes/text_ar_baseline.py --out runs/text_ar [--data FILE] [--max-steps N] [--seed S]
                                       [--config OVERRIDES.yaml] [--match RUN/model]

Same data, 90/10 split by MR and word tokenizer as recipes/text_unconditional.py (same --seed gives the
same split and vocabulary). --match takes a diffusion model folder and sizes the AR model's width so its
parameter count is close to that network's. Writes OUT/model/ (ar_config.json, model.safetensors,
tokenizer.json: the judge that text_unconditional.py --judge takes), OUT/samples.txt, OUT/metrics.json
(held-out NLL per token, the likelihood baseline) and OUT/report.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from multidiff.errors import run_script
from multidiff.model import build_modality
from multidiff.modalities.text.evaluate import diversity
from multidiff.modalities.text.metrics import ARJudge

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text_unconditional import load_config, read_examples  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data")
    ap.add_argument("--out", default="runs/text_ar_baseline")
    ap.add_argument("--max-steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", help="YAML overrides of recipes/configs/text.yaml (section eval.judge, train)")
    ap.add_argument("--match", help="diffusion model folder whose parameter count the AR model should match")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    out = Path(a.out)
    cfg = load_config(a.config)
    log = (lambda s: None) if a.quiet else (lambda s: print(s, flush=True))
    modality = build_modality("text", {**cfg.get("modality_options", {}), "task": "unconditional"})
    train, test, data_report = read_examples(modality, a.data, a.seed)
    modality.prepare(train)
    out.mkdir(parents=True, exist_ok=True)   # only once the data is read (a refused run leaves nothing behind)
    modality.encode(train + test)   # counts UNK tokens and cut lines for the report (the judge tokenises itself)
    tok = modality.tokenizer
    js = dict(cfg["eval"].get("judge", {}))
    if a.match:
        from multidiff.model import DiffusionModel
        target = DiffusionModel.from_pretrained(a.match).net.num_params()
        js["hidden"] = _match_width(tok, js, target)
    judge = ARJudge(tok, layers=js.get("layers", 4), hidden=js.get("hidden", 128), heads=js.get("heads", 4),
                    max_len=max(modality.config.max_len, 8))
    judge.to("cuda" if torch.cuda.is_available() else "cpu")
    batch = cfg.get("train", {}).get("batch_size", 64)
    t0 = time.time()
    curve = judge.fit([e.text for e in train], steps=a.max_steps, batch_size=batch, lr=js.get("lr", 1e-3),
                      seed=a.seed, warmup=min(200, a.max_steps // 10 + 1), eval_texts=[e.text for e in test],
                      eval_every=max(a.max_steps // 10, 1), log=log)
    train_s = time.time() - t0
    judge.save(out / "model")
    nll = judge.nll_per_token([e.text for e in test])
    samples = judge.sample(cfg["eval"].get("samples", 200), seed=a.seed)
    modality.write_samples(samples, out / "samples.txt")
    metrics = {**data_report, "read_counts": modality.report(), "vocab": tok.vocab_size,
               "params": judge.num_params(), "steps": a.max_steps, "train_seconds": round(train_s, 1), "test_nll_nats_per_token": nll,
               "test_nll_bits_per_token": nll / math.log(2), "curve": curve,
               "samples": {**diversity(samples), "judge_ppl": judge.perplexity(samples)}}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    lines = ["# Autoregressive baseline", "",
             f"Data: {metrics['data']} - {metrics['train']} train / {metrics['test']} test sentences; vocabulary "
             f"{metrics['vocab']}. GPT-2 config {js.get('layers', 4)} layers x {judge.settings['hidden']}, "
             f"{metrics['params']:,} parameters, {a.max_steps} steps in {train_s:.0f} s.", "",
             f"Held-out NLL: **{nll:.3f} nats/token** ({nll / math.log(2):.3f} bits/token; tokens = words + EOS).", "",
             "| step | held-out nats/token |", "|---|---|"] + [f"| {s} | {v:.4f} |" for s, v in curve] + \
            ["", "Input accounting: " + json.dumps(metrics["read_counts"]), "", "First samples:", ""] + \
            [f"- {s}" for s in samples[:10]] + [""]
    (out / "report.md").write_text("\n".join(lines))
    print(f"text AR baseline: {nll:.3f} nats/token held out, {metrics['params']:,} parameters; report: {out / 'report.md'}")
    return 0


def _match_width(tok, js: dict, target: int) -> int:
    """Hidden width (a multiple of the head count) whose GPT-2 parameter count is closest to `target`."""
    heads = js.get("heads", 4)
    best, best_gap = js.get("hidden", 128), math.inf
    for h in range(heads * 4, 2048 + 1, heads * 4):
        n = ARJudge(tok, layers=js.get("layers", 4), hidden=h, heads=heads).num_params()
        if abs(n - target) < best_gap:
            best, best_gap = h, abs(n - target)
        if n > target:
            break
    return best


if __name__ == "__main__":
    sys.exit(run_script(main))
