"""Train the judge CNN (multidiff.modalities.audio.metrics.JudgeCNN) on `{label}_{speaker}_{index}.wav` clips.

    python recipes/audio_judge.py --out runs/judge                                  # synthetic notes
    python recipes/audio_judge.py --data ../shared/data/fsdd/recordings --out runs/judge_fsdd

One speaker is held out (--holdout, default `theo` if present, else the last speaker in sorted order). Clips
become fixed-length log-mels as in recipes/audio_spoken_digits.py (same preset and clip length), so the judge
it writes to OUT/judge/ can be passed there with --judge. Writes OUT/metrics.json (accuracy on the training
speakers and per class on the held-out speaker) and OUT/report.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multidiff.errors import DataError, run_script  # noqa: E402
from multidiff.modalities.audio.metrics import train_judge  # noqa: E402
from multidiff.modalities.audio.modality import AudioModality  # noqa: E402
from multidiff.modalities.audio.synthetic import make_synthetic_set  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="folder of {label}_{speaker}_{index}.wav (default: synthesise OUT/data)")
    ap.add_argument("--out", default="runs/audio_judge")
    ap.add_argument("--holdout", help="speaker to hold out (default: theo if present, else the last speaker)")
    ap.add_argument("--preset", default="speech-8k")
    ap.add_argument("--clip-seconds", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (one is fastest on a shared 2-core machine)")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    data = Path(args.data) if args.data else out / "data"
    if not args.data and not any(data.glob("*.wav")):
        make_synthetic_set(data, per_speaker=12, seed=args.seed)
    audio = AudioModality({"preset": args.preset, "clip_seconds": args.clip_seconds})
    items, skipped = audio.read(data)
    items = [it for it in items if it["label"] is not None]
    speakers = sorted({it["speaker"] for it in items if it["speaker"]})
    if len(speakers) < 2:
        raise DataError(f"{data}: need files named {{label}}_{{speaker}}_{{index}}.wav from at least two speakers "
                        f"(found speakers {speakers})")
    holdout = args.holdout or ("theo" if "theo" in speakers else speakers[-1])
    if holdout not in speakers:
        raise DataError(f"--holdout {holdout!r} is not among the speakers {speakers}")
    train = [it for it in items if it["speaker"] != holdout]
    test = [it for it in items if it["speaker"] == holdout]
    labels = sorted({it["label"] for it in train})
    test = [it for it in test if it["label"] in labels]

    def mels_and_labels(subset):
        mel, _ = audio.log_mels([it["wave"] for it in subset])
        return mel, torch.tensor([labels.index(it["label"]) for it in subset])

    x_train, y_train = mels_and_labels(train)
    x_test, y_test = mels_and_labels(test)
    print(f"{len(items)} labelled clips ({len(skipped)} skipped), {len(labels)} classes, train speakers "
          f"{[s for s in speakers if s != holdout]}, held out {holdout!r}", flush=True)
    judge = train_judge(x_train, y_train, len(labels), label_names=labels, preset=audio.preset, width=args.width,
                        epochs=args.epochs, seed=args.seed, val=(x_test, y_test), log=lambda m: print(m, flush=True))
    judge.save(out / "judge")

    metrics = {
        "data": str(data), "preset": audio.preset.to_dict(), "clip_seconds": args.clip_seconds, "classes": labels,
        "train_speakers": [s for s in speakers if s != holdout], "held_out_speaker": holdout,
        "train_clips": len(train), "held_out_clips": len(test), "skipped": skipped, "epochs": args.epochs,
        "params": sum(p.numel() for p in judge.parameters()),
        "acc_train_speakers": judge.accuracy(x_train, y_train), "acc_held_out": judge.accuracy(x_test, y_test),
        "acc_held_out_per_class": judge.per_class_accuracy(x_test, y_test),
        "seconds": round(time.time() - t0, 1),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "report.md").write_text(report(metrics))
    print(report(metrics))
    return metrics


def report(m: dict) -> str:
    lines = ["# Judge classifier", "",
             f"Data `{m['data']}`: {m['train_clips']} training clips ({', '.join(m['train_speakers'])}), held-out "
             f"speaker `{m['held_out_speaker']}` ({m['held_out_clips']} clips); {len(m['skipped'])} files skipped. "
             f"{m['params'] / 1e3:.0f}k parameters, {m['epochs']} epochs, {m['seconds']} s. Mel preset "
             f"`{m['preset']['name']}` [{m['preset']['fingerprint']}], clips of {m['clip_seconds']} s.", "",
             f"Accuracy: training speakers {100 * m['acc_train_speakers']:.1f}%, held-out speaker "
             f"{100 * m['acc_held_out']:.1f}%.", "",
             "| class | held-out accuracy |", "|---|---|"]
    lines += [f"| {c} | {100 * a:.1f}% |" for c, a in m["acc_held_out_per_class"].items()]
    lines += ["", "The judge is in `judge/` (judge.json + judge.safetensors); pass it to "
              "`recipes/audio_spoken_digits.py --judge` or `recipes/vocoder_hifigan.py --judge`.", ""]
    if m["skipped"]:
        lines += ["Skipped files:", ""] + [f"- `{p}`: {r}" for p, r in m["skipped"]] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_script(main))
