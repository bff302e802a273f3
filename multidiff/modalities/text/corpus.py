"""Reading text corpora with bad-input accounting, and the embedded synthetic restaurant corpus.

Two formats: plain line-per-example text, and the E2E NLG format ``MR||sentence`` where the meaning
representation is ``slot : value | slot : value ...`` (the form used by Diffusion-LM's E2E files).

Bad input is counted, never silently dropped: empty file -> `DataError`; empty lines skipped and counted;
invalid UTF-8 either raises `DataError` naming the line (``on_bad_utf8="error"``) or is replaced with U+FFFD
and counted with its line numbers (``"replace"``, the default); lines over `max_chars` are truncated and
counted. Token-level counts (UNK, truncation to the model's length) come from the tokenizer's `EncodeStats`.
"""

from __future__ import annotations

import codecs
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ...errors import ConfigError, DataError


@dataclass
class ReadStats:
    """What happened while reading a file. `bad_utf8_lines` holds 1-based line numbers."""

    lines: int = 0
    kept: int = 0
    empty_skipped: int = 0
    empty_lines: list[int] = field(default_factory=list)
    bad_utf8: int = 0
    bad_utf8_lines: list[int] = field(default_factory=list)
    truncated_chars: int = 0
    truncated_lines: list[int] = field(default_factory=list)
    malformed_mr: int = 0
    no_sentence_lines: list[int] = field(default_factory=list)
    kept_lines: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"lines": self.lines, "kept": self.kept, "empty_skipped": self.empty_skipped,
                "bad_utf8_replaced": self.bad_utf8, "bad_utf8_lines": self.bad_utf8_lines[:100],
                "truncated_chars": self.truncated_chars, "truncated_chars_lines": self.truncated_lines[:100],
                "malformed_mr": self.malformed_mr,
                "no_sentence": len(self.no_sentence_lines)}


@dataclass
class Example:
    """One item: `text` (the sentence), `mr` (slot -> value, empty for plain text), `mr_text` (source)."""

    text: str
    mr: dict[str, str] = field(default_factory=dict)
    mr_text: str = ""


def read_lines(path: str | Path, *, max_chars: int = 2000, on_bad_utf8: str = "replace",
               stats: ReadStats | None = None) -> list[str]:
    """Non-empty lines of a text file (stripped), with accounting in `stats`.

    Raises DataError for a missing or empty file, a file with no non-empty line, or (with
    ``on_bad_utf8="error"``) the first line that is not valid UTF-8."""
    if on_bad_utf8 not in ("replace", "error"):
        raise ConfigError(f"on_bad_utf8 must be 'replace' or 'error', not {on_bad_utf8!r}")
    p = Path(path)
    if not p.is_file():
        raise DataError(f"text file {p} does not exist; give a file with one example per line")
    raw = p.read_bytes()
    if not raw.strip():
        raise DataError(f"text file {p} is empty; give a file with one example per line")
    if raw.startswith(codecs.BOM_UTF8):     # a byte-order mark would become part of the first line's first word
        raw = raw[len(codecs.BOM_UTF8):]
    st = stats if stats is not None else ReadStats()
    out: list[str] = []
    for n, bline in enumerate(raw.splitlines(), start=1):
        st.lines += 1
        try:
            line = bline.decode("utf-8")
        except UnicodeDecodeError as e:
            if on_bad_utf8 == "error":
                raise DataError(f"{p}:{n}: not valid UTF-8 ({e.reason} at byte {e.start}); re-encode the "
                                "file as UTF-8 or read it with on_bad_utf8='replace'") from None
            line = bline.decode("utf-8", errors="replace")
            st.bad_utf8 += 1
            st.bad_utf8_lines.append(n)
        line = line.strip()
        if not line:
            st.empty_skipped += 1
            if len(st.empty_lines) < 1000:
                st.empty_lines.append(n)
            continue
        if max_chars and len(line) > max_chars:
            line = line[:max_chars]
            st.truncated_chars += 1
            st.truncated_lines.append(n)
        out.append(line)
        st.kept_lines.append(n)
    st.kept = len(out)
    if not out:
        raise DataError(f"text file {p} has no non-empty line ({st.empty_skipped} empty lines skipped)")
    return out


def parse_mr(mr_text: str) -> dict[str, str]:
    """``"name : X | area : Y"`` -> {"name": "X", "area": "Y"}; also accepts E2E csv style ``name[X], area[Y]``."""
    mr: dict[str, str] = {}
    s = mr_text.strip()
    if "[" in s and "]" in s and " : " not in s:
        for part in s.split("],"):
            if "[" in part:
                k, v = part.split("[", 1)
                mr[k.strip()] = v.strip().rstrip("]").strip()
        return mr
    for part in s.split("|"):
        if ":" not in part:
            continue
        k, v = part.split(":", 1)
        if k.strip():
            mr[k.strip()] = v.strip()
    return mr


def parse_examples(lines: Sequence[str], stats: ReadStats | None = None) -> list[Example]:
    """Lines -> Examples. ``MR||sentence`` lines carry an MR; other lines are plain text."""
    out = []
    for line in lines:
        if "||" in line:
            mr_text, text = line.split("||", 1)
            mr = parse_mr(mr_text)
            if not mr and stats is not None:
                stats.malformed_mr += 1
            out.append(Example(text=text.strip(), mr=mr, mr_text=mr_text.strip()))
        else:
            out.append(Example(text=line))
    return [e for e in out if e.text]


def read_corpus(path: str | Path, **kw) -> tuple[list[Example], ReadStats]:
    """`read_lines` then `parse_examples`; returns (examples, stats). `stats.kept_lines` becomes the 1-based
    line number of each example; ``MR||`` lines with an empty sentence go to `stats.no_sentence_lines`."""
    st = ReadStats()
    examples, kept = [], []
    lines = read_lines(path, stats=st, **kw)
    for n, line in zip(st.kept_lines, lines):
        ex = parse_examples([line], st)
        if ex:
            examples.append(ex[0])
            kept.append(n)
        else:
            st.no_sentence_lines.append(n)
    st.kept_lines, st.kept = kept, len(kept)
    return examples, st


def split_by_mr(examples: Sequence[Example], test_fraction: float = 0.1,
                seed: int = 0) -> tuple[list[Example], list[Example]]:
    """Split so no MR (or, for plain text, no identical line) is in both halves. Deterministic for `seed`."""
    keys = sorted({e.mr_text or e.text for e in examples})
    rng = random.Random(seed)
    rng.shuffle(keys)
    n_test = max(1, int(round(len(keys) * test_fraction))) if len(keys) > 1 else 0
    test_keys = set(keys[:n_test])
    train = [e for e in examples if (e.mr_text or e.text) not in test_keys]
    test = [e for e in examples if (e.mr_text or e.text) in test_keys]
    return train, test


def clean_mrs(examples: Sequence[Example], all_values: dict[str, set[str]] | None = None
              ) -> tuple[list[Example], dict]:
    """Each MR reduced to the slots its sentence realises (the cleaning of Dušek, Howcroft and Rieser 2019,
    "Semantic noise matters for neural NLG"): a slot that the slot checker (`metrics.slot_errors`, with
    `all_values` for contradictions; default: the values of these examples) finds missing from or
    contradicted by the sentence is dropped, so a model trained on the result learns that every slot it
    is given is said. Plain-text examples pass unchanged; an example left with no slot is removed.

    Returns (examples, counts): `changed` examples, `dropped_examples`, `dropped_slots` (slot -> count),
    `slots_before`, `slots_after`."""
    from .metrics import slot_errors, slot_values
    values = all_values if all_values is not None else slot_values([e.mr for e in examples])
    out, changed, dropped_examples, by_slot, before, after = [], 0, 0, {}, 0, 0
    for e in examples:
        if not e.mr:
            out.append(e)
            continue
        kept = {k: v for k, v in e.mr.items() if slot_errors({k: v}, e.text, values)[0] == 0}
        before, after = before + len(e.mr), after + len(kept)
        for k in e.mr.keys() - kept.keys():
            by_slot[k] = by_slot.get(k, 0) + 1
        if len(kept) == len(e.mr):
            out.append(e)
        elif not kept:
            dropped_examples += 1
        else:
            changed += 1
            out.append(Example(text=e.text, mr=kept, mr_text=mr_to_text(kept)))
    return out, {"changed": changed, "dropped_examples": dropped_examples, "dropped_slots": by_slot,
                 "slots_before": before, "slots_after": after}


def placeholder(slot: str) -> str:
    """The word that stands for `slot`'s value in delexicalised text: ``"name"`` -> ``"name_value"``."""
    return re.sub(r"\W+", "_", slot.strip().lower()) + "_value"


def _value_pattern(slot: str, value: str) -> re.Pattern:
    """Whole-word, case-insensitive pattern of `value` in any of the slot checker's phrasings (longest first)."""
    from .metrics import _value_variants
    variants = sorted({v for v in _value_variants(slot, value) if v}, key=len, reverse=True)
    return re.compile("|".join(r"(?<!\w)" + re.escape(v) + r"(?!\w)" for v in variants), re.IGNORECASE)


def delexicalise(example: Example, slots: Sequence[str]) -> Example:
    """`example` with the values of `slots` (e.g. name, near: open-ended proper names) replaced by their
    `placeholder` in the MR and wherever the sentence says them (whole words, any case, the checker's
    variants such as "Crown Plaza"). The model then learns to place the slot, and `relexicalise` copies the
    MR's exact value back after generation (Wen et al. 2015; the delexicalised E2E baselines). Slots the MR
    lacks are ignored (an example with none of them is returned as it is); the sentence may be empty (a
    source MR to generate from)."""
    present = [slot for slot in slots if slot in example.mr]
    if not present:
        return example
    mr, text = dict(example.mr), example.text
    for slot in present:
        text = _value_pattern(slot, mr[slot]).sub(placeholder(slot), text)
        mr[slot] = placeholder(slot)
    return Example(text=text, mr=mr, mr_text=mr_to_text(mr))


def relexicalise(text: str, mr: dict[str, str], slots: Sequence[str]) -> str:
    """Each `placeholder` of `slots` in generated `text` -> the value of that slot in the (original) `mr`;
    a placeholder whose slot `mr` lacks is left as it is."""
    for slot in slots:
        if slot in mr:
            text = re.sub(r"(?<!\w)" + placeholder(slot) + r"(?!\w)", lambda _: mr[slot], text, flags=re.IGNORECASE)
    return text


# ---------------------------------------------------------------------------------------------------
# The embedded synthetic corpus: restaurant descriptions from random meaning representations.
# ---------------------------------------------------------------------------------------------------
NAMES = ["The Eagle", "The Wrestlers", "Fitzbillies", "The Punter", "The Golden Palace", "Cocum",
         "Cotto", "Browns Cambridge", "Aromi", "The Cambridge Blue", "The Cricketers", "Wildwood",
         "The Mill", "Clowns", "Alimentum", "Taste of Cambridge", "The Phoenix", "Midsummer House"]
EAT_TYPES = ["coffee shop", "restaurant", "pub"]
FOODS = ["English", "Chinese", "Italian", "French", "Indian", "Japanese", "Thai"]
PRICES = ["cheap", "moderate", "high", "less than £ 20", "£ 20 - 25", "more than £ 30"]
RATINGS = ["low", "average", "high", "1 out of 5", "3 out of 5", "5 out of 5"]
AREAS = ["city centre", "riverside"]
NEARS = ["Burger King", "The Portland Arms", "Crowne Plaza Hotel", "The Sorrento", "Raja Indian Cuisine",
         "Café Sicilia", "Café Brazil", "Ranch", "Clare Hall", "The Bakers"]

_SLOT_ORDER = ["name", "Type", "food", "price", "customer rating", "area", "family friendly", "near"]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _phrases(mr: dict[str, str], rng: random.Random) -> str:
    """One sentence realising every slot of `mr` (templates chosen by `rng`)."""
    name = mr["name"]
    kind = mr.get("Type", rng.choice(["place", "venue", "establishment"]))
    food = mr.get("food")
    head = f"{food} {kind}" if food and rng.random() < 0.6 else kind
    food_said = food is not None and head != kind
    parts = []
    if food and not food_said:
        parts.append(rng.choice([f"serving {food} food", f"that serves {food} food",
                                 f"offering {food} cuisine"]))
    place = []
    if "area" in mr:
        place.append(rng.choice([f"in the {mr['area']}", f"located in the {mr['area']}",
                                 f"in the {mr['area']} area"]))
    if "near" in mr:
        place.append(rng.choice([f"near {mr['near']}", f"close to {mr['near']}"]))
    openers = [f"{name} is {_article(head)} {head}", f"There is {_article(head)} {head} called {name}"]
    if place and not parts:
        openers.append(f"{name} , {_article(head)} {head} , is")
    opener = rng.choice(openers)
    if opener.endswith(" is"):
        place[0] = place[0].replace("located ", "")
    rest = []
    if "price" in mr:
        p = mr["price"]
        rest.append(rng.choice([f"it has a {p} price range", f"prices are {p}"]) if p in
                    ("cheap", "moderate", "high") else rng.choice([f"it costs {p}", f"prices are {p}"]))
    if "customer rating" in mr:
        r = mr["customer rating"]
        rest.append(rng.choice([f"it has a customer rating of {r}", f"customers rate it {r}",
                                f"it is rated {r} by customers"]))
    if "family friendly" in mr:
        yes = mr["family friendly"] == "yes"
        rest.append(rng.choice(["it is family friendly", "it is kid friendly", "children are welcome"])
                    if yes else rng.choice(["it is not family friendly", "it is not kid friendly",
                                            "children are not welcome"]))
    sent = " ".join([opener] + parts + place) + " ."
    if rest:
        sent += " " + rest[0][0].upper() + rest[0][1:]
        if len(rest) > 1:
            sent += (" , " if len(rest) > 2 else "") + " , ".join(rest[1:-1]) + " and " + rest[-1]
        sent += " ."
    return " ".join(sent.split())


def random_mr(rng: random.Random) -> dict[str, str]:
    """A random MR: always a name, 2-6 other slots."""
    pools = {"Type": EAT_TYPES, "food": FOODS, "price": PRICES, "customer rating": RATINGS,
             "area": AREAS, "family friendly": ["yes", "no"], "near": NEARS}
    slots = rng.sample(list(pools), rng.randint(2, 6))
    mr = {"name": rng.choice(NAMES)}
    for s in slots:
        mr[s] = rng.choice(pools[s])
    return {k: mr[k] for k in _SLOT_ORDER if k in mr}


def mr_to_text(mr: dict[str, str]) -> str:
    return " | ".join(f"{k} : {v}" for k, v in mr.items())


def synthetic_corpus(num_mrs: int = 400, refs_per_mr: int = 4, seed: int = 0) -> list[str]:
    """Lines ``MR||sentence`` in E2E's format: `num_mrs` random MRs with `refs_per_mr` realisations each.

    Synthetic (template-generated), deterministic for `seed`; made by this project, no external data."""
    rng = random.Random(seed)
    lines = []
    seen = set()
    while len(seen) < num_mrs:
        mr = random_mr(rng)
        key = mr_to_text(mr)
        if key in seen:
            continue
        seen.add(key)
        for _ in range(refs_per_mr):
            lines.append(f"{key}||{_phrases(mr, rng)}")
    return lines
