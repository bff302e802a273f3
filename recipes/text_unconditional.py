"""Unconditional text diffusion: train on a line-per-example file, sample, evaluate against an AR model.

    python recipes/text_unconditional.py --out runs/text [--data FILE] [--max-steps N] [--seed S]
                                         [--config OVERRIDES.yaml] [--judge AR_RUN/model] [--resume]
                                         [--init RUN/model]

--data: any text file with one example per line, or E2E's ``MR||sentence`` lines (the sentence side is
used). Default: the project's embedded synthetic restaurant corpus (made by `synthetic_corpus`, not real
data). The split is 90/10 by MR (or by distinct line). An AR judge (GPT-2 config, same split, same number
of steps unless --judge-steps) is trained unless --judge points at one (recipes/text_ar_baseline.py);
its held-out NLL is the likelihood baseline.
Writes OUT/model/ (multidiff sample|nll accept it), OUT/samples.txt, OUT/metrics.json, OUT/report.md.
--resume continues OUT's run from its last checkpoint (its tokenizer and network; the same --data, --seed and
training settings, a larger --max-steps allowed: the cosine schedule then spans the new total).
--init RUN/model starts a new run (step 0, a fresh optimizer and schedule) from a saved model's EMA weights,
tokenizer and network, with the training and sampling settings of --config (e.g. likelihood fine-tuning:
--config recipes/configs/text_elbo_finetune.yaml); the same --data and --seed, so the split is the model's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from multidiff.config import from_dict, load_yaml
from multidiff.errors import ConfigError, run_script
from multidiff.model import DiffusionConfig, DiffusionModel, build_modality
from multidiff.modalities.text import corpus
from multidiff.modalities.text.evaluate import bound_per_token, timed_generate, unconditional_quality
from multidiff.modalities.text.metrics import ARJudge, slot_values
from multidiff.train import has_checkpoint
from multidiff.train.trainer import TrainConfig, Trainer

HERE = Path(__file__).resolve().parent


def load_config(*paths: str | None, base: str = "text.yaml") -> dict:
    """recipes/configs/<base> merged with each of `paths` in turn (section by section, key by key)."""
    cfg = load_yaml(HERE / "configs" / base)
    for path in paths:
        if not path:
            continue
        for section, values in load_yaml(path).items():
            if isinstance(values, dict) and isinstance(cfg.get(section), dict):
                cfg[section] = {**cfg[section], **values}
            else:
                cfg[section] = values
    return cfg


def read_examples(modality, data: str | None, seed: int, clean_mrs: bool = False):
    """(train, test, read report) split by MR; the synthetic corpus when `data` is None. With `clean_mrs`
    the training MRs keep only the slots their sentences realise (`corpus.clean_mrs`; counts in the
    report); the held-out split is never changed."""
    if data:
        items, skipped = modality.read(data)
        source = data
    else:
        items, skipped = corpus.parse_examples(corpus.synthetic_corpus(seed=seed)), []
        source = "embedded synthetic restaurant corpus (synthetic_corpus, seed %d)" % seed
    train, test = corpus.split_by_mr(items, 0.1, seed=seed)
    report = {"data": source, "items": len(items), "train": len(train), "test": len(test),
              "skipped_examples": [f"{w}: {r}" for w, r in skipped[:20]], "skipped": len(skipped)}
    if clean_mrs:
        train, report["clean_mrs"] = corpus.clean_mrs(train, slot_values([e.mr for e in items]))
        report["train"] = len(train)
    return train, test, report


def load_saved(path: str | Path, task: str, *, ema: bool, flag: str) -> DiffusionModel:
    """The saved text model in `path` (a model or run folder); SystemExit naming `flag` when it was trained
    for another task than `task` (unconditional | data2text)."""
    model = DiffusionModel.from_pretrained(path, ema=ema)
    saved = getattr(model.modality.config, "task", model.modality.name)
    if saved != task:
        raise SystemExit(f"{flag}: {path} holds a {saved} model, not {task}; use the recipe that trained it")
    return model


def check_init_seed(init: str | Path, seed: int) -> None:
    """SystemExit when the model in `init` was trained with another --seed: its split differs, so
    sentences it trained on would be held out here."""
    root = Path(init) / "model" if (Path(init) / "model").is_dir() else Path(init)
    state = root / "trainer_state.json"
    if state.is_file():
        saved = json.loads(state.read_text()).get("config", {}).get("seed")
        if saved is not None and int(saved) != seed:
            raise SystemExit(f"--init: {init} was trained with --seed {saved}, which drew its own 90/10 split; "
                             f"pass --seed {saved} so that held-out sentences stay unseen")


def check_resume(cfg: dict, a: argparse.Namespace, out: Path) -> None:
    """SystemExit when --resume would continue OUT's run under other settings than OUT/recipe_args.json
    records: another --data or --seed (another split), or other text, network, data or training settings in
    the merged config (the checkpoint's tokenizer and network would be used silently). A larger --max-steps
    and other eval settings are allowed."""
    path = out / RECIPE_ARGS
    if not path.is_file():
        return
    started, now = json.loads(path.read_text()), recipe_args(cfg, a)
    changed = [f"--{k} {started.get(k)!r} (now {now[k]!r})" for k in ("data", "seed") if started.get(k) != now[k]]
    for section, values in now["settings"].items():
        old = started.get("settings", {}).get(section) or {}
        changed += [f"{section}.{k} {old.get(k)!r} (now {values.get(k)!r})" for k in sorted(set(old) | set(values))
                    if old.get(k) != values.get(k)]
    if changed:
        raise SystemExit(f"--resume continues {out}'s run with the settings it started with; it started with "
                         f"{'; '.join(changed)}. Pass the run's own --data, --seed and --config, or start a new run "
                         "(--init RUN/model starts one from its weights)")


RECIPE_ARGS = "recipe_args.json"
RESUME_SECTIONS = ("modality_options", "net", "train", "data")


def recipe_args(cfg: dict, a: argparse.Namespace) -> dict:
    """What a resumed run must share with the run it continues: the data file, the seed of its split and the
    config sections that shape the model and its training."""
    return {"data": str(Path(a.data).resolve()) if a.data else None, "seed": a.seed,
            "settings": json.loads(json.dumps({k: cfg.get(k) or {} for k in RESUME_SECTIONS}))}


def apply_overrides(model: DiffusionModel, overrides: dict) -> None:
    """Set the text settings of `overrides["modality_options"]` on a loaded model's modality; SystemExit
    for network settings other than the saved ones, or for settings fixed once a model is built
    (TextConfig.STRUCTURAL)."""
    changed = sorted(k for k, v in (overrides.get("net") or {}).items() if model.net_config.get(k) != v)
    if changed:
        raise SystemExit(f"--init keeps the saved network; drop net: {changed} from --config")
    try:
        model.modality.reconfigure(**(overrides.get("modality_options") or {}))
    except ConfigError as e:
        raise SystemExit(f"--init: {e}")


def build_model(cfg: dict, a: argparse.Namespace, out: Path, task: str):
    """(model, train, test, read report): a new text model for `task` prepared on the training split of
    `a.data`, or with `a.resume` the tokenizer and network of OUT's checkpoint (the Trainer then restores its
    weights, optimizer and step), or with `a.init` a saved model (EMA weights) under the training and
    sampling settings of the user's --config file. Sampling settings from cfg["eval"]; the sampling grid spans the trained
    logSNR range."""
    ev, clean = cfg["eval"], (cfg.get("data") or {}).get("clean_mrs", False)
    diffusion = DiffusionConfig(sampler=ev.get("method", "euler"), steps=ev.get("steps", 20))
    init = getattr(a, "init", None)
    if a.resume and init:
        raise SystemExit("--resume continues OUT's run and --init starts a new one from a saved model: give one")
    if a.resume:
        if not has_checkpoint(out):
            raise SystemExit(f"--resume: {out} holds no checkpoint (model/); start without --resume")
        model = load_saved(out, task, ema=False, flag="--resume")
        check_resume(cfg, a, out)
        model.diffusion = diffusion
        train, test, data_report = read_examples(model.modality, a.data, a.seed, clean)
    elif init:
        model = load_saved(init, task, ema=True, flag="--init")
        check_init_seed(init, a.seed)
        apply_overrides(model, load_yaml(a.config) if a.config else {})
        model.diffusion = diffusion
        train, test, data_report = read_examples(model.modality, a.data, a.seed, clean)
    else:
        modality = build_modality("text", {**cfg.get("modality_options", {}), "task": task})
        train, test, data_report = read_examples(modality, a.data, a.seed, clean)
        modality.prepare(train)
        model = DiffusionModel(modality, cfg.get("net", {}), diffusion)
    if not a.resume:
        out.mkdir(parents=True, exist_ok=True)
        (out / RECIPE_ARGS).write_text(json.dumps(recipe_args(cfg, a), indent=1))
    sd, mo = float(model.net.sigma_data()), model.modality.config
    model.diffusion.sigma_min = sd * math.exp(-mo.logsnr_max / 2)
    model.diffusion.sigma_max = sd * math.exp(-mo.logsnr_min / 2)
    return model, train, test, data_report


def train_judge(tok, texts, test, settings: dict, steps: int, seed: int, log, eval_every: int = 0):
    """(judge, held-out curve [(step, nats/token)]): the AR model trained on `texts` for `steps`."""
    judge = ARJudge(tok, layers=settings.get("layers", 4), hidden=settings.get("hidden", 128),
                    heads=settings.get("heads", 4), max_len=settings.get("max_len", 128))
    judge.to("cuda" if torch.cuda.is_available() else "cpu")
    curve = judge.fit(texts, steps=steps, lr=settings.get("lr", 1e-3), seed=seed, warmup=min(200, steps // 10 + 1),
                      eval_texts=test, eval_every=eval_every or max(steps // 4, 1), log=log)
    return judge, curve


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="line file (plain or E2E MR||sentence); default: embedded synthetic corpus")
    ap.add_argument("--out", default="runs/text_unconditional")
    ap.add_argument("--max-steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", help="YAML overrides of recipes/configs/text.yaml")
    ap.add_argument("--judge", help="folder of an AR judge saved by text_ar_baseline.py (OUT/model)")
    ap.add_argument("--judge-steps", type=int, help="steps of the AR judge trained here (default --max-steps)")
    ap.add_argument("--resume", action="store_true", help="continue OUT's run from its last checkpoint")
    ap.add_argument("--init", help="start a new run from this saved model's weights (RUN or RUN/model)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    out = Path(a.out)   # made once the data and settings are read (a refused run leaves nothing behind)
    cfg = load_config(a.config)
    log = (lambda s: None) if a.quiet else (lambda s: print(s, flush=True))

    model, train, test, data_report = build_model(cfg, a, out, "unconditional")
    modality = model.modality
    tok = modality.tokenizer
    judge = None
    if a.judge:   # loaded (and checked against the tokenizer) before training, not after it
        judge = ARJudge.load(a.judge)
        if judge.tok.fingerprint != tok.fingerprint:
            raise SystemExit(f"--judge {a.judge} was trained with another vocabulary than this run's tokenizer; "
                             "train it with recipes/text_ar_baseline.py on the same --data, --seed and --config")
    every = cfg["eval"].get("curve_every", 0)
    tcfg = from_dict(TrainConfig, {**cfg.get("train", {}), "max_steps": a.max_steps, "seed": a.seed, "eval_every": every,
                                   "quiet": a.quiet or not sys.stderr.isatty()}, "train")
    enc_train, enc_test = modality.encode(train), modality.encode(test)
    log(f"text: {len(train)} train / {len(test)} test sentences, vocabulary {modality.tokenizer.vocab_size}, "
        f"network {model.net.num_params():,} parameters")
    t0 = time.time()
    curve = logged_curve(out) if a.resume else []   # minutes count from the start of each invocation

    def bound_curve(m, step: int) -> dict:   # held-out bound (EMA weights, one estimate per sentence)
        b = bound_per_token(m.modality, m.net, enc_test, repeats=1, seed=a.seed)["nats_per_token"]
        seconds = round(time.time() - t0, 1)
        curve.append({"step": step, "train_seconds": seconds, "bound": b})
        log(f"step {step}: held-out bound {b:.3f} nats/token")
        return {"bound_nats_per_token": b, "train_seconds": seconds}

    trainer = Trainer(model, enc_train, tcfg, out, eval_fn=bound_curve if every else None)
    train_metrics = trainer.train(resume=a.resume)
    train_s = time.time() - t0
    if trainer.ema is not None:
        trainer.ema.copy_to(model)
    net = model.net.eval()

    reps = cfg["eval"].get("bound_repeats", 4)
    bound = bound_per_token(modality, net, enc_test, repeats=reps, seed=a.seed)
    sampler = modality.net.logsnr_sampler
    n, steps = cfg["eval"].get("samples", 200), cfg["eval"].get("steps", 20)
    samples, speed = timed_generate(modality, net, n, steps=steps, method=cfg["eval"].get("method", "euler"),
                                    seed=a.seed)
    modality.write_samples(samples, out / "samples.txt")

    real_test = [e.text for e in test]
    if judge is not None:
        judge = judge.to(next(net.parameters()).device)
        judge_steps, ar_curve = None, []
    else:
        judge_steps = a.judge_steps or a.max_steps
        t1 = time.time()
        judge, ar_curve = train_judge(tok, [e.text for e in train], real_test, cfg["eval"].get("judge", {}),
                                      judge_steps, a.seed, log, eval_every=every)
        log(f"AR judge trained {judge_steps} steps in {time.time() - t1:.0f} s")
        judge.save(out / "judge")
    ar_nll = judge.nll_per_token(real_test)
    quality = unconditional_quality(samples, real_test, judge)

    metrics = {
        **data_report, "read_counts": modality.report(),
        "vocab": tok.vocab_size, "params_diffusion": model.net.num_params(), "params_ar": judge.num_params(),
        "train_steps": train_metrics.get("step"), "train_seconds": round(train_s, 1),
        "bound": bound, "ar_nll_nats_per_token": ar_nll, "ar_steps": judge_steps,
        "bound_over_ar": bound["nats_per_token"] / ar_nll, "curve": with_ar(curve, ar_curve),
        "logsnr_mass_in_[-4,2]": sampler.mass_in(-4, 2),
        "quality": quality, "sampling": speed, "sampler": {"method": cfg["eval"].get("method", "euler"),
                                                            "steps": steps, "grid": modality.config.grid},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_report(out, metrics, samples)
    print("five samples:")
    for s in samples[:5]:
        print("  ", s)
    q = quality
    print(f"bound {bound['nats_per_token']:.3f} nats/token vs AR {ar_nll:.3f} (ratio {metrics['bound_over_ar']:.2f}); "
          f"judge ppl samples/real {q.get('judge_ppl_ratio', float('nan')):.2f}; distinct-2 ratio "
          f"{q['distinct_2_ratio']:.2f}; {speed['seq_per_s']:.1f} seq/s at {steps} NFE")
    print(f"text (unconditional): bound/AR {metrics['bound_over_ar']:.2f}, judge ppl ratio "
          f"{q.get('judge_ppl_ratio', float('nan')):.2f}; report: {out / 'report.md'}")
    return 0


def logged_curve(out: Path) -> list[dict]:
    """The held-out bound curve a run logged in OUT/log.jsonl before it was resumed (minutes where logged)."""
    curve = []
    for line in (out / "log.jsonl").read_text().splitlines() if (out / "log.jsonl").exists() else []:
        rec = json.loads(line)
        if rec.get("event") == "eval" and "bound_nats_per_token" in rec:
            curve.append({"step": rec["step"], "train_seconds": rec.get("train_seconds"),
                          "bound": rec["bound_nats_per_token"]})
    return curve


def with_ar(curve: list[dict], ar_curve: list) -> list[dict]:
    """The diffusion bound curve with the AR model's held-out NLL at the same step and their ratio."""
    ar = dict(ar_curve)
    return [{**c, "ar_nll": ar[c["step"]], "ratio": c["bound"] / ar[c["step"]]} if c["step"] in ar else c
            for c in curve]


def write_report(out: Path, m: dict, samples: list[str]) -> None:
    b, q, s = m["bound"], m["quality"], m["sampling"]
    se = "" if b.get("nats_per_token_se") is None else \
        f" (bound: mean of {b['repeats']} estimates per sentence, standard error {b['nats_per_token_se']:.3f} nats/token)"
    lines = [
        "# Unconditional text diffusion", "",
        f"Data: {m['data']} - {m['train']} train / {m['test']} test sentences (split by MR), vocabulary {m['vocab']}.",
        f"Diffusion network {m['params_diffusion']:,} parameters, {m['train_steps']} steps in {m['train_seconds']:.0f} s; "
        f"AR judge {m['params_ar']:,} parameters" + (f", {m['ar_steps']} steps." if m["ar_steps"] else " (loaded)."), "",
        "## Likelihood (held-out, per token = words + EOS)", "",
        "| model | nats/token | bits/token |", "|---|---|---|",
        f"| diffusion (bound) | {b['nats_per_token']:.3f} | {b['bits_per_token']:.3f} |",
        f"| AR (same split) | {m['ar_nll_nats_per_token']:.3f} | {m['ar_nll_nats_per_token'] / math.log(2):.3f} |", "",
        f"Ratio bound / AR: **{m['bound_over_ar']:.2f}**{se}. Bound terms (nats/token): diffusion {b['diffusion']:.3f}, "
        f"prior {b['prior']:.4f}, reconstruction {b['reconstruction']:.4f}, length {b['length']:.3f}. "
        f"The fitted logSNR sampler puts {m['logsnr_mass_in_[-4,2]']:.0%} of draws in logSNR_rel [-4, 2].", "",
    ] + curve_table(m["curve"]) + [
        "## Samples", "",
        "| set | judge ppl | distinct-1 | distinct-2 | distinct-4 | self-BLEU |", "|---|---|---|---|---|---|",
    ]
    for name in ("samples", "real"):
        d = q[name]
        lines.append(f"| {name} | {d.get('judge_ppl', float('nan')):.2f} | {d['distinct_1']:.3f} | {d['distinct_2']:.3f} | "
                     f"{d['distinct_4']:.3f} | {d['self_bleu']:.3f} |")
    lines += ["", f"Judge perplexity ratio samples/real {q.get('judge_ppl_ratio', float('nan')):.2f} (target <= 1.25); "
              f"distinct-2 ratio {q['distinct_2_ratio']:.2f} (target >= 0.9).",
              f"Sampling: {s['sequences']} sequences at {s['nfe']} NFE ({m['sampler']['method']}, {m['sampler']['grid']} grid) "
              f"in {s['seconds']:.1f} s = {s['seq_per_s']:.1f} seq/s; sampler overhead {s['sampler_overhead']:.3f}x the "
              f"time inside the denoiser calls (target <= 1.05); {s['overhead_vs_bare_network']:.3f}x bare network "
              "evaluations (the readout softmax(logits) @ E counted as overhead).", "", "Input accounting: " + json.dumps(m["read_counts"]), "",
              "First samples:", ""] + [f"- {t}" for t in samples[:10]] + [""]
    (out / "report.md").write_text("\n".join(lines))


def minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def curve_table(curve: list[dict]) -> list[str]:
    if not curve:
        return []
    rows = [f"| {c['step']} | {minutes(c['train_seconds'])} | {c['bound']:.3f} | {c.get('ar_nll', float('nan')):.3f} | "
            f"{c.get('ratio', float('nan')):.2f} |" for c in curve]
    return ["## Bound over training (one estimate per sentence, EMA weights)", "",
            "| step | minutes (since the start or resume) | bound (nats/token) | AR at the same step | ratio |", "|---|---|---|---|---|",
            *rows, ""]


if __name__ == "__main__":
    sys.exit(run_script(main))
