"""Anomaly detection on audio: train on normal clips, score held-out normal clips and non-speech anomalies.

    python recipes/anomaly_audio.py --out runs/anomaly_audio                     # synthetic notes (offline)
    python recipes/anomaly_audio.py --normal ../shared/data/fsdd/recordings --out runs/anomaly_fsdd \
        --max-steps 3000 [--anomalous FOLDER] [--methods denoise,contrast,elbo,ode] [--config OVERRIDES.yaml]

The model is an **unconditional** mel diffusion model (labels are not read: `label_pattern: null`), so the
scores are those of p(clip), not of p(clip | digit). Normal data: `--normal` (a folder of clips), or the
project's synthetic labelled notes (`synthetic.make_synthetic_set`) written to OUT/data. A random
`eval.holdout` fraction of the normal clips is held out (never trained on) and scored as the normal class.

Anomalies: `--anomalous` (a folder; its sub-folders, if any, name the anomaly types), or made here by
`multidiff.modalities.audio.anomalies` into OUT/anomalies: tones, noise bursts, clicks, music-like notes
(`eval.per_type` each) and time-reversed held-out normal clips (`reversed`). Every file goes through the
same reader (resampling, peak level, centre pad/crop to `clip_seconds`) as the training data.

With `--model RUN` no model is trained: RUN's saved model (for example the class-conditional digits model of
`recipes/audio_spoken_digits.py`, trained on four FSDD speakers) scores the clips of the speaker it never
heard (`--test-speaker`, default RUN/metrics.json's `held_out_speaker`) as the normal class. A conditional
model scores every item alike (no item's own label is used): `--labels null` (default) with the null label
(the classifier-free-guidance unconditional branch, p(clip)), `--labels best` with each digit label in turn,
keeping the lowest score (the clip explained as its most likely class; ten times the cost):

    python recipes/anomaly_audio.py --normal ../shared/data/fsdd/recordings --model runs/fsdd --out runs/anomaly_fsdd \
        --labels best

Writes OUT/model/ (when it trains), OUT/metrics.json (per method: AUROC, AUPRC, TPR at 1% FPR over all anomalies and per
anomaly type, items/s), OUT/report.md and OUT/roc.png. Config sections: modality_options, net,
diffusion, train, eval (holdout, per_type, reversed, synthetic_per_speaker, batch_size, seeds, denoise_sigmas and
contrast_sigmas: the noise levels of `denoise` and `contrast`, contrast_weight).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multidiff import scoring  # noqa: E402
from multidiff.config import apply_overrides, from_dict, load_yaml  # noqa: E402
from multidiff.errors import run_script  # noqa: E402
from multidiff.model import DiffusionConfig, DiffusionModel, build_modality  # noqa: E402
from multidiff.modalities.audio.anomalies import MAKERS, make_anomaly_set, time_reversed  # noqa: E402
from multidiff.modalities.audio.io import write_audio  # noqa: E402
from multidiff.modalities.audio.synthetic import make_synthetic_set  # noqa: E402
from multidiff.train.trainer import TrainConfig, Trainer  # noqa: E402

DEFAULTS = {
    "modality_options": {"preset": "speech-8k", "clip_seconds": 1.0, "label_pattern": None},
    "net": {"channels": 16, "channel_mults": [1, 2, 2], "attention_levels": [], "mid_attention": False},
    "diffusion": {},
    "train": {"batch_size": 16, "lr": 1e-3, "warmup_steps": 50, "lr_schedule": "cosine", "ema_decay": 0.995,
              "precision": "fp32", "checkpoint_every": 1000, "log_every": 50, "grad_clip": 1.0},
    "eval": {"holdout": 0.1, "per_type": 40, "reversed": 40, "synthetic_per_speaker": 12, "batch_size": 32,
             "seeds": 1, "denoise_sigmas": list(scoring.DENOISE_SIGMAS),
             "contrast_sigmas": list(scoring.CONTRAST_SIGMAS), "contrast_weight": scoring.CONTRAST_WEIGHT},
}


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def anomaly_type(path: str, root: Path, generated: bool) -> str:
    """Generated files: the `{kind}_` prefix; a user folder: its first sub-folder, else "given"."""
    p = Path(path)
    if generated:
        return p.stem.split("_", 1)[0]
    rel = p.relative_to(root) if p.is_relative_to(root) else Path(p.name)
    return rel.parts[0] if len(rel.parts) > 1 else "given"


def held_out_speaker(run: Path) -> str:
    """The speaker a recipe run held out (RUN/metrics.json), for `--model`."""
    try:
        return json.loads((run / "metrics.json").read_text())["held_out_speaker"]
    except (OSError, ValueError, KeyError):
        raise SystemExit(f"{run}/metrics.json names no held-out speaker; pass --test-speaker") from None


def score(model, items, method: str, seed: int, seeds: int, batch_size: int, **options) -> list[float]:
    """Scores averaged over `seeds` independent seeds (seed, seed + 1000, ...); `options` go to score_items."""
    runs = [scoring.score_items(model, items, method, seed=seed + 1000 * r, batch_size=batch_size, **options)
            for r in range(seeds)]
    return [sum(v) / len(v) for v in zip(*runs)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--normal", help="folder of normal clips (default: synthesise labelled notes in OUT/data)")
    ap.add_argument("--anomalous", help="folder of anomalous clips (default: made here, see the docstring)")
    ap.add_argument("--out", default="runs/anomaly_audio")
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", help="YAML with sections modality_options, net, diffusion, train, eval")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. --set eval.per_type=20")
    ap.add_argument("--methods", default="denoise,contrast,elbo",
                    help="comma-separated: elbo, ode, denoise, contrast (see multidiff.scoring)")
    ap.add_argument("--model", help="score with this trained run/model folder instead of training one")
    ap.add_argument("--test-speaker", help="with --model: the held-out speaker whose clips are the normal class")
    ap.add_argument("--labels", choices=["null", "best"],
                    help="with a class-conditional --model: score with the null label (default) or the best label")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = apply_overrides(merge(DEFAULTS, load_yaml(a.config) if a.config else {}), a.set)
    cfg["modality_options"] = {**cfg["modality_options"], "label_pattern": None}  # unconditional
    ev = cfg["eval"]
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    if a.labels and not a.model:
        raise SystemExit("--labels needs --model (a class-conditional model): the model this recipe trains is "
                         "unconditional")
    log = (lambda s: None) if a.quiet else (lambda s: print(s, flush=True))

    # --- normal data: random held-out split, or the speaker a given model never heard ----------------
    data = Path(a.normal) if a.normal else out / "data"
    if a.model:
        if not a.normal:
            raise SystemExit("--model needs --normal: the folder the model's training clips came from")
        model = DiffusionModel.from_pretrained(a.model).eval()
        modality = model.modality
        items, skipped = modality.read(data)
        speaker = a.test_speaker or held_out_speaker(Path(a.model))
        test_items = [{**it, "label": None} for it in items if it["speaker"] == speaker]
        normal_split = f"speaker {speaker!r}"
        train_items = [it for it in items if it["speaker"] != speaker]
        if not test_items:
            raise SystemExit(f"no clips of speaker {speaker!r} in {data}; pass --test-speaker")
    else:
        if not a.normal and not any(data.glob("*.wav")):
            make_synthetic_set(data, per_speaker=int(ev["synthetic_per_speaker"]), seed=a.seed)
        modality = build_modality("audio", cfg["modality_options"])
        items, skipped = modality.read(data)
        perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(a.seed)).tolist()
        n_test = max(2, int(round(float(ev["holdout"]) * len(items))))
        test_items = [items[i] for i in perm[:n_test]]
        train_items = [items[i] for i in perm[n_test:]]
        normal_split = f"random {ev['holdout']} of the clips"
        modality.prepare(train_items)

    # --- anomalies ---------------------------------------------------------------------------------
    if a.anomalous:
        anom_root, generated = Path(a.anomalous), False
    else:
        anom_root, generated = out / "anomalies", True
        make_anomaly_set(anom_root, per_type=int(ev["per_type"]), seed=a.seed)
        for i, it in enumerate(test_items[:int(ev["reversed"])]):
            write_audio(anom_root / f"reversed_{i}.wav", torch.from_numpy(time_reversed(it["wave"])),
                        modality.preset.sample_rate)
    anom_items, anom_skipped = modality.read(anom_root)
    anom_items = [{**it, "label": None} for it in anom_items]  # scored like the normal clips: p(clip)
    types = [anomaly_type(it["path"], anom_root, generated) for it in anom_items]
    kinds = sorted(set(types), key=lambda k: (list(MAKERS) + ["reversed"]).index(k)
                   if k in list(MAKERS) + ["reversed"] else 99)
    log(f"{len(train_items)} training clips, {len(test_items)} held-out normal, {len(anom_items)} anomalies "
        f"({', '.join(f'{k} {types.count(k)}' for k in kinds)}); {len(skipped) + len(anom_skipped)} files skipped")

    # --- train (unconditional), unless --model gave a trained one --------------------------------------
    if a.model:
        trained = Path(a.model) / "metrics.json"
        prior = json.loads(trained.read_text()) if trained.is_file() else {}
        train_metrics, train_seconds = {"step": prior.get("train_steps"), "loss": prior.get("train_loss")}, 0.0
    else:
        model = DiffusionModel(modality, cfg["net"], from_dict(DiffusionConfig, cfg["diffusion"], "diffusion"))
        tcfg = from_dict(TrainConfig, {**cfg["train"], "max_steps": a.max_steps, "seed": a.seed,
                                       "quiet": a.quiet or not sys.stderr.isatty()}, "train")
        t0 = time.time()
        trainer = Trainer(model, modality.encode(train_items), tcfg, out)
        train_metrics = trainer.train()
        train_seconds = time.time() - t0
        if trainer.ema is not None:
            trainer.ema.copy_to(model)
        model.eval()
    n_params = sum(p.numel() for p in model.net.parameters())

    # --- score -------------------------------------------------------------------------------------
    labels = a.labels or scoring.default_label_mode(model)
    if labels != "given" and not modality.labels:
        raise SystemExit(f"--labels {labels} needs a class-conditional --model; this model is unconditional")
    sigmas = {"denoise": [float(v) for v in ev["denoise_sigmas"]],
              "contrast": [float(v) for v in ev["contrast_sigmas"]]}
    options = {"labels": labels, "contrast_weight": float(ev["contrast_weight"])}
    results, curves = {}, {}
    bs, seeds = int(ev["batch_size"]), int(ev["seeds"])
    for method in methods:
        t0 = time.time()
        s_norm = score(model, test_items, method, a.seed, seeds, bs, sigmas=sigmas.get(method), **options)
        s_anom = score(model, anom_items, method, a.seed, seeds, bs, sigmas=sigmas.get(method), **options)
        rate = (len(s_norm) + len(s_anom)) * seeds / (time.time() - t0)
        per_type = {k: scoring.separation(s_norm, [s for s, t in zip(s_anom, types) if t == k]) for k in kinds}
        mean = lambda v: sum(v) / len(v)  # noqa: E731
        results[method] = {**scoring.separation(s_norm, s_anom), "items_per_second": rate,
                           "units": scoring.units(model, method), "per_type": per_type,
                           "mean_score_normal": mean(s_norm),
                           "mean_score_per_type": {k: mean([s for s, t in zip(s_anom, types) if t == k])
                                                   for k in kinds}}
        curves[method] = scoring.roc_curve(s_norm, s_anom)
        log(f"{method}: AUROC {results[method]['auroc']:.3f} ({rate:.1f} items/s); per type "
            + ", ".join(f"{k} {v['auroc']:.3f}" for k, v in per_type.items()))

    metrics = {
        "normal_data": str(data) if a.normal else f"synthetic notes ({data})", "anomalies": str(anom_root),
        "anomalies_generated": generated, "model": a.model or str(out / "model"),
        "conditioning": {"null": "null label of a class-conditional model",
                         "best": "best of the class labels of a class-conditional model (lowest score)",
                         "given": "unconditional"}[labels], "labels": labels,
        "normal_split": normal_split,
        "train_clips": len(train_items), "test_normal": len(test_items), "test_anomalous": len(anom_items),
        "anomaly_counts": {k: types.count(k) for k in kinds}, "skipped": skipped + anom_skipped,
        "preset": modality.preset.to_dict(), "net_params": n_params, "train_steps": train_metrics["step"],
        "train_loss": train_metrics.get("loss"), "train_seconds": round(train_seconds, 1),
        "threads": torch.get_num_threads(), "score_seeds": seeds, "denoise_sigmas": ev["denoise_sigmas"],
        "contrast_sigmas": ev["contrast_sigmas"], "contrast_weight": ev["contrast_weight"],
        "methods": results,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    scoring.plot_roc({f"{m} (AUROC {results[m]['auroc']:.3f})": c for m, c in curves.items()}, out / "roc.png",
                     "audio: held-out normal vs all anomalies")
    (out / "report.md").write_text(report(metrics))
    best = max(results, key=lambda m: results[m]["auroc"])
    print(f"anomaly (audio): best AUROC {results[best]['auroc']:.3f} with {best}; report: {out / 'report.md'}")
    return metrics


def report(m: dict) -> str:
    kinds = list(m["anomaly_counts"])
    lines = ["# Anomaly detection on audio", "",
             f"Normal data: {m['normal_data']}. A mel diffusion model (U-Net, {m['net_params'] / 1e6:.2f}M "
             f"parameters, `{m['model']}`, scored with its {m['conditioning']}) trained {m['train_steps']} steps on "
             f"{m['train_clips']} clips; scored {m['test_normal']} held-out normal clips ({m['normal_split']}) "
             f"and {m['test_anomalous']} anomalies ({', '.join(f'{k}: {n}' for k, n in m['anomaly_counts'].items())}"
             f"){'; made by multidiff.modalities.audio.anomalies' if m['anomalies_generated'] else ''}.", "",
             "| method | units | AUROC | AUPRC | TPR @ 1% FPR | items/s |", "|---|---|---|---|---|---|"]
    for meth, r in m["methods"].items():
        lines.append(f"| {meth} | {r['units']} | {r['auroc']:.3f} | {r['auprc']:.3f} | {r['tpr_at_1pct_fpr']:.3f} "
                     f"| {r['items_per_second']:.1f} |")
    lines += ["", "AUROC per anomaly type (held-out normal clips vs that type):", "",
              "| method | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for meth, r in m["methods"].items():
        lines.append(f"| {meth} | " + " | ".join(f"{r['per_type'][k]['auroc']:.3f}" for k in kinds) + " |")
    lines += ["", "Mean score per type (higher = more anomalous):", "",
              "| method | normal | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 2) + "|"]
    for meth, r in m["methods"].items():
        lines.append(f"| {meth} | {r['mean_score_normal']:.4g} | "
                     + " | ".join(f"{r['mean_score_per_type'][k]:.4g}" for k in kinds) + " |")
    if m["skipped"]:
        lines += ["", f"{len(m['skipped'])} files skipped (first: {m['skipped'][0]})."]
    lines += ["", "![ROC](roc.png)", ""]
    return "\n".join(lines)



if __name__ == "__main__":
    sys.exit(run_script(main))
