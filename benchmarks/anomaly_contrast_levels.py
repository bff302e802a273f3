"""Choosing the `contrast` anomaly score's noise levels and weight without choosing on the reported clips.

    python benchmarks/anomaly_contrast_levels.py --model RUN --normal ../shared/data/fsdd/recordings \
        --anomalies OUT/anomalies --json table_a.json [--choose-on table_b.json]

RUN: a trained audio run (RUN/model, RUN/metrics.json naming the held-out speaker, e.g. from
`recipes/audio_spoken_digits.py`); its held-out speaker's clips are the normal class. OUT/anomalies: a folder of
anomalous clips named `{type}_{i}.wav` (`recipes/anomaly_audio.py` writes one). For every clip x and every
level sigma in `--levels`, the denoising error e_sigma(x) and e_sigma(T x) (T: the modality's contrast
transform, the clip played backwards) are computed once with the same noise draws (scoring.denoise_error,
null label for class-conditional models) and saved to --json. Printed: the AUROC (all anomalies, and per
type) of `log e(x) + w (log e(x) - log e(T x))`, e the mean over a contiguous run of the levels, for every
run (single levels included) and every weight in `--weights` (w = 0 ranks clips as the plain `denoise` score).
The run of all levels is exactly `multidiff score --method contrast --sigmas LEVELS` (same draws); shorter runs
reuse those levels' draws (the library's score at those levels up to the noise draws).
`--choose-on` another table (another model or anomaly draw) picks the best setting there and reports it here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multidiff import scoring  # noqa: E402
from multidiff.model import DiffusionModel  # noqa: E402


@torch.no_grad()
def level_errors(model: DiffusionModel, items: list, levels: list[float], seed: int, batch_size: int = 32
                 ) -> tuple[list[list[float]], list[list[float]]]:
    """Per-clip errors [N][L] of x and of T x (the library's draws: batch k seeded seed + k * batch_size, one
    independent noise per level, the same for x and T x)."""
    own, other = [], []
    for start in range(0, len(items), batch_size):
        batch = model.modality.encode(items[start:start + batch_size])
        if model.null_cond():  # class-conditional: score p(x) with the null label, as the recipe does
            key, null, _ = scoring._class_condition(model)
            batch = scoring._with_label(batch, key, null)
        flipped = model.modality.contrast(batch)
        own += scoring.denoise_error(model, batch, seed + start, levels, per_level=True).tolist()
        other += scoring.denoise_error(model, flipped, seed + start, levels, per_level=True).tolist()
    return own, other


def scores(table: dict, group: str, run: tuple[int, int], weight: float) -> list[float]:
    """The contrast score of every clip of `group` ("normal" or "anomalous") over levels[run[0]:run[1]]."""
    own = torch.tensor(table[group]["own"])[:, run[0]:run[1]].mean(1).log()
    other = torch.tensor(table[group]["other"])[:, run[0]:run[1]].mean(1).log()
    return (own + weight * (own - other)).tolist()


def grid(table: dict, weights: list[float]) -> dict[tuple[tuple[int, int], float], dict[str, float]]:
    """{(level run, weight): {"all": AUROC, type: AUROC, ...}} over all contiguous runs of levels."""
    n = len(table["levels"])
    types = table["anomalous"]["types"]
    out = {}
    for i in range(n):
        for j in range(i + 1, n + 1):
            for w in weights:
                s_n, s_a = scores(table, "normal", (i, j), w), scores(table, "anomalous", (i, j), w)
                row = {"all": scoring.auroc(s_n, s_a)}
                for k in sorted(set(types)):
                    row[k] = scoring.auroc(s_n, [s for s, t in zip(s_a, types) if t == k])
                out[((i, j), w)] = row
    return out


def describe(table: dict, run: tuple[int, int], weight: float) -> str:
    return f"levels {table['levels'][run[0]:run[1]]} weight {weight}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="run folder (RUN/model, RUN/metrics.json)")
    ap.add_argument("--normal", required=True, help="folder of the run's clips (its held-out speaker is normal)")
    ap.add_argument("--anomalies", required=True, help="folder of anomalous clips named {type}_{i}.wav")
    ap.add_argument("--levels", default="0.2,0.5,1,2,4")
    ap.add_argument("--weights", default="0,0.5,1,2,4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", required=True, help="where the per-level table is written (read if it exists)")
    ap.add_argument("--choose-on", help="another table: pick the best setting there, report it on this one")
    a = ap.parse_args(argv)
    weights = [float(w) for w in a.weights.split(",")]
    path = Path(a.json)
    if path.is_file():
        table = json.loads(path.read_text())
    else:
        run = Path(a.model)
        model = DiffusionModel.from_pretrained(run / "model" if (run / "model").is_dir() else run).eval()
        if getattr(model.modality, "contrast", None) is None:
            raise SystemExit(f"the {model.modality.name} modality has no contrast transform")
        speaker = json.loads((run / "metrics.json").read_text())["held_out_speaker"]
        items, _ = model.modality.read(a.normal)
        normal = [{**it, "label": None} for it in items if it["speaker"] == speaker]
        anomalous, _ = model.modality.read(a.anomalies)
        anomalous = [{**it, "label": None} for it in anomalous]
        levels = [float(s) for s in a.levels.split(",")]
        table = {"model": str(run), "levels": levels, "seed": a.seed}
        for group, its in (("normal", normal), ("anomalous", anomalous)):
            own, other = level_errors(model, its, levels, a.seed)
            table[group] = {"own": own, "other": other,
                            "types": [Path(it["path"]).name.split("_")[0] for it in its]}
        path.write_text(json.dumps(table))
    results = grid(table, weights)
    for (run, w), row in results.items():
        print(f"{describe(table, run, w):44s} AUROC {row['all']:.3f}  "
              + " ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "all"))
    if a.choose_on:
        other = json.loads(Path(a.choose_on).read_text())
        if other["levels"] != table["levels"]:
            raise SystemExit(f"--choose-on has levels {other['levels']}, this table {table['levels']}")
        chosen_results = grid(other, weights)
        (run, w) = max(chosen_results, key=lambda key: chosen_results[key]["all"])
        print(f"chosen on {a.choose_on}: {describe(table, run, w)} (AUROC there "
              f"{chosen_results[(run, w)]['all']:.3f}); here: {results[(run, w)]['all']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
