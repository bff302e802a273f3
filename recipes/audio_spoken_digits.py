"""Class-conditional mel diffusion on `{label}_{speaker}_{index}.wav` clips, one speaker held out.

    python recipes/audio_spoken_digits.py --out runs/digits                      # synthetic notes (offline)
    python recipes/audio_spoken_digits.py --data ../shared/data/fsdd/recordings --out runs/fsdd \
        --config recipes/configs/audio_spoken_digits_gpu.yaml

Writes OUT/model/ (the trained model), OUT/samples/*.wav (per class), OUT/spectrograms.png (real vs
generated), OUT/metrics.json and OUT/report.md. Metrics: a judge CNN trained on the training speakers
(or loaded with --judge, see recipes/audio_judge.py) classifies generated mels and their vocoded audio;
Frechet distance of judge embeddings, generated vs real training-speaker clips, beside the same-size
real-vs-real noise floor; Griffin-Lim real-time factor.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multidiff.config import apply_overrides, from_dict, load_yaml  # noqa: E402
from multidiff.errors import run_script  # noqa: E402
from multidiff.model import DiffusionConfig, DiffusionModel, build_modality  # noqa: E402
from multidiff.modalities.audio.metrics import (JudgeCNN, frechet_distance, real_time_factor,  # noqa: E402
                                                spectrogram_grid, train_judge)
from multidiff.modalities.audio.synthetic import make_synthetic_set  # noqa: E402
from multidiff.train.trainer import TrainConfig, Trainer  # noqa: E402

DEFAULTS = {
    "modality_options": {"preset": "speech-8k", "clip_seconds": 1.0},
    "net": {},
    "diffusion": {"cond_dropout": 0.1, "sampler": "dpmpp_2m", "steps": 20, "guidance": 2.0},
    "train": {"batch_size": 16, "lr": 3e-4, "warmup_steps": 50, "lr_schedule": "cosine", "ema_decay": 0.995,
              "precision": "fp32", "checkpoint_every": 500, "log_every": 25, "grad_clip": 1.0},
    "eval": {"per_class": 10, "fd_clips": 100, "judge_epochs": 12, "holdout": None},
}


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="folder of {label}_{speaker}_{index}.wav (default: synthesise OUT/data)")
    ap.add_argument("--out", default="runs/audio_spoken_digits")
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", help="YAML with sections modality_options, net, diffusion, train, eval")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. --set train.batch_size=32")
    ap.add_argument("--judge", help="a judge folder written by recipes/audio_judge.py (default: train one)")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = merge(DEFAULTS, load_yaml(args.config) if args.config else {})
    cfg = apply_overrides(cfg, args.set)
    cfg["train"] = {**cfg["train"], "max_steps": args.max_steps, "seed": args.seed}
    ev = cfg["eval"]
    t_start = time.time()

    # --- data: held-out speaker split ------------------------------------------------------------
    data = Path(args.data) if args.data else out / "data"
    if not args.data and not any(data.glob("*.wav")):
        make_synthetic_set(data, per_speaker=12, seed=args.seed)
    modality = build_modality("audio", cfg["modality_options"])
    items, skipped = modality.read(data)
    speakers = sorted({it["speaker"] for it in items if it["speaker"]})
    holdout = ev["holdout"] or ("theo" if "theo" in speakers else speakers[-1])
    train_items = [it for it in items if it["speaker"] != holdout]
    test_items = [it for it in items if it["speaker"] == holdout]
    if not train_items or not test_items:
        raise SystemExit(f"need clips from several speakers (found {speakers}); held-out speaker {holdout!r}")
    modality.prepare(train_items)
    labels = modality.labels
    print(f"{len(items)} clips ({len(skipped)} skipped), speakers {speakers}, held out {holdout!r}, "
          f"{len(labels)} classes", flush=True)

    # --- train -----------------------------------------------------------------------------------
    model = DiffusionModel(modality, cfg["net"], from_dict(DiffusionConfig, cfg["diffusion"], "diffusion"))
    n_params = sum(p.numel() for p in model.net.parameters())
    tcfg = from_dict(TrainConfig, cfg["train"], "train")
    trainer = Trainer(model, modality.encode(train_items), tcfg, out)
    t0 = time.time()
    train_metrics = trainer.train(resume=args.resume)
    train_seconds = time.time() - t0
    if trainer.ema is not None:
        trainer.ema.copy_to(model)
    model.eval()
    device = next(model.parameters()).device

    # --- judge -----------------------------------------------------------------------------------
    mel_train, _ = modality.log_mels([it["wave"] for it in train_items])
    y_train = torch.tensor([labels.index(it["label"]) for it in train_items])
    mel_test, _ = modality.log_mels([it["wave"] for it in test_items])
    y_test = torch.tensor([labels.index(it["label"]) for it in test_items])
    if args.judge:
        judge = JudgeCNN.load(args.judge, preset=modality.preset)
    else:
        judge = train_judge(mel_train, y_train, len(labels), label_names=labels, preset=modality.preset,
                            epochs=ev["judge_epochs"], seed=args.seed)
        judge.save(out / "judge")

    # --- generate --------------------------------------------------------------------------------
    n_gen = ev["per_class"] * len(labels)
    d = model.diffusion
    gen_idx = torch.arange(n_gen) % len(labels)

    def generate(guidance: float, steps: int, method: str, seed: int) -> torch.Tensor:
        xs = []
        for i in range(0, n_gen, 100):
            lab = [labels[j] for j in gen_idx[i:i + 100]]
            x0, _ = model.sample_x0(len(lab), steps=steps, method=method, seed=seed + i, guidance=guidance, label=lab)
            xs.append(x0.float().cpu())
        return modality.denormalise(torch.cat(xs))[:, 0]  # log-mels [N, F, T]

    t0 = time.time()
    gen_mel = generate(d.guidance, d.steps, d.sampler, args.seed + 1)
    sample_seconds = time.time() - t0
    gen_mel_unguided = generate(1.0, d.steps, d.sampler, args.seed + 1)
    waves = modality.vocoder.decode(gen_mel[:len(labels)], preset=modality.preset)
    modality.write_samples(list(waves), out / "samples", labels=gen_idx[:len(labels)])
    voc_waves = modality.vocoder.decode(gen_mel, preset=modality.preset)
    gen_mel_vocoded = modality.preset.log_mel(voc_waves)

    # --- metrics ---------------------------------------------------------------------------------
    k = min(ev["fd_clips"], n_gen, len(train_items) // 2)
    perm = torch.randperm(len(train_items), generator=torch.Generator().manual_seed(args.seed + 7))
    real_a, real_b = mel_train[perm[:k]], mel_train[perm[k:2 * k]]
    emb = judge.embeddings
    fd = lambda x: frechet_distance(emb(x[:k]), emb(real_a))  # noqa: E731
    real_vocoded = modality.preset.log_mel(modality.vocoder.decode(mel_test, preset=modality.preset))
    clip_s = modality.clip_samples / modality.preset.sample_rate
    rtf = real_time_factor(lambda: modality.vocoder.decode(mel_test[:1], preset=modality.preset), clip_s)
    metrics = {
        "data": str(data), "speakers": speakers, "held_out_speaker": holdout, "classes": labels,
        "train_clips": len(train_items), "held_out_clips": len(test_items), "skipped": skipped,
        "read_report": {k_: v for k_, v in modality.read_report.items() if k_ != "skipped"},
        "preset": modality.preset.to_dict(), "net_params": n_params, "train_steps": train_metrics["step"],
        "train_loss": train_metrics["loss"], "train_seconds": round(train_seconds, 1),
        "sampler": d.sampler, "steps": d.steps, "guidance": d.guidance, "generated": n_gen,
        "sample_seconds": round(sample_seconds, 1),
        "judge_acc_train_speakers": judge.accuracy(mel_train, y_train),
        "judge_acc_held_out_real": judge.accuracy(mel_test, y_test),
        "judge_acc_held_out_real_vocoded": judge.accuracy(real_vocoded, y_test),
        "judge_acc_generated": judge.accuracy(gen_mel, gen_idx),
        "judge_acc_generated_unguided": judge.accuracy(gen_mel_unguided, gen_idx),
        "judge_acc_generated_vocoded": judge.accuracy(gen_mel_vocoded, gen_idx),
        "judge_acc_generated_per_class": judge.per_class_accuracy(gen_mel, gen_idx),
        "fd_clips": k,
        "fd_generated_vs_train_real": fd(gen_mel), "fd_generated_unguided_vs_train_real": fd(gen_mel_unguided),
        "fd_real_vs_real_floor": frechet_distance(emb(real_b), emb(real_a)),
        "fd_held_out_real_vs_train_real": frechet_distance(emb(mel_test[:k]), emb(real_a)),
        "griffinlim_rtf": rtf, "griffinlim_x_realtime": 1 / rtf, "threads": torch.get_num_threads(),
        "device": str(device), "total_seconds": None,
    }
    metrics["fd_ratio_to_floor"] = metrics["fd_generated_vs_train_real"] / max(metrics["fd_real_vs_real_floor"], 1e-9)

    # --- pictures and report ---------------------------------------------------------------------
    first_real = [int((y_train == c).nonzero()[0]) for c in range(len(labels))]
    spectrogram_grid([mel_train[i] for i in first_real] + list(gen_mel[:len(labels)]), out / "spectrograms.png",
                     titles=[f"real {l}" for l in labels] + [f"gen {l}" for l in labels], ncols=len(labels),
                     preset=modality.preset, suptitle="top: real training clips, bottom: generated")
    metrics["total_seconds"] = round(time.time() - t_start, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "report.md").write_text(report(metrics))
    print(report(metrics))
    print(f"audio (class-conditional): judge accuracy on generations {metrics['judge_acc_generated']:.0%} "
          f"(real held-out speaker {metrics['judge_acc_held_out_real']:.0%}), FD / real-vs-real floor "
          f"{metrics['fd_ratio_to_floor']:.2f}; report: {out / 'report.md'}")
    return metrics


def report(m: dict) -> str:
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    lines = [
        "# Class-conditional mel diffusion", "",
        f"Data `{m['data']}`: {m['train_clips']} training clips ({', '.join(s for s in m['speakers'] if s != m['held_out_speaker'])}), "
        f"held-out speaker `{m['held_out_speaker']}` ({m['held_out_clips']} clips), {len(m['classes'])} classes; "
        f"{len(m['skipped'])} files skipped.",
        f"Mel preset `{m['preset']['name']}` [{m['preset']['fingerprint']}]. U-Net {m['net_params'] / 1e6:.2f}M parameters, "
        f"{m['train_steps']} steps in {m['train_seconds']} s on {m['device']} (final loss {m['train_loss']}).", "",
        f"Sampling: `{m['sampler']}`, {m['steps']} steps, guidance {m['guidance']}, {m['generated']} clips "
        f"in {m['sample_seconds']} s.", "",
        "| metric | value |", "|---|---|",
        f"| judge accuracy, real training speakers | {pct(m['judge_acc_train_speakers'])} |",
        f"| judge accuracy, real held-out speaker | {pct(m['judge_acc_held_out_real'])} |",
        f"| ... after Griffin-Lim | {pct(m['judge_acc_held_out_real_vocoded'])} |",
        f"| judge accuracy, generated mels (guidance {m['guidance']}) | {pct(m['judge_acc_generated'])} |",
        f"| judge accuracy, generated mels (no guidance) | {pct(m['judge_acc_generated_unguided'])} |",
        f"| judge accuracy, generated after Griffin-Lim | {pct(m['judge_acc_generated_vocoded'])} |",
        f"| FD generated vs real training clips ({m['fd_clips']} each) | {m['fd_generated_vs_train_real']:.2f} |",
        f"| FD without guidance | {m['fd_generated_unguided_vs_train_real']:.2f} |",
        f"| FD noise floor, real vs real (disjoint) | {m['fd_real_vs_real_floor']:.2f} |",
        f"| FD ratio to floor | {m['fd_ratio_to_floor']:.2f} |",
        f"| FD held-out speaker vs training clips | {m['fd_held_out_real_vs_train_real']:.2f} |",
        f"| Griffin-Lim speed ({m['threads']} threads) | {m['griffinlim_x_realtime']:.0f}x real time |", "",
    ]
    if m["skipped"]:
        lines += ["Skipped files:", ""] + [f"- `{p}`: {r}" for p, r in m["skipped"]] + [""]
    lines += ["Samples: `samples/*.wav`; spectrograms: `spectrograms.png`; model: `model/`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_script(main))
