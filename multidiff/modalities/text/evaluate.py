"""Evaluation helpers shared by the text recipes: the bound per token, sampling with timing, quality.

    bound_per_token(modality, net, encoded, repeats=4) -> {"nats_per_token", "nats_per_token_se", terms...}
    timed_generate(modality, net, num, steps=20, ...) -> (texts, {"seq_per_s", "sampler_overhead", ...})
    unconditional_quality(samples, real, judge) -> judge perplexity, distinct-n, self-BLEU for both sets
    data2text_quality(examples_by_mr, outputs) -> corpus BLEU, ROUGE-L, slot error rate
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Sequence

import torch
from torch import nn

from ...core.draws import Draws
from ..base import Encoded
from . import objectives as obj
from .corpus import Example
from .metrics import (ARJudge, corpus_bleu, distinct_n, rouge_l, self_bleu, slot_error_rate, slot_errors_by_slot,
                      slot_values)


@torch.no_grad()
def bound_per_token(modality, net: nn.Module, data: Encoded, repeats: int = 4, batch_size: int = 128,
                    seed: int = 0, method: str = "elbo", ode_steps: int = 64) -> dict[str, Any]:
    """The bound averaged over `repeats` independent estimates per item, per token (words + EOS).
    Returns nats and bits per token, each term's share (nats per token) and `nats_per_token_se`: the
    standard error of that mean over the repeats (each repeat is one estimate of the whole set; the
    estimates are heavy-tailed, so quote the mean with its error; None when repeats == 1).
    method 'elbo' (the continuous-time bound) or 'ode' (the probability-flow bound, `ode_steps` RK4 steps:
    about 4 * ode_steps * 2 differentiable network passes per item, so far slower)."""
    tot: dict[str, float] = {}
    per_repeat = []
    for r in range(repeats):
        total = 0.0
        for i in range(0, len(data), batch_size):
            b = data.index(slice(i, i + batch_size))
            t = modality.nll_terms(net, b, Draws.seeded(seed * 1_000_003 + r * 7919 + i, len(b)), method=method,
                                   ode_steps=ode_steps)
            for k, v in t.items():
                tot[k] = tot.get(k, 0.0) + float(v.sum()) / repeats
            total += float(t["total"].sum())
        per_repeat.append(total)
    n = tot.pop("tokens")
    out = {k: v / n for k, v in tot.items()}
    out["nats_per_token"] = out.pop("total")
    out["nats_per_token_se"] = (statistics.stdev(per_repeat) / n / math.sqrt(repeats)
                                if repeats > 1 else None)
    out["bits_per_token"] = out["nats_per_token"] / math.log(2)
    out["tokens"], out["repeats"] = n, repeats
    return out


class _TimedDenoiser:
    """Proxy of a denoiser that adds the clock time spent inside its calls to `seconds`."""

    def __init__(self, D, clock, sync):
        self.D, self.clock, self.sync, self.seconds = D, clock, sync, 0.0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **cond: Any) -> torch.Tensor:
        self.sync()
        t = self.clock()
        out = self.D(x, sigma, **cond)
        self.sync()
        self.seconds += self.clock() - t
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.D, name)


@torch.no_grad()
def timed_generate(modality, net: nn.Module, num: int, steps: int = 20, method: str = "euler",
                   batch_size: int = 64, seed: int = 0, source: Sequence[Any] | None = None,
                   **kw: Any) -> tuple[list[str], dict[str, float]]:
    """Generate `num` texts in batches; report sequences per second (wall clock) and two cost ratios
    (CPU time of this process on a CPU, so other load does not skew them; wall clock with
    synchronisation on a GPU):

    - `sampler_overhead`: the whole `generate` call (lengths, sampler, decoding to text) / the time
      spent inside its denoiser calls (network + readout `softmax(logits) @ E`), the same calls on the
      same inputs: the cost of the sampler around the model;
    - `overhead_vs_bare_network`: the whole call / `steps` bare `logits` evaluations on the same shapes
      afterwards (the readout counts as overhead here)."""
    m = obj._u(net)
    dev = next(m.parameters()).device
    clock = time.process_time if dev.type == "cpu" else time.perf_counter
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    texts: list[str] = []
    wall = cost_all = cost_denoiser = cost_net = 0.0
    for k, i in enumerate(range(0, num, batch_size)):
        n = min(batch_size, num - i)
        src = None if source is None else source[i:i + n]
        timers: list[_TimedDenoiser] = []

        def hook(D):
            timers.append(_TimedDenoiser(D, clock, sync))
            return timers[-1]

        w0, c0 = time.perf_counter(), clock()
        texts += modality.generate(net, n, steps=steps, method=method, seed=seed + k, source=src,
                                   denoiser_hook=hook, **kw)
        sync()
        wall += time.perf_counter() - w0
        cost_all += clock() - c0
        cost_denoiser += sum(t.seconds for t in timers)
        # the network alone on the same shapes, `steps` evaluations (self-conditioning input included)
        shape, ctx = modality.sample_shape(n, source=src, seed=seed + k)
        x = torch.randn(shape).to(dev)
        sig = torch.full((n,), 1.0, device=dev)
        known = ctx.cond.get("known")
        known = None if known is None else known.to(dev)
        mask = ctx.cond["attention_mask"].to(dev)
        was = net.training
        net.eval()
        c0 = clock()
        for _ in range(steps):
            obj.logits(net, x, sig, attention_mask=mask, known=known,
                       self_cond=x if getattr(m, "use_self_cond", False) else None)
        sync()
        cost_net += clock() - c0
        net.train(was)
    return texts, {"sequences": num, "nfe": steps, "seconds": wall, "seq_per_s": num / wall,
                   "denoiser_seconds": cost_denoiser, "network_seconds": cost_net, "sampler_seconds": cost_all,
                   "sampler_overhead": cost_all / max(cost_denoiser, 1e-9),
                   "overhead_vs_bare_network": cost_all / max(cost_net, 1e-9)}


def diversity(texts: Sequence[str], self_bleu_limit: int = 200) -> dict[str, float]:
    return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
            "distinct_4": distinct_n(texts, 4), "self_bleu": self_bleu(list(texts), limit=self_bleu_limit)}


def unconditional_quality(samples: Sequence[str], real: Sequence[str], judge: ARJudge | None) -> dict[str, Any]:
    """Judge perplexity, distinct-n and self-BLEU of samples and of as many real held-out sentences."""
    real = list(real)[:len(samples)]
    out: dict[str, Any] = {"samples": diversity(samples), "real": diversity(real)}
    if judge is not None:
        out["samples"]["judge_ppl"] = judge.perplexity(list(samples))
        out["real"]["judge_ppl"] = judge.perplexity(real)
        out["judge_ppl_ratio"] = out["samples"]["judge_ppl"] / out["real"]["judge_ppl"]
    r2 = out["real"]["distinct_2"]
    out["distinct_2_ratio"] = out["samples"]["distinct_2"] / r2 if r2 else float("nan")
    return out


def group_by_mr(examples: Sequence[Example]) -> tuple[list[Example], list[list[str]]]:
    """One Example per distinct MR (first seen) and the list of its reference sentences."""
    first: dict[str, Example] = {}
    refs: dict[str, list[str]] = {}
    for e in examples:
        first.setdefault(e.mr_text, e)
        refs.setdefault(e.mr_text, []).append(e.text)
    keys = list(first)
    return [first[k] for k in keys], [refs[k] for k in keys]


def data2text_quality(sources: Sequence[Example], refs: Sequence[Sequence[str]], outputs: Sequence[str],
                      all_examples: Sequence[Example] = ()) -> dict[str, Any]:
    """Corpus BLEU-4, ROUGE-L and slot error rate (lower-cased) of one output per source MR, its split by
    slot (`slot_errors_by_slot`), and `reference_slot_error_rate`: the same checker on every reference
    against its MR (the data's own omissions and contradictions: a model that imitates its references
    scores about this)."""
    low = [o.lower() for o in outputs]
    lrefs = [[r.lower() for r in rs] for rs in refs]
    values = slot_values([e.mr for e in list(all_examples) or list(sources)])
    pairs = [(src.mr, r) for src, rs in zip(sources, refs) for r in rs]
    return {"bleu": corpus_bleu(low, lrefs), "rouge_l": rouge_l(low, lrefs),
            "slot_error_rate": slot_error_rate([e.mr for e in sources], outputs, values),
            "slot_errors_by_slot": slot_errors_by_slot([e.mr for e in sources], outputs, values),
            "reference_slot_error_rate": slot_error_rate([m for m, _ in pairs], [r for _, r in pairs], values),
            "sources": len(sources)}


def slot_error_summary(by_slot: dict[str, dict[str, int]]) -> str:
    """`metrics.slot_errors_by_slot` as one line, worst slot first: "price 10/39 (10, 0), area 6/47 (6, 0)"
    (wrong / slots (missing, contradicted))."""
    wrong = {slot: c["missing"] + c["contradicted"] for slot, c in by_slot.items()}
    worst = sorted(by_slot, key=lambda slot: -wrong[slot] / by_slot[slot]["slots"])
    return ", ".join(f"{slot} {wrong[slot]}/{by_slot[slot]['slots']} ({by_slot[slot]['missing']}, "
                     f"{by_slot[slot]['contradicted']})" for slot in worst)


def slot_select(sources: Sequence[Example], candidates: Sequence[Sequence[str]],
                all_values: dict[str, set[str]] | None = None) -> list[str]:
    """Per source MR, the candidate with the fewest slot errors against that MR (missing or contradicted
    values, `metrics.slot_errors`; the first such candidate on ties): sample-and-rerank with a slot checker
    that reads only the MR and the output, never a reference. It optimises what the slot error rate
    measures, so report it as such."""
    from .metrics import slot_errors
    return [min(cands, key=lambda o: slot_errors(src.mr, o, all_values)[0])
            for src, cands in zip(sources, candidates)]


def mbr_select(candidates: Sequence[Sequence[str]]) -> list[str]:
    """Minimum Bayes risk: per source, the candidate with the highest mean BLEU against the others."""
    from .metrics import sentence_bleu
    out = []
    for cands in candidates:
        if len(cands) == 1:
            out.append(cands[0])
            continue
        scores = [sum(sentence_bleu(c, [o]) for j, o in enumerate(cands) if j != i) for i, c in enumerate(cands)]
        out.append(cands[max(range(len(cands)), key=scores.__getitem__)])
    return out
