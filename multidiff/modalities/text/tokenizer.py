"""Tokenizers for the text modality, built on the `tokenizers` library.

Train a word-level, BPE or WordPiece tokenizer on a corpus, or load a `tokenizer.json` file / a local
Hugging Face tokenizer folder (``tokenizer.json``, ``vocab.txt``, or GPT-2's ``vocab.json`` + ``merges.txt``).
Every tokenizer has the six special tokens PAD, BOS, EOS, UNK, SEP, MASK (trained ones put them at ids 0..5
in that order; a loaded one that lacks a role gets it as a new token, except MASK, for which UNK stands in). A tokenizer's
`fingerprint` (SHA-256 of its canonical JSON) is saved with a model, and `check_fingerprint` refuses a
tokenizer that does not match with `MismatchError`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from ...errors import CheckpointError, ConfigError, DataError, MismatchError

SPECIALS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]", "[SEP]", "[MASK]")
ROLES = ("pad", "bos", "eos", "unk", "sep", "mask")
# Names other tokenizers use for the same roles (BERT, RoBERTa/GPT-2, T5/SentencePiece).
_ALIASES = {
    "pad": ("[PAD]", "<pad>", "<|pad|>"),
    "bos": ("[BOS]", "[CLS]", "<s>", "<|startoftext|>", "<|endoftext|>"),
    "eos": ("[EOS]", "[SEP]", "</s>", "<|endoftext|>"),
    "unk": ("[UNK]", "<unk>", "<|endoftext|>"),
    "sep": ("[SEP]", "</s>", "<sep>", "<|endoftext|>"),
    "mask": ("[MASK]", "<mask>"),
}


@dataclass
class EncodeStats:
    """Counts from `TextTokenizer.encode_batch`: tokens mapped to UNK, lines truncated."""

    tokens: int = 0
    unk: int = 0
    truncated: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"tokens": self.tokens, "unk_tokens": self.unk, "truncated_lines": self.truncated}

    def add(self, other: "EncodeStats") -> None:
        """Add `other`'s counts to these."""
        self.tokens, self.unk, self.truncated = (self.tokens + other.tokens, self.unk + other.unk,
                                                 self.truncated + other.truncated)


class TextTokenizer:
    """A `tokenizers.Tokenizer` with named special-token ids and a fingerprint.

    Attributes: `pad_id, bos_id, eos_id, unk_id, sep_id, mask_id` (ints), `vocab_size`, `fingerprint`.
    """

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        vocab = tok.get_vocab(with_added_tokens=True)
        has = lambda role: any(n in vocab for n in _ALIASES[role])
        missing = [SPECIALS[i] for i, role in enumerate(ROLES) if role != "mask" and not has(role)]
        if missing:   # e.g. GPT-2's has no PAD: add the roles it lacks as new special tokens
            tok.add_special_tokens(missing)
            vocab = tok.get_vocab(with_added_tokens=True)
        for role in ROLES:
            # MASK is optional for pretrained tokenizers (only infilling templates use it): UNK stands in
            names = _ALIASES[role] if role != "mask" or has("mask") else _ALIASES["unk"]
            setattr(self, f"{role}_id", int(next(vocab[n] for n in names if n in vocab)))
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.fingerprint = hashlib.sha256(self.to_str().encode("utf-8")).hexdigest()[:16]

    # --- building ---------------------------------------------------------------------------------
    @classmethod
    def train(cls, lines: Iterable[str], kind: str = "word", vocab_size: int = 8000,
              min_frequency: int = 1, lowercase: bool = True) -> "TextTokenizer":
        """Train on an iterable of lines. kind: 'word' (whitespace/punctuation words), 'bpe', 'wordpiece'.

        For 'word', `vocab_size` caps the vocabulary (most frequent kept) and `min_frequency` drops
        rare words (they become UNK)."""
        lines = list(lines)
        if not lines:
            raise DataError("cannot train a tokenizer on an empty corpus; give at least one line of text")
        kind = kind.lower()
        if kind == "word":
            tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
            trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                                special_tokens=list(SPECIALS))
        elif kind == "bpe":
            tok = Tokenizer(models.BPE(unk_token="[UNK]", end_of_word_suffix="</w>"))
            trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                          special_tokens=list(SPECIALS), end_of_word_suffix="</w>")
            tok.decoder = decoders.BPEDecoder(suffix="</w>")
        elif kind == "wordpiece":
            tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
            trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                                special_tokens=list(SPECIALS))
            tok.decoder = decoders.WordPiece(cleanup=False)
        else:
            raise ConfigError(f"unknown tokenizer kind {kind!r}; use 'word', 'bpe' or 'wordpiece'")
        norm = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        tok.normalizer = normalizers.Sequence(norm)
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.train_from_iterator(lines, trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str | Path) -> "TextTokenizer":
        """Load a `tokenizer.json` file, or a folder holding `tokenizer.json`, a WordPiece `vocab.txt` or a
        byte-level BPE `vocab.json` + `merges.txt` (GPT-2). Special roles the tokenizer lacks (GPT-2 has no
        PAD) are added as new tokens."""
        p = Path(path)
        if p.is_dir():
            if (p / "tokenizer.json").is_file():
                p = p / "tokenizer.json"
            elif (p / "vocab.json").is_file() and (p / "merges.txt").is_file():
                from tokenizers.implementations import ByteLevelBPETokenizer
                return cls(ByteLevelBPETokenizer(str(p / "vocab.json"), str(p / "merges.txt"))._tokenizer)
            elif (p / "vocab.txt").is_file():
                lower = True
                cfg = p / "tokenizer_config.json"
                if cfg.is_file():
                    lower = bool(json.loads(cfg.read_text("utf-8")).get("do_lower_case", True))
                from tokenizers.implementations import BertWordPieceTokenizer
                return cls(BertWordPieceTokenizer(str(p / "vocab.txt"), lowercase=lower)._tokenizer)
            else:
                raise CheckpointError(f"{p} holds no tokenizer.json, vocab.txt or vocab.json + merges.txt; "
                                      "point at a tokenizer.json file or a Hugging Face tokenizer folder")
        if not p.is_file():
            raise CheckpointError(f"tokenizer file {p} does not exist")
        try:
            return cls(Tokenizer.from_file(str(p)))
        except Exception as e:  # tokenizers raises plain Exception on bad JSON
            raise CheckpointError(f"cannot read tokenizer {p}: {e}") from e

    @classmethod
    def from_str(cls, s: str) -> "TextTokenizer":
        return cls(Tokenizer.from_str(s))

    def to_str(self) -> str:
        """Canonical JSON (sorted keys, no whitespace), the basis of the fingerprint."""
        return json.dumps(json.loads(self.tok.to_str()), sort_keys=True, separators=(",", ":"))

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        if p.suffix != ".json":
            p.mkdir(parents=True, exist_ok=True)
            p = p / "tokenizer.json"
        p.write_text(self.to_str(), encoding="utf-8")
        return p

    def check_fingerprint(self, expected: str) -> None:
        """Raise MismatchError unless this tokenizer is the one a model was trained with."""
        if expected != self.fingerprint:
            raise MismatchError(f"tokenizer fingerprint {self.fingerprint} does not match the model's "
                                f"{expected}: the model was trained with another vocabulary. Use the "
                                "tokenizer saved with the model (from_pretrained loads it from "
                                "modality/meta.json), or train a new model with this tokenizer")

    # --- use ---------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], max_tokens: int | None = None,
                     stats: EncodeStats | None = None) -> list[list[int]]:
        """Token ids per text (no specials), cut to `max_tokens`; counts truncated texts and the UNK tokens
        that are kept in `stats`."""
        out = []
        for enc in self.tok.encode_batch(list(texts), add_special_tokens=False):
            ids = enc.ids
            if stats is not None and max_tokens is not None and len(ids) > max_tokens:
                stats.truncated += 1
            if max_tokens is not None:
                ids = ids[:max_tokens]
            if stats is not None:
                stats.tokens += len(ids)
                stats.unk += sum(1 for i in ids if i == self.unk_id)
            out.append(ids)
        return out

    def decode(self, ids: Sequence[int], cut_at_eos: bool = True) -> str:
        """Text of `ids`: stops at the first EOS (if `cut_at_eos`), drops PAD/BOS/SEP/MASK."""
        keep = []
        drop = {self.pad_id, self.bos_id, self.mask_id, self.sep_id}
        for i in ids:
            i = int(i)
            if cut_at_eos and i == self.eos_id:
                break
            if i not in drop:
                keep.append(i)
        return self.tok.decode(keep, skip_special_tokens=False).replace("[UNK]", "<unk>").strip()

    def id_to_token(self, i: int) -> str | None:
        return self.tok.id_to_token(int(i))
