"""Posterior mass a trained text model gives its banned ids (`TextModality.banned_ids`) at target positions.

    python benchmarks/text_banned_mass.py --model RUN/model --data ../shared/data/e2e/e2e_nlg_valid.txt \
        [--sentences 200] [--sigmas 0.05,0.3,1,3,10,30] [--generate 200 --length 12]

The first `--sentences` held-out examples of the run's split (`--seed`: the recipe run's; no --data: the
embedded synthetic corpus) are noised to each sigma (one draw, seed 0; data-to-text context kept clean), and
the network's token posterior softmax(logits) is summed over the banned ids (PAD, BOS, SEP, MASK and, in the
given-length layout, EOS) at every target position. Prints the mean and the maximum per sigma, the number of
positions above 1e-3 and the tokens standing there: how much sampling can change by leaving those ids out.
An unconditional model also generates `--generate` samples of `--length` tokens (20 NFE, seed 0) with the
banned ids left out (the library) and allowed (decoding before 09adb77): how many differ, how many are shorter.
`--method` is the sampler (default `dpmpp_2m_sde`, the text recipes').
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

from multidiff.model import DiffusionModel
from multidiff.modalities.text import objectives as obj

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
from text_unconditional import read_examples  # noqa: E402


def banned_mass(model: DiffusionModel, examples: list, sigmas: list[float], seed: int = 0) -> list[dict]:
    """One row per sigma: mean / max posterior mass on the banned ids over the target positions, the positions
    above 1e-3 and the (decoded) tokens that stand at them."""
    m, net = model.modality, model.net.eval()
    batch = m._batch(m.encode(examples))
    banned = m.banned_ids()
    x0 = obj._u(net).embedding_matrix().detach()[batch.ids]
    g = torch.Generator().manual_seed(seed)
    rows = []
    for sigma in sigmas:
        x = x0 + sigma * torch.randn(x0.shape, generator=g)
        if batch.known is not None:
            x = torch.where(batch.known.unsqueeze(-1), x0, x)
        with torch.no_grad():
            lg = obj.logits(net, x, torch.full((x.shape[0],), float(sigma)), attention_mask=batch.mask,
                            known=batch.known, self_cond=None, output_prior=m.config.output_prior)
        mass = lg.softmax(-1)[..., banned].sum(-1)
        at = mass[batch.target]
        high = (mass > 1e-3) & batch.target
        tokens = Counter(m.tokenizer.decode([int(i)], cut_at_eos=False) or f"id {int(i)}" for i in batch.ids[high])
        rows.append({"sigma": sigma, "mean": float(at.mean()), "max": float(at.max()), "positions": int(at.numel()),
                     "above_1e-3": int(high.sum()), "tokens_above_1e-3": dict(tokens.most_common(5))})
    return rows


def with_and_without_ban(model: DiffusionModel, num: int, length: int, method: str) -> dict:
    """`num` unconditional samples of `length` tokens, decoded with the banned ids left out and allowed."""
    m, net = model.modality, model.net.eval()
    banned = m.generate(net, num, steps=20, length=length, seed=0, method=method)
    m.banned_ids = lambda: []
    try:
        allowed = m.generate(net, num, steps=20, length=length, seed=0, method=method)
    finally:
        del m.banned_ids
    short = lambda outs: sum(len(o.split()) < length for o in outs)        # noqa: E731
    return {"differ": sum(a != b for a, b in zip(banned, allowed)), "shorter_banned": short(banned),
            "shorter_allowed": short(allowed)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="RUN/model of a text recipe")
    ap.add_argument("--data", help="the file the model was trained on (default: synthetic corpus)")
    ap.add_argument("--seed", type=int, default=0, help="the recipe run's --seed (its split)")
    ap.add_argument("--sentences", type=int, default=200, help="held-out examples to score")
    ap.add_argument("--sigmas", type=lambda t: [float(x) for x in t.split(",")], default=[0.05, 0.3, 1, 3, 10, 30])
    ap.add_argument("--generate", type=int, default=200, help="unconditional samples with and without the ban")
    ap.add_argument("--length", type=int, default=12, help="tokens per generated sample")
    ap.add_argument("--method", default="dpmpp_2m_sde", help="sampler (the text recipes' default)")
    a = ap.parse_args(argv)
    model = DiffusionModel.from_pretrained(a.model, ema=True)
    _, test, _ = read_examples(model.modality, a.data, a.seed)
    rows = banned_mass(model, test[:a.sentences], a.sigmas)
    print(f"banned ids {model.modality.banned_ids()}; {rows[0]['positions']} target positions of "
          f"{min(a.sentences, len(test))} held-out examples")
    for r in rows:
        print(f"sigma {r['sigma']:<6} mass on banned ids: mean {r['mean']:.1e}  max {r['max']:.1e}  "
              f"positions > 1e-3: {r['above_1e-3']} {r['tokens_above_1e-3']}")
    if a.generate and model.modality.config.task != "data2text":
        g = with_and_without_ban(model, a.generate, a.length, a.method)
        print(f"{a.generate} samples of {a.length} tokens: {g['differ']} differ; shorter than asked: "
              f"{g['shorter_banned']} with the ban, {g['shorter_allowed']} without")
    return 0


if __name__ == "__main__":
    sys.exit(main())
