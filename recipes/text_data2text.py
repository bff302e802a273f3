"""Data-to-text (E2E): meaning representation -> sentence by partial noising (DiffuSeq), evaluated on held-out MRs.

    python recipes/text_data2text.py --out runs/text_d2t [--data E2E_FILE] [--max-steps N] [--seed S]
                                     [--config OVERRIDES.yaml] [--model RUN/model] [--resume]

--data: lines ``slot : value | slot : value ...||sentence`` (E2E as in Diffusion-LM's files); default: the
embedded synthetic restaurant corpus (same format, made by the project). Split 90/10 by MR; one output
per held-out MR at `eval.steps` NFE. With `eval.mbr` = k > 1 candidates per MR, one is kept by `eval.select`:
`mbr` (the candidate closest in BLEU to the others) or `slots` (the fewest slot errors against the MR: a
reranker that reads the MR only, and optimises what the slot error rate measures; k x the NFE). `eval.seeds`
= n > 1 repeats the generation with sampling seeds SEED..SEED+n-1 and reports the slot error rate's mean and
standard error over them (the table, samples.txt and BLEU are the first seed's).
Training MRs are reduced to the slots each training sentence realises (`data.clean_mrs`, default true: the
cleaning of Dušek et al. 2019, `corpus.clean_mrs`; counts in metrics.json; false trains on the MRs as given);
held-out MRs and references are never changed.
--model evaluates a saved model (this recipe's OUT/model, same --data and --seed for the same split) with
this config's sampling settings (modality_options.temperature, guidance, clamp, clamp_from, length_quantile;
eval) instead of training one.
--resume continues OUT's stopped run from its last checkpoint (as in text_unconditional.py).
Metrics: corpus BLEU-4 against all references of the MR, ROUGE-L, slot error rate (and the errors by slot,
summed over the sampling seeds), the bound on the held-out sentences given their MR, sequences per second.
Writes OUT/model/, OUT/samples.txt (MR || output), OUT/metrics.json, OUT/report.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from statistics import mean, stdev

import torch

from multidiff.config import from_dict
from multidiff.errors import run_script
from multidiff.modalities.text.evaluate import (bound_per_token, data2text_quality, group_by_mr, mbr_select,
                                                slot_error_summary, slot_select, timed_generate)
from multidiff.modalities.text.metrics import slot_errors_by_slot, slot_values
from multidiff.train.trainer import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text_unconditional import build_model, load_config, load_saved, read_examples  # noqa: E402


SELECT = ("mbr", "slots")


def train_model(cfg: dict, a: argparse.Namespace, out: Path, log):
    """Build and train the data2text model from the config: (model, train, test, data_report, train
    metrics, seconds)."""
    model, train, test, data_report = build_model(cfg, a, out, "data2text")
    modality = model.modality
    tcfg = from_dict(TrainConfig, {**cfg.get("train", {}), "max_steps": a.max_steps, "seed": a.seed,
                                   "quiet": a.quiet or not sys.stderr.isatty()}, "train")
    log(f"data2text: {len(train)} train / {len(test)} test pairs, vocabulary {modality.tokenizer.vocab_size}, "
        f"network {model.net.num_params():,} parameters")
    t0 = time.time()
    trainer = Trainer(model, modality.encode(train), tcfg, out)
    train_metrics = trainer.train(resume=a.resume)
    train_s = time.time() - t0
    if trainer.ema is not None:
        trainer.ema.copy_to(model)
    return model, train, test, data_report, train_metrics, train_s


def generate_outputs(modality, net, sources, ev: dict, sampling: dict, seed: int, values: dict
                     ) -> tuple[list[str], dict]:
    """One output per source MR for sampling seed `seed`: `ev["mbr"]` candidates (seeds seed, seed + 1000, ...)
    kept by `ev["select"]` (`values`: slot -> every value, for the slot reranker's contradictions).
    Returns (outputs, the first candidate run's speed)."""
    k, speed, cands = max(1, ev.get("mbr", 1)), None, []
    for j in range(k):
        outs, sp = timed_generate(modality, net, len(sources), steps=ev.get("steps", 20),
                                  method=ev.get("method", "euler"), seed=seed + 1000 * j, source=sources,
                                  diffusion_config=sampling)
        cands.append(outs)
        speed = speed or sp
    per_source = [list(c) for c in zip(*cands)]
    return (mbr_select(per_source) if ev.get("select", "mbr") == "mbr"
            else slot_select(sources, per_source, values)), speed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data")
    ap.add_argument("--out", default="runs/text_data2text")
    ap.add_argument("--max-steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", help="YAML overrides of recipes/configs/text.yaml + text_data2text.yaml")
    ap.add_argument("--max-sources", type=int, default=0, help="evaluate on at most this many held-out MRs")
    ap.add_argument("--model", help="evaluate this saved model folder instead of training one")
    ap.add_argument("--resume", action="store_true", help="continue OUT's run from its last checkpoint")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    out = Path(a.out)   # made once the data and settings are read (a refused run leaves nothing behind)
    cfg = load_config(str(Path(__file__).parent / "configs" / "text_data2text.yaml"), a.config)
    log = (lambda s: None) if a.quiet else (lambda s: print(s, flush=True))

    ev = cfg["eval"]
    if not isinstance(ev.get("seeds", 1), int) or ev.get("seeds", 1) < 1:
        raise SystemExit(f"eval.seeds {ev.get('seeds')!r}: give the number of sampling seeds, an integer >= 1")
    if ev.get("select", "mbr") not in SELECT:
        raise SystemExit(f"eval.select {ev.get('select')!r}: choose one of {', '.join(SELECT)}")
    unknown = set(cfg.get("data") or {}) - {"clean_mrs"}
    clean = (cfg.get("data") or {}).get("clean_mrs", False)
    if unknown:
        raise SystemExit(f"data: unknown option(s) {', '.join(sorted(unknown))}; the data section takes clean_mrs")
    if a.model and a.resume:
        raise SystemExit("--model evaluates a saved model and --resume continues training: give one of them")
    if a.model:
        model = load_saved(a.model, "data2text", ema=True, flag="--model").eval()
        modality = model.modality
        train, test, data_report = read_examples(modality, a.data, a.seed, clean)
        train_metrics, train_s = {"step": None}, 0.0
        log(f"data2text: evaluating {a.model} on {len(test)} test pairs (nothing trained)")
    else:
        model, train, test, data_report, train_metrics, train_s = train_model(cfg, a, out, log)
        modality = model.modality
    out.mkdir(parents=True, exist_ok=True)
    net = model.net.eval()

    sources, refs = group_by_mr(test)
    if a.max_sources:
        sources, refs = sources[:a.max_sources], refs[:a.max_sources]
    k, steps, select = max(1, ev.get("mbr", 1)), ev.get("steps", 20), ev.get("select", "mbr")
    mo = cfg["modality_options"]
    sampling = {"text": {key: mo[key] for key in ("temperature", "guidance", "clamp", "clamp_from", "length_quantile")
                         if key in mo}}
    runs, values = [], slot_values([e.mr for e in train + test])   # runs: (outputs, quality, speed) per seed
    for seed in range(a.seed, a.seed + ev.get("seeds", 1)):
        outputs, speed = generate_outputs(modality, net, sources, ev, sampling, seed, values)
        runs.append((outputs, data2text_quality(sources, refs, outputs, train + test), speed))
    outputs, quality, speed = runs[0]
    by_seed = [q["slot_error_rate"] for _, q, _ in runs]
    by_slot = slot_errors_by_slot([s.mr for s in sources] * len(runs), [o for outs, _, _ in runs for o in outs], values)
    bound = bound_per_token(modality, net, modality.encode(test), repeats=ev.get("bound_repeats", 2), seed=a.seed)
    (out / "samples.txt").write_text("".join(f"{s.mr_text}||{o}\n" for s, o in zip(sources, outputs)), "utf-8")
    metrics = {**data_report, "read_counts": modality.report(), "vocab": modality.tokenizer.vocab_size,
               "params": model.net.num_params(), "train_steps": train_metrics.get("step"),
               "train_seconds": round(train_s, 1), "model": a.model or str(out / "model"), "nfe": steps,
               "candidates": k, "select": select, "sampling_settings": sampling["text"], **quality,
               "slot_error_rate_by_seed": by_seed, "slot_error_rate_mean": mean(by_seed),
               "slot_error_rate_se": stdev(by_seed) / len(by_seed) ** 0.5 if len(by_seed) > 1 else None,
               "slot_errors_by_slot_all_seeds": by_slot,
               "bound_nats_per_token": bound["nats_per_token"], "bound": bound, "sampling": speed}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    lines = ["# Data-to-text (partial noising)", "",
             f"Data: {metrics['data']} - {metrics['train']} train / {metrics['test']} test pairs (split by MR), "
             f"{quality['sources']} held-out MRs. Network {metrics['params']:,} parameters, "
             + (f"saved model `{a.model}` (not trained here)." if a.model
                else f"{metrics['train_steps']} steps in {train_s:.0f} s."), "",
             "| BLEU-4 | ROUGE-L | slot error rate | bound nats/token | seq/s |", "|---|---|---|---|---|",
             f"| {quality['bleu']:.3f} | {quality['rouge_l']:.3f} | {quality['slot_error_rate']:.3f} | "
             f"{bound['nats_per_token']:.3f} | {speed['seq_per_s']:.1f} |", "",
             f"{steps} NFE per candidate ({ev.get('method', 'euler')}), {k} candidate(s) per MR"
             + (f", kept by {select}" if k > 1 else "") + ". Slot error rate = MR "
             "values missing from or contradicted by the output, over all slots (target <= 0.10). The held-out "
             f"references themselves score {quality['reference_slot_error_rate']:.3f} with the same checker.", ""]
    if len(runs) > 1:
        lines += [f"Over {len(runs)} sampling seeds ({a.seed}-{a.seed + len(runs) - 1}; the table is the first): "
                  f"slot error rate {metrics['slot_error_rate_mean']:.3f} +- {metrics['slot_error_rate_se']:.3f} "
                  f"(mean +- s.e.; by seed {', '.join(f'{x:.3f}' for x in by_seed)}).", ""]
    lines += [f"Slot errors by slot over the {len(runs)} sampling seed(s) (wrong / slots: missing, contradicted): "
              f"{slot_error_summary(by_slot)}.", ""]
    lines += ["Input accounting: " + json.dumps(metrics["read_counts"]), ""]
    if "clean_mrs" in data_report:
        c = data_report["clean_mrs"]
        lines += [f"Training MRs cleaned (data.clean_mrs): {c['changed']} of {metrics['train']} examples lost the "
                  f"slots their sentence does not say ({c['slots_before']} -> {c['slots_after']} slots; by slot: "
                  f"{json.dumps(c['dropped_slots'])}); {c['dropped_examples']} examples removed.", ""]
    lines += ["First outputs:", ""]
    lines += [f"- `{s.mr_text}` -> {o}" for s, o in list(zip(sources, outputs))[:10]] + [""]
    (out / "report.md").write_text("\n".join(lines))
    spread = (f" (mean of {len(runs)} sampling seeds {metrics['slot_error_rate_mean']:.3f} +- "
              f"{metrics['slot_error_rate_se']:.3f})" if len(runs) > 1 else "")
    print(f"text (data2text): BLEU {quality['bleu']:.3f}, ROUGE-L {quality['rouge_l']:.3f}, "
          f"SER {quality['slot_error_rate']:.3f}{spread} on {quality['sources']} held-out MRs; "
          f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
