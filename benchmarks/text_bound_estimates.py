"""A trained text model's likelihood bound, pinned down: many independent estimates, mean and standard error.

    python benchmarks/text_bound_estimates.py --run RUN --data ../shared/data/e2e/e2e_nlg_valid.txt \
        [--estimates 32] [--method elbo|ode] [--ode-steps 64] [--held-out-only] [--json PATH]

RUN is the output folder of `recipes/text_unconditional.py` (RUN/model). The data are split 90/10 by MR with the
seed the run was trained with, as the recipe drew it. The bound (nats per token = words + EOS, EMA weights)
is estimated `--estimates` times on the held-out sentences and on as many training sentences drawn at random:
the estimates are heavy-tailed, so a handful of them can sit 0.03 nats/token from the mean. Printed: mean +-
standard error, the generalisation gap (held-out minus training), and the held-out mean over
`--ar-nll` (the AR baseline's held-out NLL, default its best on E2E, 1.508) with its error. `--method ode`
takes the probability-flow bound instead of the ELBO (RK4 with `--ode-steps`; about 1 s per sentence and
estimate on one CPU thread at 64 steps, so use few estimates); `--held-out-only` skips the training sample.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch

from multidiff.model import DiffusionModel
from multidiff.modalities.text import corpus
from multidiff.modalities.text.evaluate import bound_per_token

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_vs_nfe_trained import run_seed  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="output folder of recipes/text_unconditional.py")
    ap.add_argument("--data", required=True, help="the line file the run was trained on")
    ap.add_argument("--estimates", type=int, default=32, help="independent bound estimates per set (>= 2)")
    ap.add_argument("--ar-nll", type=float, default=1.508, help="AR baseline's held-out NLL, nats/token")
    ap.add_argument("--seed", type=int, default=0, help="seed of the estimates and of the training sample")
    ap.add_argument("--method", choices=("elbo", "ode"), default="elbo", help="variational or probability-flow bound")
    ap.add_argument("--ode-steps", type=int, default=64, help="RK4 steps of the flow bound (--method ode)")
    ap.add_argument("--held-out-only", action="store_true", help="skip the training-sentence sample (and the gap)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.estimates < 2:
        ap.error("--estimates must be at least 2 (the standard error needs two)")
    torch.set_num_threads(1)
    run = Path(a.run)
    model = DiffusionModel.from_pretrained(run).eval()
    items, _ = model.modality.read(a.data)
    train, test = corpus.split_by_mr(items, 0.1, seed=run_seed(run))
    sets = {"held_out": test, "train_sample": random.Random(a.seed).sample(train, min(len(test), len(train)))}
    if a.held_out_only:
        del sets["train_sample"]
    rows = {}
    for name, examples in sets.items():
        enc = model.modality.encode(examples)
        b = bound_per_token(model.modality, model.net, enc, repeats=a.estimates, seed=a.seed, method=a.method,
                            ode_steps=a.ode_steps)
        rows[name] = {"sentences": len(examples), "nats_per_token": b["nats_per_token"],
                      "standard_error": b["nats_per_token_se"]}
        print(f"{name:12s} {len(examples):5d} sentences: bound {b['nats_per_token']:.4f} +- "
              f"{b['nats_per_token_se']:.4f} nats/token (mean +- s.e. of {a.estimates} estimates)", flush=True)
    held = rows["held_out"]
    gap = held["nats_per_token"] - rows["train_sample"]["nats_per_token"] if "train_sample" in rows else None
    ratio = held["nats_per_token"] / a.ar_nll
    print((f"gap held-out - train {gap:.3f} nats/token; " if gap is not None else "")
          + f"held-out / AR ({a.ar_nll}) = {ratio:.3f} +- {held['standard_error'] / a.ar_nll:.3f}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"benchmark": "text_bound_estimates", "run": str(run), "method": a.method,
                                            "estimates": a.estimates, "rows": rows, "gap": gap,
                                            "ar_nll": a.ar_nll, "ratio": ratio}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
