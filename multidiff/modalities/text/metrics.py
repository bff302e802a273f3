"""Text evaluation: n-gram metrics (own implementations), slot error rate, and an AR judge model.

All n-gram metrics work on whitespace tokens of the given strings (lower-case them first if wanted).

- `distinct_n(texts, n)`: distinct n-grams / all n-grams over the whole set.
- `corpus_bleu(hyps, refs_list, max_n=4)`: Papineni et al.: clipped n-gram precisions summed over
  the corpus, geometric mean, brevity penalty with the closest reference length (ties -> shorter).
- `self_bleu(texts)`: mean over i of sentence-level BLEU (corpus_bleu of one hypothesis) of text i
  against all the others (Zhu et al., Texygen), with +1 smoothing of n > 1 precisions (Lin & Och).
- `rouge_l(hyps, refs_list, beta=1.2)`: LCS-based F-measure, best reference per hypothesis, averaged.
- `slot_errors(mr, text)` / `slot_error_rate`: E2E MR values missing from or contradicted in the text.
- `ARJudge`: a small GPT-2 (transformers config, no download) trained on the training split; gives
  per-token NLL and perplexity of any texts (EOS counted), and samples.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

import torch
from torch import nn


def _ngrams(toks: Sequence[str], n: int) -> Counter:
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams in `texts` (0 when there are none)."""
    total, seen = 0, set()
    for t in texts:
        g = _ngrams(t.split(), n)
        total += sum(g.values())
        seen.update(g)
    return len(seen) / total if total else 0.0


def corpus_bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], max_n: int = 4,
                smooth: bool = False) -> float:
    """Corpus BLEU in [0, 1]. refs[i] is the list of references of hyps[i]. `smooth` adds 1 to the
    numerator and denominator of n > 1 precisions (Lin & Och 2004, for sentence-level use)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference lists")
    match, total = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for h, rs in zip(hyps, refs):
        ht = h.split()
        rts = [r.split() for r in rs]
        hyp_len += len(ht)
        ref_len += min((abs(len(r) - len(ht)), len(r)) for r in rts)[1] if rts else 0
        for n in range(1, max_n + 1):
            hg = _ngrams(ht, n)
            maxref: Counter = Counter()
            for r in rts:
                for g, c in _ngrams(r, n).items():
                    maxref[g] = max(maxref[g], c)
            match[n - 1] += sum(min(c, maxref[g]) for g, c in hg.items())
            total[n - 1] += max(len(ht) - n + 1, 0)
    if hyp_len == 0:
        return 0.0
    logp = 0.0
    for n in range(max_n):
        m, t = match[n], total[n]
        if smooth and n > 0:
            m, t = m + 1, t + 1
        if m == 0 or t == 0:
            return 0.0
        logp += math.log(m / t) / max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(logp)


def sentence_bleu(hyp: str, refs: Sequence[str], max_n: int = 4) -> float:
    """Smoothed (add-one for n > 1) BLEU of one hypothesis."""
    return corpus_bleu([hyp], [refs], max_n, smooth=True)


def self_bleu(texts: Sequence[str], max_n: int = 4, limit: int | None = 500) -> float:
    """Mean smoothed sentence BLEU of each text against all others (higher = less diverse).
    Uses the first `limit` texts as hypotheses (all texts stay references)."""
    if len(texts) < 2:
        return 0.0
    hyps = range(len(texts)) if limit is None else range(min(limit, len(texts)))
    return sum(sentence_bleu(texts[i], [t for j, t in enumerate(texts) if j != i], max_n)
               for i in hyps) / len(hyps)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hyps: Sequence[str], refs: Sequence[Sequence[str]], beta: float = 1.2) -> float:
    """Mean over hypotheses of the best-reference ROUGE-L F_beta = (1+b^2) P R / (R + b^2 P)."""
    scores = []
    for h, rs in zip(hyps, refs):
        ht, best = h.split(), 0.0
        for r in rs:
            rt = r.split()
            lcs = _lcs(ht, rt)
            if lcs == 0:
                continue
            p, rc = lcs / len(ht), lcs / len(rt)
            best = max(best, (1 + beta ** 2) * p * rc / (rc + beta ** 2 * p))
        scores.append(best)
    return sum(scores) / len(scores) if scores else 0.0


# --------------------------------------------------------------------------------------------------
# Slot error rate for E2E meaning representations
# --------------------------------------------------------------------------------------------------
_FAMILY_YES = ("family friendly", "family - friendly", "kid friendly", "kids friendly", "kid - friendly",
               "kids - friendly", "child friendly", "child - friendly", "children friendly",
               "children - friendly", "children are welcome", "for families", "for kids", "for the whole family")
_FAMILY_NO = ("not family", "not kid", "not child", "no kids", "not welcome", "non family", "non - family",
              "adults only", "adult only", "not a family", "no children",
              "non - children", "non children", "non - kid", "not for children", "not for kids", "not for families",
              "not suitable for", "not good for famil", "not good for kid", "not good for child")
_NUMBERS = {"1": ("1", "one"), "3": ("3", "three"), "5": ("5", "five")}
# generic values share words with other slots ("high" price vs "highly rated"): no contradiction check
_GENERIC = {"high", "low", "average", "cheap", "moderate", "yes", "no"}


def _norm(s: str) -> str:
    """Lower-cased, punctuation spaced out, negative contractions as "not" ("isn't", "isn 't", "is n't",
    and "isn ' t" as the word tokenizer decodes it)."""
    s = s.lower().replace("’", "'").replace("-", " - ").replace("centre", "center")
    s = re.sub(r"\s?n\s?'\s?t\b", " not", s)
    return " " + re.sub(r"\s+", " ", re.sub(r"([.,;!?\"()])", r" \1 ", s)).strip() + " "


def _value_variants(slot: str, value: str) -> list[str]:
    v = value.lower().strip()
    out = [v]
    if slot in ("Type", "eatType") and v == "coffee shop":
        out += ["coffeeshop", "cafe", "café", "coffee"]
    if slot in ("near",):
        out += [v.replace("crowne", "crown"), v.replace("café", "cafe")]
    if slot in ("customer rating", "customerRating"):
        m = re.match(r"(\d) out of 5", v)
        if m:
            for n in _NUMBERS[m.group(1)]:
                out += [f"{n} out of 5", f"{n} out 5", f"{n} out of five", f"{n} star", f"{n} - star",
                        f"{n}/5", f"rating of {n}"]
        elif v == "high":
            out += ["highly rated", "high rating", "high customer rating", "high ratings", "highly - rated",
                    "well rated", "highly regarded", "5 star", "five star", "great reviews", "excellent"]
        elif v == "low":
            out += ["low rating", "low rated", "low - rated", "poor", "poorly rated", "1 star", "one star", "bad"]
        elif v == "average":
            out += ["average rating", "averagely rated", "average customer", "average rated", "3 star", "three star", "decent", "mediocre", "okay"]
    if slot in ("price", "priceRange"):
        if "less than" in v or v == "cheap":
            out += ["less than £ 20", "under £ 20", "less than 20", "cheap", "low price", "low priced",
                    "low - priced", "low cost", "inexpensive", "affordable", "budget", "cheaply"]
        if "more than" in v or v == "high":
            out += ["more than £ 30", "over £ 30", "more than 30", "expensive", "high price", "high - priced",
                    "high priced", "pricey", "high end", "high - end", "costly", "upscale", "high cost"]
        if "20 - 25" in v or v == "moderate":
            out += ["£ 20 - 25", "20 - 25", "£ 20 - £ 25", "moderate", "moderately", "average price",
                    "mid - priced", "mid priced", "medium priced", "mid cost", "mid - range", "mid range",
                    "reasonably priced", "reasonable price"]
    return out


def _wrong_slots(mr: dict[str, str], text: str, all_values: dict[str, set[str]] | None
                 ) -> list[tuple[str, str, str]]:
    """(slot, "missing" | "contradicted", what contradicts it or "") for each slot of `mr` that `text` gets wrong."""
    t = _norm(text)
    wrong = []
    for slot, value in mr.items():
        if slot in ("family friendly", "familyFriendly"):
            neg = any(p in t for p in _FAMILY_NO)
            pos = any(p in t for p in _FAMILY_YES) or " family " in t or " kid" in t or " child" in t
            if not (neg if value.lower() == "no" else (pos and not neg)):
                wrong.append((slot, "contradicted" if (pos or neg) else "missing", ""))
            continue
        if not any(_norm(v) in t for v in _value_variants(slot, value)):
            other = [o for o in (all_values or {}).get(slot, ()) if o.lower() != value.lower()
                     and o.lower() not in _GENERIC and _norm(o) in t]
            wrong.append((slot, "contradicted", f" by {other[0]!r}") if other else (slot, "missing", ""))
    return wrong


def slot_errors(mr: dict[str, str], text: str, all_values: dict[str, set[str]] | None = None
                ) -> tuple[int, int, list[str]]:
    """(errors, slots, details) of one output: a slot value that the text does not mention (in any of
    its common phrasings) is 'missing'; for 'family friendly' a text that says the opposite is
    'contradicted'; when `all_values` (slot -> every value seen in the corpus) is given, another specific
    value of the same slot (a name, area, food, venue) mentioned without the right one is 'contradicted'."""
    wrong = _wrong_slots(mr, text, all_values)
    return len(wrong), len(mr), [f"{slot}={mr[slot]}: {verdict}{note}" for slot, verdict, note in wrong]


def slot_error_rate(mrs: Sequence[dict[str, str]], texts: Sequence[str],
                    all_values: dict[str, set[str]] | None = None) -> float:
    """Sum of slot errors over sum of slots (0..1)."""
    e = s = 0
    for mr, t in zip(mrs, texts):
        ei, si, _ = slot_errors(mr, t, all_values)
        e, s = e + ei, s + si
    return e / s if s else 0.0


def slot_errors_by_slot(mrs: Sequence[dict[str, str]], texts: Sequence[str],
                        all_values: dict[str, set[str]] | None = None) -> dict[str, dict[str, int]]:
    """Per slot name: {"slots": how many MRs have it, "missing": .., "contradicted": ..} (`slot_errors`'
    verdicts), slots in order of first appearance. The sum of missing + contradicted over slots over the
    sum of slots is `slot_error_rate`."""
    out: dict[str, dict[str, int]] = {}
    for mr, text in zip(mrs, texts):
        for slot in mr:
            out.setdefault(slot, {"slots": 0, "missing": 0, "contradicted": 0})["slots"] += 1
        for slot, verdict, _ in _wrong_slots(mr, text, all_values):
            out[slot][verdict] += 1
    return out


def slot_values(mrs: Sequence[dict[str, str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for mr in mrs:
        for k, v in mr.items():
            out.setdefault(k, set()).add(v)
    return out


# --------------------------------------------------------------------------------------------------
# Judge / baseline autoregressive model
# --------------------------------------------------------------------------------------------------
class ARJudge(nn.Module):
    """A small GPT-2 (from a `GPT2Config`, tied embeddings) over the text tokenizer's ids.

    Sequences are BOS w_1 .. w_n EOS; NLL counts the n words and the EOS (n + 1 tokens)."""

    def __init__(self, tokenizer, layers: int = 4, hidden: int = 128, heads: int = 4, max_len: int = 128,
                 dropout: float = 0.1):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel
        self.tok = tokenizer
        self.max_len = max_len
        self.settings = {"layers": layers, "hidden": hidden, "heads": heads, "max_len": max_len,
                         "dropout": dropout}
        cfg = GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=max_len + 2, n_embd=hidden,
                         n_layer=layers, n_head=heads, resid_pdrop=dropout, embd_pdrop=dropout,
                         attn_pdrop=dropout, bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id,
                         tie_word_embeddings=True)
        self.lm = GPT2LMHeadModel(cfg)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, folder) -> None:
        """Write ar_config.json, model.safetensors and tokenizer.json into `folder`."""
        import json
        from pathlib import Path

        from safetensors.torch import save_model
        p = Path(folder)
        p.mkdir(parents=True, exist_ok=True)
        (p / "ar_config.json").write_text(json.dumps({"format": "multidiff-ar/1", **self.settings,
                                                      "fingerprint": self.tok.fingerprint}, indent=1))
        self.tok.save(p / "tokenizer.json")
        save_model(self.lm, str(p / "model.safetensors"))

    @classmethod
    def load(cls, folder) -> "ARJudge":
        """The judge saved in `folder` (text_ar_baseline.py's OUT/model, or OUT itself)."""
        import json
        from pathlib import Path

        from safetensors.torch import load_model

        from ...errors import CheckpointError
        from .tokenizer import TextTokenizer
        p = Path(folder)
        if not (p / "ar_config.json").is_file() and (p / "model" / "ar_config.json").is_file():
            p = p / "model"   # the run folder of text_ar_baseline.py
        if not (p / "ar_config.json").is_file():
            raise CheckpointError(f"{p} holds no AR judge (ar_config.json missing); train one with "
                                  "recipes/text_ar_baseline.py")
        cfg = json.loads((p / "ar_config.json").read_text())
        tok = TextTokenizer.load(p / "tokenizer.json")
        tok.check_fingerprint(cfg["fingerprint"])
        judge = cls(tok, **{k: cfg[k] for k in ("layers", "hidden", "heads", "max_len", "dropout")})
        load_model(judge.lm, str(p / "model.safetensors"))
        return judge.eval()

    def batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.tok.encode_batch(texts, self.max_len)
        L = max(len(s) for s in ids) + 2
        x = torch.full((len(ids), L), self.tok.pad_id, dtype=torch.long)
        m = torch.zeros(len(ids), L, dtype=torch.bool)
        for i, s in enumerate(ids):
            row = [self.tok.bos_id] + s + [self.tok.eos_id]
            x[i, :len(row)] = torch.tensor(row)
            m[i, :len(row)] = True
        return x, m

    def token_nll(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Summed NLL per sequence [B] (nats) of tokens 1.. (BOS is given)."""
        dev = next(self.parameters()).device
        x, m = x.to(dev), m.to(dev)
        logits = self.lm(input_ids=x, attention_mask=m.long()).logits[:, :-1]
        nll = nn.functional.cross_entropy(logits.transpose(1, 2).float(), x[:, 1:], reduction="none")
        return (nll * m[:, 1:]).sum(1)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        x, m = self.batch(texts)
        return self.token_nll(x, m).sum() / m[:, 1:].sum()

    @torch.no_grad()
    def nll_per_token(self, texts: Sequence[str], batch_size: int = 64) -> float:
        """Mean NLL per token (nats; words + EOS) of `texts`."""
        was = self.training
        self.eval()
        tot = n = 0.0
        for i in range(0, len(texts), batch_size):
            x, m = self.batch(texts[i:i + batch_size])
            tot += float(self.token_nll(x, m).sum())
            n += float(m[:, 1:].sum())
        self.train(was)
        return tot / max(n, 1)

    def perplexity(self, texts: Sequence[str]) -> float:
        return math.exp(self.nll_per_token([t for t in texts]) if texts else float("nan"))

    def fit(self, texts: Sequence[str], steps: int = 1000, batch_size: int = 64, lr: float = 1e-3,
            seed: int = 0, warmup: int = 100, eval_texts: Sequence[str] | None = None,
            eval_every: int = 0, log=None) -> list[tuple[int, float]]:
        """Train with AdamW (linear warmup, cosine decay). Returns [(step, eval nll/token)] when
        `eval_texts` and `eval_every` are given."""
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(self.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        curve = []
        self.train()
        for step in range(steps):
            idx = torch.randint(len(texts), (batch_size,), generator=g).tolist()
            loss = self([texts[i] for i in idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.parameters(), 1.0)
            opt.step()
            sched.step()
            if eval_texts is not None and eval_every and (step + 1) % eval_every == 0:
                curve.append((step + 1, self.nll_per_token(eval_texts)))
                if log:
                    log(f"ar step {step + 1} eval nll/token {curve[-1][1]:.4f}")
        self.eval()
        return curve

    @torch.no_grad()
    def sample(self, num: int, seed: int = 0, temperature: float = 1.0) -> list[str]:
        g = torch.Generator().manual_seed(seed)
        dev = next(self.parameters()).device
        x = torch.full((num, 1), self.tok.bos_id, dtype=torch.long, device=dev)
        done = torch.zeros(num, dtype=torch.bool, device=dev)
        for _ in range(self.max_len + 1):
            logits = self.lm(input_ids=x).logits[:, -1].float() / temperature
            nxt = torch.multinomial(torch.softmax(logits, -1).cpu(), 1, generator=g).to(dev)
            nxt[done] = self.tok.pad_id
            x = torch.cat([x, nxt], 1)
            done |= nxt.squeeze(1) == self.tok.eos_id
            if bool(done.all()):
                break
        return [self.tok.decode(r[1:].tolist()) for r in x]
