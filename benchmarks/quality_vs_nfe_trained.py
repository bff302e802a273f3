"""Quality vs NFE on trained models: class-conditional audio (judge FD and accuracy) and text (judge perplexity).

    python benchmarks/quality_vs_nfe_trained.py audio --run RUN --data ../shared/data/fsdd/recordings
    python benchmarks/quality_vs_nfe_trained.py text  --run RUN --data ../shared/data/e2e/e2e_nlg_valid.txt

RUN is the output folder of `recipes/audio_spoken_digits.py` (audio: RUN/model, RUN/judge, RUN/metrics.json for
the held-out speaker) or of `recipes/text_unconditional.py` (text: RUN/model and its AR judge RUN/judge).
Every sampler runs from the same seeds at each budget (heun: steps = (NFE + 1) // 2).

audio  N clips (labels cycled over the classes, the model's guidance scale): Frechet distance of judge
       embeddings to N real training-speaker clips, beside the floor (FD between two disjoint real sets of N),
       and the judge's accuracy on the generated mels.
text   N unconditional samples: judge (AR) perplexity, as a ratio to the same number of real held-out sentences
       (split 90/10 by MR with the seed the run was trained with, as the recipe drew it; --split-seed to
       override), and distinct-2 as a ratio to the real sentences'. --seed changes only the sampling noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from multidiff.model import DiffusionModel

METHODS = ("euler", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddpm")
BUDGETS = (5, 10, 20, 50)


def steps_for(method: str, budget: int) -> int:
    return (budget + 1) // 2 if method == "heun" else budget


def audio_task(model: DiffusionModel, run: Path, a) -> tuple[Callable, dict, str]:
    """(measure(method, steps, seed) -> metrics, floors, headline metric)."""
    from multidiff.modalities.audio.metrics import JudgeCNN, frechet_distance
    modality = model.modality
    judge = JudgeCNN.load(run / "judge", preset=modality.preset)
    holdout = json.loads((run / "metrics.json").read_text())["held_out_speaker"]
    items, _ = modality.read(a.data)
    train = [it for it in items if it["speaker"] != holdout]
    mel, _ = modality.log_mels([it["wave"] for it in train])
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(a.seed + 7))
    k = a.n
    emb_real = judge.embeddings(mel[perm[:k]])
    floors = {"fd_real_vs_real": frechet_distance(judge.embeddings(mel[perm[k:2 * k]]), emb_real)}
    labels = modality.labels
    idx = torch.arange(k) % len(labels)

    def measure(method: str, steps: int, seed: int) -> dict:
        x0, _ = model.sample_x0(k, steps=steps, method=method, seed=seed, guidance=a.guidance,
                                label=[labels[i] for i in idx])
        gen = modality.denormalise(x0.float())[:, 0]
        fd = frechet_distance(judge.embeddings(gen), emb_real)
        return {"fd": fd, "fd_over_floor": fd / floors["fd_real_vs_real"], "judge_acc": judge.accuracy(gen, idx)}

    return measure, floors, "fd"


def run_seed(run: Path) -> int:
    """The --seed a recipe run was trained with (it also drew the run's data split), from its checkpoint."""
    state = run / "model" / "trainer_state.json"
    return int(json.loads(state.read_text())["config"]["seed"]) if state.is_file() else 0


def text_task(model: DiffusionModel, run: Path, a) -> tuple[Callable, dict, str]:
    from multidiff.modalities.text import corpus
    from multidiff.modalities.text.metrics import ARJudge, distinct_n
    from multidiff.modalities.text.modality import check_eta
    modality = model.modality
    judge = ARJudge.load(run / "judge")
    modality.tokenizer.check_fingerprint(judge.tok.fingerprint)
    items, _ = modality.read(a.data)
    _, test = corpus.split_by_mr(items, 0.1, seed=run_seed(run) if a.split_seed is None else a.split_seed)
    real = [e.text for e in test][:a.n]
    floors = {"judge_ppl_real": judge.perplexity(real), "distinct_2_real": distinct_n(real, 2)}
    net = model.net.eval()
    over = {"text": {k: v for k, v in (("temperature", a.temperature), ("eta", a.eta)) if v is not None}}
    if a.eta is not None:   # before any sampling: every method must take a noise scale
        for method in a.methods.split(",") + [pair.split(":")[0] for pair in a.extra.split(",") if pair]:
            check_eta(method, a.eta)

    def measure(method: str, steps: int, seed: int) -> dict:
        texts: list[str] = []
        for i in range(0, a.n, 100):
            texts += modality.generate(net, min(100, a.n - i), steps=steps, method=method, seed=seed + i,
                                       diffusion_config=over)
        ppl = judge.perplexity(texts)
        return {"judge_ppl": ppl, "judge_ppl_ratio": ppl / floors["judge_ppl_real"],
                "distinct_2_ratio": distinct_n(texts, 2) / floors["distinct_2_real"], "example": texts[0]}

    return measure, floors, "judge_ppl_ratio"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=("audio", "text"))
    ap.add_argument("--run", required=True, help="recipe output folder (model/ and judge/)")
    ap.add_argument("--data", required=True, help="the data the recipe trained on (for the real reference set)")
    ap.add_argument("--n", type=int, default=100, help="generated (and real) items per setting")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="NFE budgets for every method")
    ap.add_argument("--extra", default="ddpm:200,dpmpp_2m:200", help="method:NFE pairs run in addition")
    ap.add_argument("--guidance", type=float, help="audio: guidance scale (default: the model's)")
    ap.add_argument("--grid", choices=("karras", "exponential", "schedule"),
                    help="audio: sampling grid (default: the model's)")
    ap.add_argument("--sigma-min", type=float, help="audio: bottom of the sampling grid (default: the model's)")
    ap.add_argument("--sigma-max", type=float, help="audio: top of the sampling grid (default: the model's)")
    ap.add_argument("--temperature", type=float, help="text: sampling temperature (default: the model's)")
    ap.add_argument("--eta", type=float, help="text: noise scale of the stochastic samplers (default: the model's)")
    ap.add_argument("--seed", type=int, default=0, help="sampling noise (and the audio floor's clips)")
    ap.add_argument("--split-seed", type=int, help="text: seed of the 90/10 split (default: the run's own)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the table as JSON to this path")
    ap.add_argument("--png", help="write the plot to this path")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    run = Path(a.run)
    model = DiffusionModel.from_pretrained(run).eval()
    for name in ("grid", "sigma_min", "sigma_max"):
        if getattr(a, name) is not None:
            setattr(model.diffusion, name, getattr(a, name))
    model.diffusion.validate()
    measure, floors, headline = (audio_task if a.task == "audio" else text_task)(model, run, a)
    print(f"{a.task}: {run}, {a.n} items per setting; floors {json.dumps({k: round(v, 4) for k, v in floors.items()})}")

    settings = [(m, int(b)) for m in a.methods.split(",") for b in a.budgets.split(",")]
    settings += [(p.split(":")[0], int(p.split(":")[1])) for p in a.extra.split(",") if p]
    rows = []
    for method, budget in settings:
        steps = steps_for(method, budget)
        t0 = time.perf_counter()
        row = {"method": method, "nfe": budget, "steps": steps, **measure(method, steps, a.seed + 1)}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    print(f"\nbest per budget (lowest {headline})")
    best = {}
    for budget in sorted({r["nfe"] for r in rows}):
        b = min((r for r in rows if r["nfe"] == budget), key=lambda r: r[headline])
        best[budget] = b["method"]
        print(f"  NFE {budget:3d}: {b['method']} ({headline} {b[headline]:.3f})")
    by = {(r["method"], r["nfe"]): r for r in rows}
    if ("dpmpp_2m", 20) in by and ("ddpm", 200) in by:
        ratio = by[("dpmpp_2m", 20)][headline] / by[("ddpm", 200)][headline]
        print(f"dpmpp_2m at 20 NFE / ddpm (ancestral) at 200 NFE, {headline}: {ratio:.3f}")
        floors["dpmpp_2m_20_over_ddpm_200"] = ratio

    if a.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for method in dict.fromkeys(r["method"] for r in rows):
            rs = sorted((r for r in rows if r["method"] == method), key=lambda r: r["nfe"])
            ax.semilogx([r["nfe"] for r in rs], [r[headline] for r in rs], "o-", label=method)
        if a.task == "audio":
            ax.axhline(floors["fd_real_vs_real"], color="k", ls=":", label=f"real vs real ({a.n} clips)")
        else:
            ax.axhline(1.0, color="k", ls=":", label="real held-out sentences")
        ax.set_xlabel("NFE")
        ax.set_ylabel(headline)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{a.task}: {headline} vs NFE ({run.name})")
        fig.tight_layout()
        Path(a.png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.png, dpi=110)
        print(f"plot: {a.png}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"benchmark": f"quality_vs_nfe_{a.task}", "run": str(run), "n": a.n,
                                            "floors": floors, "rows": rows, "best": best}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
