"""Text sampling: sequences per second and sampler overhead of a trained text model (target <= 1.05).

    python benchmarks/text_sampler_overhead.py --run RUN [--n 200] [--steps 20] [--seeds 3] [--json PATH]

RUN is the output folder of `recipes/text_unconditional.py` (or its model/ folder). For each sampler and seed,
`modalities.text.evaluate.timed_generate` generates --n sequences and reports, in one run, the CPU time of the
whole `generate` call over the CPU time inside the same run's denoiser calls (network + readout): the sampler
overhead. Also printed: the older ratio over a separate loop of bare `logits` calls (readout counted as
overhead, and sensitive to load between the two runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from multidiff.model import DiffusionModel
from multidiff.modalities.text.evaluate import timed_generate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--n", type=int, default=200, help="sequences per measurement")
    ap.add_argument("--steps", type=int, default=20, help="NFE per sequence")
    ap.add_argument("--methods", default="euler,dpmpp_2m_sde")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = DiffusionModel.from_pretrained(a.run).eval()
    rows = []
    print(f"{'method':14s} {'seed':>4s} {'seq/s':>7s} {'overhead':>9s} {'vs bare net':>11s}")
    for method in a.methods.split(","):
        for seed in range(a.seeds):
            _, sp = timed_generate(model.modality, model.net, a.n, steps=a.steps, method=method, seed=seed)
            rows.append({"method": method, "seed": seed, **sp})
            print(f"{method:14s} {seed:4d} {sp['seq_per_s']:7.1f} {sp['sampler_overhead']:9.3f} "
                  f"{sp['overhead_vs_bare_network']:11.3f}", flush=True)
    for method in a.methods.split(","):
        med = statistics.median(r["sampler_overhead"] for r in rows if r["method"] == method)
        print(f"{method}: median sampler overhead {med:.3f} (target <= 1.05)")
    if a.json:
        Path(a.json).write_text(json.dumps({"benchmark": "text_sampler_overhead", "run": a.run, "n": a.n,
                                            "steps": a.steps, "threads": a.threads, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
