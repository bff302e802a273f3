"""Out-of-domain sentences: the anomalies of the text anomaly-detection recipe. Deterministic for a seed.

  shuffled   `word_shuffled(sentences)`: in-domain sentences with their words in a random order (same
             vocabulary and length, broken syntax: only a model of word order can tell them apart)
  weather    weather reports from templates ("Tomorrow in the north , expect heavy rain ...")
  reviews    product reviews from templates ("I bought this blender last month . The motor is ...")

The template domains are made by this project (no external data). They are tokenised like the E2E
corpus (punctuation separated by spaces), so the only difference from restaurant sentences is the domain.
"""

from __future__ import annotations

import random
from typing import Sequence


def word_shuffled(sentences: Sequence[str], seed: int = 0, min_words: int = 3) -> list[str]:
    """Each sentence with its words (whitespace tokens) permuted; sentences shorter than `min_words` are
    dropped, and a permutation equal to the original is reshuffled (up to 10 times)."""
    rng = random.Random(seed)
    out = []
    for s in sentences:
        words = s.split()
        if len(words) < min_words or len(set(words)) < 2:
            continue
        perm = list(words)
        for _ in range(10):
            rng.shuffle(perm)
            if perm != words:
                break
        out.append(" ".join(perm))
    return out


_REGIONS = ["the north", "the south", "the east", "the west", "coastal areas", "the highlands", "the valleys",
            "the capital", "inland areas", "the islands"]
_TIMES = ["Tomorrow", "Tonight", "This afternoon", "On Saturday", "On Monday", "Later today", "Overnight",
          "This weekend"]
_WEATHER = ["heavy rain", "light showers", "sunny spells", "thick fog", "strong winds", "scattered thunderstorms",
            "snow flurries", "clear skies", "drizzle", "hail"]
_TEMPS = ["highs of 12 degrees", "lows near freezing", "temperatures around 20 degrees", "a mild 15 degrees",
          "highs of 28 degrees", "a chilly 4 degrees"]
_WINDS = ["a gentle breeze from the west", "gusts of up to 60 miles per hour", "calm winds",
          "a northerly wind", "blustery conditions along the coast"]
_OUTLOOK = ["it will brighten up later", "showers will clear by the evening", "the rain will spread east",
            "conditions will improve by the weekend", "there is a risk of flooding", "frost is likely overnight"]


def weather_report(rng: random.Random) -> str:
    """One weather report sentence (or two)."""
    t, r, w = rng.choice(_TIMES), rng.choice(_REGIONS), rng.choice(_WEATHER)
    first = rng.choice([f"{t} in {r} , expect {w} with {rng.choice(_TEMPS)} .",
                        f"{t} {r} will see {w} and {rng.choice(_WINDS)} .",
                        f"Forecasters predict {w} for {r} {t.lower()} , with {rng.choice(_TEMPS)} ."])
    if rng.random() < 0.6:
        o = rng.choice(_OUTLOOK)
        first += " " + o[0].upper() + o[1:] + " ."
    return first


_PRODUCTS = ["blender", "vacuum cleaner", "laptop", "pair of headphones", "kettle", "phone case", "desk lamp",
             "electric toothbrush", "backpack", "coffee grinder", "keyboard", "camera"]
_PARTS = ["battery", "motor", "screen", "handle", "zip", "cable", "button", "lid", "charger", "strap"]
_GOOD = ["works perfectly", "feels very sturdy", "is easy to use", "arrived quickly", "does exactly what it says",
         "is worth every penny", "looks great on my desk"]
_BAD = ["stopped working after a week", "feels cheap", "broke on the first day", "is far too loud",
        "does not hold a charge", "was missing from the box", "is impossible to clean"]
_SCORES = ["one star", "two stars", "three stars", "four stars", "five stars"]


def product_review(rng: random.Random) -> str:
    """One product review (one or two sentences)."""
    p, part = rng.choice(_PRODUCTS), rng.choice(_PARTS)
    good = rng.random() < 0.5
    verdict = rng.choice(_GOOD if good else _BAD)
    first = rng.choice([f"I bought this {p} last month and the {part} {verdict} .",
                        f"The {part} of this {p} {verdict} .",
                        f"My new {p} {verdict} , I would give it {rng.choice(_SCORES)} ."])
    if rng.random() < 0.6:
        first += " " + rng.choice([f"Delivery took {rng.randint(2, 9)} days .",
                                   "I would " + ("definitely" if good else "not") + " recommend it .",
                                   "Customer service " + ("was helpful ." if good else "never replied ."),
                                   f"I returned the {p} ." if not good else f"I will buy another {p} ."])
    return first


DOMAINS = {"weather": weather_report, "reviews": product_review}


def other_domain(num: int, domain: str = "weather", seed: int = 0) -> list[str]:
    """`num` sentences of another synthetic domain ("weather" or "reviews"), deterministic for `seed`."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    rng = random.Random(f"{domain}-{seed}")
    return [DOMAINS[domain](rng) for _ in range(num)]
