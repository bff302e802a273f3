"""`TextModality`: token ids <-> learned embedding space, the text objectives, sampling and the bound.

Sequence layouts (`task`, `length_mode`):
- unconditional, length_mode='given': ``w_1 .. w_n`` padded to the batch's longest; attention and loss
  only over the n real tokens. The model is p(w | n); n comes from the empirical length distribution
  (saved with the model), so the bound adds -log p(n) and generation draws n (or takes `length`).
- length_mode='pad': ``w_1 .. w_n EOS PAD ..`` to `max_len`; every position is generated (DiffuSeq).
- data2text: ``source SEP target``; source and SEP are `known` (never noised, kept while sampling;
  DiffuSeq partial noising). Default length_mode for it is 'pad'.

`Encoded.x0` holds token ids [B, L] (the embedding table is learned, so the continuous x0 = E[ids] is
computed inside the loss); `mask` = positions that exist, `known` = context positions.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ...core.draws import Draws
from ...errors import ConfigError, DataError, MismatchError
from ..base import Encoded, Modality, NamedItems
from . import objectives as obj
from .corpus import Example, ReadStats, delexicalise, parse_examples, parse_mr, read_corpus, relexicalise
from .network import TextDenoiserNet, build_net
from .tokenizer import EncodeStats, TextTokenizer


UNK_WARNING = 0.25   # encode warns when more than this fraction of the tokens are UNK


@dataclass
class TextConfig:
    """Settings of the text modality (the network's own settings come through `denoiser_net`)."""

    tokenizer: str = "word"            # word | bpe | wordpiece, or a path to tokenizer.json / HF folder
    vocab_size: int = 8000
    min_frequency: int = 1
    lowercase: bool = True
    task: str = "unconditional"        # unconditional | data2text
    length_mode: str = "given"         # given | pad
    max_len: int = 64                  # target tokens (pad mode: incl. EOS)
    max_source_len: int = 48           # data2text source tokens (SEP excluded)
    source_first: bool = True          # data2text row: `source SEP target` (DiffuSeq) or `target SEP source`
    max_chars: int = 2000              # longer lines are truncated when read (counted)
    objective: str = "score_interp"    # score_interp | elbo | diffusion_lm
    self_cond_prob: float = 0.5
    output_prior: bool = True
    ce_weight: float = 0.0             # elbo objective: extra CE term
    logsnr_min: float = -12.0          # lambda_rel range of training, sampling and the bound
    logsnr_max: float = 10.0
    logsnr_bins: int = 64
    importance: bool = True            # adaptive (time-warped) logSNR sampling; False = uniform
    importance_mix: float = 0.1
    clamp: bool = False                # clamp x0_hat to the nearest embedding while sampling
    clamp_from: int = 0                # ... from this sampler step on
    grid: str = "warped"               # sampling grid: warped (the fitted density) | karras
    guidance: float = 1.0              # classifier-free guidance scale (data2text; needs cfg_dropout)
    temperature: float = 1.0           # sampling: x0_hat = softmax(logits / temperature) @ E (< 1 sharpens)
    eta: float | None = None           # sampling: noise scale of dpmpp_2m_sde / euler_ancestral / ddim (None: the
    #                                    sampler's default; > 1 re-noises more of each step, same marginals)
    cfg_dropout: float = 0.0           # data2text: drop the source for this fraction of examples
    length_quantile: float = 0.0       # data2text sampling: 0 draws each target length from the training
    #                                    lengths for the source's slot count; q in (0, 1] takes their q-quantile
    delexicalise: list[str] = dataclasses.field(default_factory=list)  # data2text: slots (e.g. name, near)
    #                                    whose values become placeholders in training and are copied back

    # fixed once a model is built (its tokenizer, layout, network input and the logSNR sampler's bins)
    STRUCTURAL = ("tokenizer", "vocab_size", "min_frequency", "lowercase", "task", "length_mode", "max_len",
                  "max_source_len", "source_first", "max_chars", "logsnr_min", "logsnr_max", "logsnr_bins",
                  "delexicalise")

    def validate(self) -> None:
        choices = {"task": ("unconditional", "data2text"), "length_mode": ("given", "pad"),
                   "objective": obj.OBJECTIVES, "grid": ("warped", "karras")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"text.{name}: {getattr(self, name)!r} is not valid; choose one of "
                                  f"{', '.join(valid)}")
        if self.max_len < 2 or self.max_source_len < 1:
            raise ConfigError(f"text.max_len must be >= 2 and max_source_len >= 1, got {self.max_len}, "
                              f"{self.max_source_len}")
        if not self.logsnr_max > self.logsnr_min:
            raise ConfigError(f"text: need logsnr_max > logsnr_min, got {self.logsnr_min}, {self.logsnr_max}")
        for name in ("self_cond_prob", "cfg_dropout", "importance_mix"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"text.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.delexicalise and (self.task != "data2text" or isinstance(self.delexicalise, str)
                                  or not all(isinstance(s, str) and s.strip() for s in self.delexicalise)):
            raise ConfigError(f"text.delexicalise takes a list of MR slot names (e.g. [name, near]) and needs "
                              f"task data2text; got {self.delexicalise!r} with task {self.task!r}")
        if not 0 <= self.length_quantile <= 1 or (self.length_quantile and self.task != "data2text"):
            raise ConfigError(f"text.length_quantile must be in [0, 1] (0 = draw lengths) and needs task data2text; "
                              f"got {self.length_quantile} with task {self.task!r}")
        if not self.temperature > 0:
            raise ConfigError(f"text.temperature must be > 0 (1 = the model's own posterior), got {self.temperature}")
        if self.eta is not None and not self.eta >= 0:
            raise ConfigError(f"text.eta must be >= 0 (the stochastic samplers' noise scale; null = their default), "
                              f"got {self.eta}")


@dataclass
class TextContext(Encoded):
    """A text sampling context: `Encoded` plus the data2text source MRs (slot -> value, one per row), whose
    values `decode` copies back into delexicalised outputs."""

    sources: list[dict[str, str]] | None = None


class Clamp:
    """Sampler `project` hook: x0_hat -> nearest embedding row (never a `banned` id), from step `start` on.
    `reset()` per run."""

    def __init__(self, E: torch.Tensor, start: int = 0, banned: Sequence[int] = ()):
        self.E, self.start, self.step = E.detach(), start, 0
        self.banned = torch.tensor(sorted(banned), dtype=torch.long, device=E.device)

    def reset(self) -> None:
        self.step = 0

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        self.step += 1
        if self.step - 1 < self.start:
            return x0
        return self.E[nearest_ids(x0, self.E, self.banned)]


def nearest_ids(x: torch.Tensor, E: torch.Tensor, banned: Sequence[int] | torch.Tensor = ()) -> torch.Tensor:
    """argmin_w |x - e_w|^2 over the ids w not in `banned`, for x [..., d], E [V, d] -> ids [...]."""
    return exclude_ids(x @ E.t() - 0.5 * E.pow(2).sum(-1), banned).argmax(-1)


def exclude_ids(scores: torch.Tensor, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """`scores` [..., V] with -inf at the token `ids` (last dimension), so argmax and softmax skip them."""
    if not len(ids):
        return scores
    ids = torch.as_tensor(ids, dtype=torch.long, device=scores.device)   # no copy when already there
    return scores.index_fill(-1, ids, -math.inf)


class TextDenoiser:
    """D(x, sigma) -> x0_hat = softmax(logits) @ E for one sampling run.

    `condition(mask, known, values)` binds the run's attention mask and context (known positions are
    reset to their clean values before every call and in the output). With a self-conditioning network,
    the previous x0_hat is fed back (cache reset by `reset()` or when the batch shape changes).
    `guidance` != 1 mixes conditional and source-dropped predictions in logit space (classifier-free).
    `temperature` < 1 sharpens the token posterior before the expectation over embeddings, and the
    `banned` ids (tokens that never stand in a target position) get no posterior mass (sampling only:
    likelihoods never go through this class)."""

    def __init__(self, net: nn.Module, output_prior: bool = True, guidance: float = 1.0,
                 temperature: float = 1.0, banned: Sequence[int] = ()):
        self.net, self.output_prior, self.guidance = net, output_prior, guidance
        self.temperature = temperature
        self.banned = torch.tensor(sorted(banned), dtype=torch.long)   # moved to the logits' device once
        self.mask = self.known = self.values = None
        self.prev: torch.Tensor | None = None
        self.nfe = 0

    def condition(self, mask=None, known=None, values=None) -> "TextDenoiser":
        self.mask, self.known, self.values = mask, known, values
        self.reset()
        return self

    def reset(self) -> None:
        self.prev, self.nfe = None, 0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        mask, known = cond.get("attention_mask", self.mask), cond.get("known", self.known)
        values = self.values
        if known is not None and values is None and "ids" in cond:
            values = obj._u(self.net).embed(cond["ids"].to(x.device))
        if sigma.dim() == 0:
            sigma = sigma.expand(x.shape[0])
        if known is not None and values is not None:
            x = torch.where(known.unsqueeze(-1), values, x)
        if self.prev is not None and self.prev.shape != x.shape:
            self.prev = None
        net = obj._u(self.net)
        sc = self.prev if getattr(net, "use_self_cond", False) else None
        lg = obj.logits(self.net, x, sigma, attention_mask=mask, known=known, self_cond=sc,
                        output_prior=self.output_prior)
        if self.guidance != 1.0 and known is not None:
            # unconditional branch: context positions hidden from attention
            m_unc = (mask if mask is not None else torch.ones_like(known, dtype=torch.long)) * (~known)
            lu = obj.logits(self.net, x, sigma, attention_mask=m_unc, known=None, self_cond=sc,
                            output_prior=self.output_prior)
            lg = lu.log_softmax(-1) + self.guidance * (lg.log_softmax(-1) - lu.log_softmax(-1))
        self.nfe += 1
        if self.banned.device != lg.device:
            self.banned = self.banned.to(lg.device)
        lg = exclude_ids(lg, self.banned)
        xh = obj.x0_hat(lg if self.temperature == 1.0 else lg / self.temperature, net.embedding_matrix())
        if known is not None and values is not None:
            xh = torch.where(known.unsqueeze(-1), values, xh)
        self.prev = xh
        return xh


class TextModality(Modality):
    """The `text` modality plugin. See the module docstring for layouts."""

    name = "text"
    Config = TextConfig

    def __init__(self, config: TextConfig | dict | None = None, **overrides: Any):
        if isinstance(config, dict):
            config = _make_config(config)
        super().__init__(config)
        if overrides:
            self.config = dataclasses.replace(self.config, **overrides)
        self.config.validate()
        self.tokenizer: TextTokenizer | None = None
        self.length_counts: list[int] | None = None         # index n = sentences of n target tokens
        self.length_counts_by_slots: dict[str, list[int]] | None = None   # data2text: the same per MR slot count
        self.read_stats = ReadStats()
        self.encode_stats = EncodeStats()
        self._warned_unk = False
        self.net: nn.Module | None = None

    # --- data -------------------------------------------------------------------------------------
    def read(self, path: str | Path) -> tuple[list[Example], list[tuple[str, str]]]:
        """Examples of a line file (plain or E2E ``MR||sentence``) and the lines left out, as (``path:line``,
        reason): empty lines and MRs without a sentence. Lines kept with invalid UTF-8 replaced or cut at
        `max_chars` are not in that list (they are read and scored); they are counted, with their line numbers,
        in `self.read_stats` like everything else (see `report()`)."""
        items, st = read_corpus(path, max_chars=self.config.max_chars)
        for f in dataclasses.fields(ReadStats):
            v = getattr(st, f.name)
            setattr(self.read_stats, f.name, getattr(self.read_stats, f.name) + v)
        skipped = [(f"{path}:{n}", "empty line") for n in st.empty_lines]
        skipped += [(f"{path}:{n}", "meaning representation without a sentence") for n in st.no_sentence_lines]
        return NamedItems(items, [f"{path}:{n}" for n in st.kept_lines]), skipped

    def _examples(self, items: Sequence[Any]) -> list[Example]:
        out = []
        for it in items:
            if isinstance(it, Example):
                out.append(it)
            elif isinstance(it, str):
                ex = parse_examples([it])
                out.extend(ex)
            else:
                raise DataError(f"text items must be str or Example, not {type(it).__name__}")
        if self.config.task == "data2text":
            bad = sum(1 for e in out if not e.mr_text)
            if bad:
                raise DataError(f"{bad} of {len(out)} items have no meaning representation; data2text "
                                "needs lines of the form 'slot : value | ...||sentence'")
            out = [delexicalise(e, self.config.delexicalise) for e in out]
        return out

    def prepare(self, items: Sequence[Any]) -> None:
        """Train the tokenizer (or load it from `config.tokenizer` when that is a path) and record the
        length distribution of the targets. Idempotent: a tokenizer already present is kept."""
        ex = self._examples(items)
        if not ex:
            raise DataError("no text examples to prepare the text modality from")
        c = self.config
        if self.tokenizer is None:
            if c.tokenizer in ("word", "bpe", "wordpiece"):
                texts = [e.text for e in ex] + ([e.mr_text for e in ex] if c.task == "data2text" else [])
                self.tokenizer = TextTokenizer.train(texts, c.tokenizer, c.vocab_size, c.min_frequency,
                                                     c.lowercase)
            else:
                self.tokenizer = TextTokenizer.load(c.tokenizer)
        if self.length_counts is None:
            ids = self.tokenizer.encode_batch([e.text for e in ex], self._max_target())
            counts = [0] * (self._max_target() + 1)
            by_slots: dict[str, list[int]] = {}
            for e, s in zip(ex, ids):
                counts[len(s)] += 1
                by_slots.setdefault(str(len(e.mr)), [0] * len(counts))[len(s)] += 1
            self.length_counts = counts
            if c.task == "data2text":
                self.length_counts_by_slots = by_slots

    def _max_target(self) -> int:
        return self.config.max_len - (1 if self.config.length_mode == "pad" else 0)

    def _need_tokenizer(self) -> TextTokenizer:
        if self.tokenizer is None:
            raise ConfigError("the text modality has no tokenizer yet: call prepare(items) or load a model")
        return self.tokenizer

    def encode(self, items: Sequence[Any]) -> Encoded:
        """Examples -> Encoded(x0=ids [B, L] long, mask [B, L] bool, known [B, L] bool or None).
        Counts UNK tokens and truncations in `self.encode_stats`, and warns when more than a quarter of
        the tokens are UNK (the tokenizer does not fit this text; once per modality)."""
        tok, c = self._need_tokenizer(), self.config
        ex = self._examples(items)
        stats = EncodeStats()
        tgt = tok.encode_batch([e.text for e in ex], self._max_target(), stats)
        src = (tok.encode_batch([e.mr_text for e in ex], c.max_source_len, stats)
               if c.task == "data2text" else [[] for _ in ex])
        self.encode_stats.add(stats)
        if stats.unk > UNK_WARNING * stats.tokens and not self._warned_unk:
            self._warned_unk = True   # once per modality: scoring a file batch by batch warns once
            warnings.warn(f"{stats.unk} of {stats.tokens} tokens ({stats.unk / stats.tokens:.0%}) are unknown to the "
                          "tokenizer and read as UNK: it was made for other text (another language, casing or "
                          "domain?). Train the model on this kind of text, or check the file", stacklevel=2)
        rows, knowns = [], []
        for s, t in zip(src, tgt):
            if c.length_mode == "pad":
                t = t + [tok.eos_id] + [tok.pad_id] * (self._max_target() - len(t))
            row, known = self._row(s, t)
            rows.append(row)
            knowns.append(known)
        return self._pack(rows, knowns)

    def _row(self, src: list[int], tgt: list[int]) -> tuple[list[int], list[bool]]:
        """One sequence and its known flags: `tgt` alone, or with data2text `src SEP tgt` / `tgt SEP src`
        (`source_first`); the source and SEP are known."""
        if self.config.task != "data2text":
            return tgt, [False] * len(tgt)
        sep = [self._need_tokenizer().sep_id]
        if self.config.source_first:
            return src + sep + tgt, [True] * (len(src) + 1) + [False] * len(tgt)
        return tgt + sep + src, [False] * len(tgt) + [True] * (len(src) + 1)

    def _pack(self, rows: list[list[int]], knowns: list[list[bool]]) -> Encoded:
        tok = self._need_tokenizer()
        L = max(1, max(len(r) for r in rows))
        ids = torch.full((len(rows), L), tok.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), L, dtype=torch.bool)
        known = torch.zeros(len(rows), L, dtype=torch.bool)
        for i, (r, k) in enumerate(zip(rows, knowns)):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, :len(r)] = True
            known[i, :len(k)] = torch.tensor(k, dtype=torch.bool)
        return Encoded(x0=ids, mask=mask, known=known if bool(known.any()) else None)

    def _batch(self, e: Encoded) -> obj.Batch:
        mask = e.mask if e.mask is not None else torch.ones_like(e.x0, dtype=torch.bool)
        mask = mask.bool()
        known = e.known.bool() if e.known is not None else None
        target = mask & ~known if known is not None else mask
        return obj.Batch(ids=e.x0.long(), mask=mask, target=target, known=known)

    def decode(self, x0: torch.Tensor, encoded: Encoded | None = None, net: nn.Module | None = None,
               **_: Any) -> list[str]:
        """Token ids [B, L] or embeddings [B, L, d] (-> the nearest embedding of a token that can stand in a
        target position, see `banned_ids`) -> strings. Context positions (`encoded.known`) are dropped; in
        'pad' mode text stops at EOS; PAD/BOS are removed. A `TextContext` with data2text sources gets the
        delexicalised slot values copied back."""
        tok = self._need_tokenizer()
        if x0.is_floating_point():
            net = net if net is not None else self.net
            if net is None:
                raise ConfigError("decoding embeddings needs the network (its embedding table): pass net=")
            x0 = nearest_ids(x0, obj._u(net).embedding_matrix().detach().to(x0), self.banned_ids())
        x0 = x0.cpu()
        known = None if (encoded is None or encoded.known is None or self.config.task != "data2text") \
            else encoded.known.bool()
        if known is not None and known.dim() == 3:
            known = known[..., 0]
        given = encoded is not None and encoded.mask is not None and self.config.length_mode == "given"
        out = []
        for i in range(x0.shape[0]):
            keep = torch.ones(x0.shape[1], dtype=torch.bool)
            if given:
                keep &= encoded.mask[i].bool().cpu()[:x0.shape[1]]
            if known is not None:
                keep &= ~known[i].cpu()[:x0.shape[1]]
            out.append(tok.decode(x0[i][keep].tolist(), cut_at_eos=True))
        sources = getattr(encoded, "sources", None)
        if sources is not None and self.config.delexicalise:
            out = [relexicalise(t, mr, self.config.delexicalise) for t, mr in zip(out, sources)]
        return out

    def banned_ids(self) -> list[int]:
        """Special ids that never stand in a training target position, so sampling never decodes to them:
        PAD, BOS, SEP, MASK, and in 'given' mode EOS too (there the length is fixed; 'pad' mode ends a
        text with EOS and pads after it)."""
        tok = self._need_tokenizer()
        banned = {tok.pad_id, tok.bos_id, tok.sep_id, tok.mask_id} - {tok.unk_id}
        if self.config.length_mode == "given":
            banned.add(tok.eos_id)
        else:
            banned -= {tok.eos_id, tok.pad_id}
        return sorted(banned)

    def sample_shape(self, num: int, length: int | Sequence[int] | None = None,
                     source: Sequence[Any] | None = None, generator: torch.Generator | None = None,
                     seed: int = 0, template: str | None = None, length_quantile: float | None = None,
                     **unknown: Any
                     ) -> tuple[tuple[int, int, int], Encoded]:
        """Shape [num, L, d] to generate and the Encoded context (ids with known source, mask, known).

        length: target tokens per sample (int or one per sample); None draws it from the training
        lengths ('given' mode; drawn with `generator`, else with a generator seeded by `seed`) or uses
        max_len ('pad'); data2text with `length_quantile` q > 0 (default: the config's) takes the q-quantile
        of the training lengths for the source's slot count instead of a draw. source: MRs (strings
        'slot : value | ...' or Examples) for data2text, one per sample; with `config.delexicalise` they are
        delexicalised here (and `decode` copies the values back through the returned `TextContext`). template:
        infilling, e.g. ``"the eagle is a [MASK] [MASK] near [MASK] ."``: the given words are kept (the
        sampler puts them on their forward-process path, so an unconditionally trained model fills the
        [MASK] positions) and the length is the template's. The context is sampler-ready: see
        `_sampling_context`."""
        tok, c = self._need_tokenizer(), self.config
        if unknown:
            raise ConfigError(f"text sampling does not take {sorted(unknown)}; its conditioning options are "
                              "length=N, template='... [MASK] ...' and (data-to-text) source=MR")
        if template is not None and length is not None:
            raise ConfigError("give either a template (its length is the template's) or length=N, not both")
        try:
            q = c.length_quantile if length_quantile is None else float(length_quantile)
        except (TypeError, ValueError):
            q = math.nan
        if not 0 <= q <= 1 or (q and c.task != "data2text"):
            raise ConfigError(f"length_quantile must be in [0, 1] (0 = draw lengths) and needs a data-to-text model; "
                              f"got {length_quantile!r} for a {c.task} model")
        d = self._embed_dim()
        sources = None
        if c.task == "data2text":
            if source is None or len(source) != num:
                raise ConfigError(f"data2text sampling needs one source MR per sample ({num}): pass source=[MR, ...] "
                                  "(multidiff sample --source FILE, one MR per line)")
            sources = [_source_example(s) for s in source]
            mrs = [delexicalise(s, c.delexicalise).mr_text for s in sources]
            srcs = tok.encode_batch(mrs, c.max_source_len, self.encode_stats)
        elif source is not None:
            raise ConfigError("source= is for data-to-text models; this text model is unconditional (use length=N "
                              "or template='... [MASK] ...')")
        else:
            srcs = [[] for _ in range(num)]
        if c.length_mode == "pad":
            lens = [self._max_target() + 1] * num
        elif length is None:
            g = generator if generator is not None else torch.Generator().manual_seed(int(seed))
            if c.task == "data2text" and self.length_counts_by_slots:
                # n ~ training lengths of sentences whose MR has as many slots (all lengths if none had)
                counts = [self.length_counts_by_slots.get(str(len(parse_mr(m)))) for m in mrs]
                lens = ([_quantile(cs or self.length_counts, q) for cs in counts] if q
                        else [self._draw_lengths(cs, 1, g)[0] for cs in counts])
            else:
                lens = self._draw_lengths(self.length_counts, num, g)
        else:
            lens = _lengths(length, num, self._max_target())
        rows, knowns = [], []
        if template is not None:
            if c.task == "data2text" or c.length_mode == "pad":
                raise ConfigError("infilling templates work with unconditional, length_mode='given' models")
            ids = tok.encode(template)
            rows = [list(ids) for _ in range(num)]
            knowns = [[i != tok.mask_id for i in ids] for _ in range(num)]
            enc = self._pack(rows, knowns)
            return (num, enc.x0.shape[1], d), self._sampling_context(enc, context_to_network=False)
        for s, n in zip(srcs, lens):
            row, known = self._row(s, [tok.mask_id] * n)
            rows.append(row)
            knowns.append(known)
        enc = self._pack(rows, knowns)
        return (num, enc.x0.shape[1], d), self._sampling_context(enc, sources=[s.mr for s in sources] if sources
                                                                 else None)

    def _draw_lengths(self, counts: list[int] | None, num: int, g: torch.Generator) -> list[int]:
        """`num` target lengths drawn from `counts` (default: the training length distribution)."""
        w = torch.tensor(counts or self.length_counts or [0, 1], dtype=torch.float)
        w[0] = 0
        return torch.multinomial(w, num, replacement=True, generator=g).tolist()

    def _sampling_context(self, enc: Encoded, context_to_network: bool = True,
                          sources: list[dict[str, str]] | None = None) -> TextContext:
        """Context in the form the core's samplers take: x0 = clean embeddings [B, L, d] (float) of the
        known positions, known [B, L, 1]; cond = {'attention_mask', 'known' [B, L], 'ids'} for the
        denoiser and the decoder ('known' only when `context_to_network`: clean context the network was
        trained to read; infilling leaves it out). Without a network yet, x0 stays the ids. `sources`: the
        data2text MRs, for `decode` to relexicalise."""
        cond = {"attention_mask": enc.mask, "ids": enc.x0}
        if enc.known is not None and context_to_network:
            cond["known"] = enc.known
        if self.net is None:
            return TextContext(x0=enc.x0, mask=enc.mask, cond=cond, known=enc.known, sources=sources)
        net = obj._u(self.net)
        dev = next(net.parameters()).device
        with torch.no_grad():
            values = net.embed(enc.x0.to(dev)).detach().cpu()
        return TextContext(x0=values, mask=enc.mask, cond=cond,
                           known=None if enc.known is None else enc.known.unsqueeze(-1), sources=sources)

    def _embed_dim(self) -> int:
        if self.net is not None:
            return obj._u(self.net).embed_dim
        return 32

    def write_samples(self, samples: list[str], out: str | Path) -> list[Path]:
        p = Path(out)
        if p.suffix == "" or p.is_dir():
            p.mkdir(parents=True, exist_ok=True)
            p = p / "samples.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(s.replace("\n", " ") + "\n" for s in samples), encoding="utf-8")
        return [p]

    # --- model ------------------------------------------------------------------------------------
    def denoiser_net(self, net_config: dict[str, Any] | None = None) -> TextDenoiserNet:
        """The network (owns the embedding table and the adaptive logSNR sampler `logsnr_sampler`).
        net_config: keyword arguments of `TextDenoiserNet` (embed_dim, norm, hidden, layers, heads, ...)."""
        tok, c = self._need_tokenizer(), self.config
        cfg = dict(net_config or {})
        cfg.setdefault("max_len", c.max_len + (c.max_source_len + 1 if c.task == "data2text" else 0))
        net = build_net(tok.vocab_size, cfg)
        net.logsnr_sampler = obj.LogSNRSampler(c.logsnr_min, c.logsnr_max, c.logsnr_bins,
                                               c.importance_mix, adaptive=c.importance)
        self.net = net
        return net

    def _sampler(self, net: nn.Module) -> obj.LogSNRSampler:
        s = getattr(obj._u(net), "logsnr_sampler", None)
        if s is None:
            raise ConfigError("this network has no logsnr_sampler; build it with TextModality.denoiser_net")
        return s

    def reconfigure(self, **settings: Any) -> None:
        """Change training or sampling settings (TextConfig keys) of a modality whose model is built, e.g.
        the objective before fine-tuning. ConfigError for unknown keys or for STRUCTURAL ones that differ."""
        fixed = sorted(k for k in settings if k in TextConfig.STRUCTURAL and settings[k] != getattr(self.config, k))
        if fixed:
            raise ConfigError(f"text: {', '.join(fixed)} cannot change once a model is built (tokenizer, layout, "
                              f"logSNR range); leave them out")
        self.config = self._cfg({"text": settings})

    def _cfg(self, diffusion_config: dict[str, Any] | None) -> TextConfig:
        """Modality config with per-call overrides from ``diffusion_config["text"]`` (TextConfig keys)."""
        over = dict((diffusion_config or {}).get("text") or {})
        if not over:
            return self.config
        keys = {f.name for f in dataclasses.fields(TextConfig)}
        bad = set(over) - keys
        if bad:
            raise ConfigError(f"unknown text settings {sorted(bad)}; allowed: {sorted(keys)}")
        cfg = dataclasses.replace(self.config, **over)
        cfg.validate()
        return cfg

    def loss(self, net: nn.Module, batch: Encoded, draws: Draws,
             diffusion_config: dict[str, Any] | None = None) -> torch.Tensor:
        """The training objective chosen by `config.objective` (scalar, per target token)."""
        c = self._cfg(diffusion_config)
        b = self._batch(batch.to(next(obj._u(net).parameters()).device))
        if c.cfg_dropout > 0 and b.known is not None:
            drop = (draws.rand() < c.cfg_dropout).to(b.mask.device)
            b = obj.Batch(b.ids, b.mask & ~(drop[:, None] & b.known), b.target, b.known)
        loss, logs = obj.training_loss(net, b, draws, objective=c.objective, sampler=self._sampler(net),
                                       self_cond_prob=c.self_cond_prob, output_prior=c.output_prior,
                                       ce_weight=c.ce_weight)
        self.last_logs = logs
        return loss

    def make_denoiser(self, net: nn.Module, diffusion_config: dict[str, Any] | None = None) -> TextDenoiser:
        c = self._cfg(diffusion_config)
        return TextDenoiser(net, output_prior=c.output_prior, guidance=c.guidance, temperature=c.temperature,
                            banned=self.banned_ids())

    def project(self, net: nn.Module, diffusion_config: dict[str, Any] | None = None) -> Clamp | None:
        c = self._cfg(diffusion_config)
        return Clamp(obj._u(net).embedding_matrix(), c.clamp_from, self.banned_ids()) if c.clamp else None

    def sigmas(self, net: nn.Module, steps: int, grid: str | None = None) -> torch.Tensor:
        """Decreasing noise levels [steps + 1] ending in 0. 'warped': equal probability steps of the
        fitted logSNR density (CDCD); 'karras': rho=7 between the range's ends."""
        s, n = self._sampler(net), obj._u(net)
        sd = float(n.sigma_data())
        grid = grid or self.config.grid
        if grid == "warped":
            u = torch.linspace(0, 1, steps)
            lam, _ = s.sample(u)
            lam[0], lam[-1] = s.lo, s.hi
            sig = sd * torch.exp(-lam / 2)
        elif grid == "karras":
            smin, smax = sd * math.exp(-s.hi / 2), sd * math.exp(-s.lo / 2)
            r = torch.linspace(0, 1, steps)
            sig = (smax ** (1 / 7) + r * (smin ** (1 / 7) - smax ** (1 / 7))) ** 7
        else:
            raise ConfigError(f"unknown sampling grid {grid!r}; use 'warped' or 'karras'")
        return torch.cat([sig, torch.zeros(1)])

    @torch.no_grad()
    def generate(self, net: nn.Module, num: int, *, steps: int = 20, method: str = "euler",
                 length: int | Sequence[int] | None = None, source: Sequence[Any] | None = None,
                 seed: int = 0, diffusion_config: dict[str, Any] | None = None,
                 return_ids: bool = False, template: str | None = None,
                 denoiser_hook: Callable[[Callable], Callable] | None = None
                 ) -> list[str] | tuple[list[str], torch.Tensor, Encoded]:
        """Sample `num` texts with `steps` network evaluations. Reproducible for `seed`.
        `denoiser_hook(D) -> D'` wraps the run's denoiser (e.g. to time or log its calls)."""
        c = self._cfg(diffusion_config)
        eta = {} if c.eta is None else {"eta": check_eta(method, c.eta)}
        was_training = net.training
        net.eval()
        try:
            g = torch.Generator().manual_seed(int(seed))
            m = obj._u(net)
            self.net = m
            shape, ctx = self.sample_shape(num, length=length, source=source, generator=g, template=template,
                                           length_quantile=c.length_quantile)
            dev = next(m.parameters()).device
            D = self.make_denoiser(net, diffusion_config)
            if denoiser_hook is not None:
                D = denoiser_hook(D)
            sig = self.sigmas(net, steps, c.grid).to(dev)
            x = torch.randn(shape, generator=g).to(dev) * sig[0]
            opts: dict[str, Any] = {"cond": {k: v.to(dev) for k, v in ctx.cond.items()},
                                    "project": self.project(net, diffusion_config), **eta}
            if ctx.known is not None:
                opts["known"] = (ctx.x0.to(dev), ctx.known.to(dev))
            x = _run_sampler(D, x, sig, method, g, **opts)
        finally:
            net.train(was_training)
        texts = self.decode(x.cpu(), ctx, net=net)
        return (texts, x, ctx) if return_ids else texts

    # --- likelihood -------------------------------------------------------------------------------
    def units(self) -> tuple[str, int]:
        return "token", 0

    def num_units(self, batch: Encoded) -> torch.Tensor:
        """Tokens per item [B] the bound is normalised by: target words + 1 (the EOS an AR model scores)."""
        b = self._batch(batch)
        tok = self._need_tokenizer()
        if self.config.length_mode == "pad":
            real = b.target & (b.ids != tok.pad_id)
            return real.sum(1).float()
        return b.target.sum(1).float() + 1

    def length_nll(self, batch: Encoded) -> torch.Tensor:
        """-log p(n) [B] under the training length distribution (add-one smoothed); 0 in 'pad' mode."""
        b = self._batch(batch)
        if self.config.length_mode == "pad" or self.length_counts is None:
            return torch.zeros(b.ids.shape[0])
        counts = torch.tensor(self.length_counts, dtype=torch.float) + 1.0
        counts[0] = 0
        logp = torch.log(counts / counts.sum())
        n = b.target.sum(1).clamp(0, len(counts) - 1).cpu()
        return -logp[n]

    def nll_terms(self, net: nn.Module, batch: Encoded, draws: Draws,
                  diffusion_config: dict[str, Any] | None = None, method: str = "elbo",
                  ode_steps: int = 64) -> dict[str, torch.Tensor]:
        """Bound terms in nats per item [B] and 'tokens' [B] (see `num_units`). method 'elbo': the
        continuous-time bound ('prior', 'diffusion', 'reconstruction'); 'ode': the probability-flow bound
        (`objectives.flow_terms`: 'flow', 'entropy', 'diffusion', 'reconstruction'; RK4 with `ode_steps`
        steps). Both add 'length' (-log p(n)) into 'total'."""
        if method not in ("elbo", "ode"):
            raise ConfigError(f"unknown text likelihood method {method!r}; use 'elbo' or 'ode'")
        c = self._cfg(diffusion_config)
        batch = batch.to(next(obj._u(net).parameters()).device)
        was = net.training
        net.eval()
        try:
            if method == "ode":
                t = obj.flow_terms(net, self._batch(batch), draws, sampler=self._sampler(net),
                                   output_prior=c.output_prior, steps=ode_steps)
            else:
                with torch.no_grad():
                    t = obj.bound_terms(net, self._batch(batch), draws, sampler=self._sampler(net),
                                        output_prior=c.output_prior)
        finally:
            net.train(was)
        t["length"] = self.length_nll(batch).to(t["total"].device)
        t["total"] = t["total"] + t["length"]
        t["tokens"] = self.num_units(batch).to(t["total"].device)
        return t

    def nll(self, net: nn.Module, batch: Encoded, draws: Draws, diffusion_config: dict[str, Any] | None = None,
            method: str = "elbo", samples: int = 1, ode_steps: int = 64, **_: Any) -> torch.Tensor:
        """Upper bound on -log p(item) in nats per item [B] (length term included), averaged over
        `samples` independent estimates: the variational bound (method 'elbo') or the probability-flow
        bound ('ode', see `nll_terms`)."""
        tot = sum(self.nll_terms(net, batch, draws, diffusion_config, method=method, ode_steps=ode_steps)["total"]
                  for _ in range(samples))
        return tot / samples

    # --- persistence ------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        tok = self._need_tokenizer()
        return {"tokenizer": tok.to_str(), "fingerprint": tok.fingerprint,
                "config": dataclasses.asdict(self.config), "length_counts": self.length_counts,
                "length_counts_by_slots": self.length_counts_by_slots}, {}

    def load_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> None:
        """Restore tokenizer, config and length distribution. A tokenizer already set on this modality
        (e.g. given by the user) must match the saved fingerprint, else MismatchError."""
        saved = TextTokenizer.from_str(meta["tokenizer"])
        if saved.fingerprint != meta.get("fingerprint", saved.fingerprint):
            raise MismatchError("the saved tokenizer does not match its recorded fingerprint; the model "
                                "folder is corrupt or was edited by hand")
        if self.tokenizer is not None:
            self.tokenizer.check_fingerprint(saved.fingerprint)
        self.tokenizer = saved
        if "config" in meta:
            self.config = _make_config(meta["config"])
        self.length_counts = meta.get("length_counts")
        self.length_counts_by_slots = meta.get("length_counts_by_slots")

    def save(self, folder: str | Path) -> None:
        import json
        p = Path(folder)
        p.mkdir(parents=True, exist_ok=True)
        meta, _ = self.state()
        self._need_tokenizer().save(p / "tokenizer.json")
        (p / "text.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "tokenizer"}, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> "TextModality":
        import json
        p = Path(folder)
        meta = json.loads((p / "text.json").read_text())
        meta["tokenizer"] = TextTokenizer.load(p / "tokenizer.json").to_str()
        m = cls(meta.get("config"))
        m.load_state(meta)
        return m

    def report(self) -> dict[str, Any]:
        """Bad-input and tokenisation counts for run reports: the file-reading counts (once `read` has read a
        file; data made in memory has none) and the tokenisation counts."""
        read = self.read_stats.as_dict() if self.read_stats.lines else {}
        return {**read, **self.encode_stats.as_dict()}


def _lengths(length: int | Sequence[int], num: int, max_target: int) -> list[int]:
    """`num` target lengths from one length or one per sample, each checked to lie in [1, max_target]."""
    lens = [length] * num if isinstance(length, (int, str)) else list(length)
    if len(lens) != num or not all(isinstance(n, int) and 1 <= n <= max_target for n in lens):
        raise ConfigError(f"length must be a whole number of tokens from 1 to {max_target} (the model's max_len), "
                          f"or one such number per sample ({num}); got {length!r}")
    return lens


def _quantile(counts: Sequence[int], q: float) -> int:
    """The smallest length n >= 1 with at least a fraction `q` of the counted sentences no longer than n."""
    total, acc = sum(counts[1:]), 0
    for n in range(1, len(counts)):
        acc += counts[n]
        if acc >= q * total:
            return n
    return len(counts) - 1


def _source_example(source: Any) -> Example:
    """A data2text source (an Example, or an MR string, optionally ``MR||sentence``) as an Example."""
    if isinstance(source, Example):
        return source
    mr_text = str(source).split("||")[0].strip()
    return Example(text="", mr=parse_mr(mr_text), mr_text=mr_text)


def _make_config(d: dict[str, Any]) -> TextConfig:
    keys = {f.name for f in dataclasses.fields(TextConfig)}
    bad = set(d) - keys
    if bad:
        raise ConfigError(f"unknown text modality settings {sorted(bad)}; allowed: {sorted(keys)}")
    return TextConfig(**d)


def check_eta(method: str, eta: float) -> float:
    """`eta` if sampler `method` takes a noise scale, else a ConfigError that names the ones that do."""
    from ...core.samplers import SAMPLERS
    if method in SAMPLERS and "eta" not in inspect.signature(SAMPLERS[method]).parameters:
        takers = [m for m, f in SAMPLERS.items() if "eta" in inspect.signature(f).parameters]
        raise ConfigError(f"text.eta = {eta} needs a sampler with a noise scale ({', '.join(takers)}); "
                          f"{method!r} has none: drop eta or change the method")
    return eta


def _run_sampler(D: Callable, x: torch.Tensor, sigmas: torch.Tensor, method: str, g: torch.Generator,
                 **opts: Any) -> torch.Tensor:
    from ...core.samplers import sample
    return sample(D, x, sigmas, method=method, generator=g, **opts)
