"""n-gram metrics and slot error rate against hand-computed examples."""

import math

import pytest

from multidiff.modalities.text.metrics import (corpus_bleu, distinct_n, rouge_l, self_bleu, sentence_bleu,
                                               slot_error_rate, slot_errors, slot_errors_by_slot, slot_values)


def test_bleu_worked_example():
    # hyp: the cat sat on the mat today (7), ref: the cat sat on the mat (6); BP = 1 (hyp longer)
    # p1 = 6/7, p2 = 5/6, p3 = 4/5, p4 = 3/4 -> BLEU = (6/7 * 5/6 * 4/5 * 3/4) ** (1/4) = (3/7) ** 0.25
    b = corpus_bleu(["the cat sat on the mat today"], [["the cat sat on the mat"]])
    assert b == pytest.approx((3 / 7) ** 0.25, abs=1e-12)


def test_bleu_brevity_penalty_and_closest_reference():
    # all precisions 1, hyp 6 vs closest ref 7 -> exp(1 - 7/6)
    assert corpus_bleu(["the cat sat on the mat"], [["the cat sat on the mat today"]]) == \
        pytest.approx(math.exp(1 - 7 / 6))
    # a second, equally long reference removes the penalty
    assert corpus_bleu(["the cat sat on the mat"], [["the cat sat on the mat today", "a b c d e f"]]) == \
        pytest.approx(1.0)


def test_bleu_clipping_and_corpus_sums():
    # clipped unigram precision 1/4 in "the the the the" vs "the cat"; no 2-gram match -> 0
    assert corpus_bleu(["the the the the"], [["the cat"]]) == 0.0
    # corpus level sums counts before dividing: sentence 1 perfect (4 words), sentence 2 p1 = 2/4
    h = ["a b c d", "a b x y"]
    r = [["a b c d"], ["a b c d"]]
    p1, p2, p3, p4 = 6 / 8, 4 / 6, 2 / 4, 1 / 2
    assert corpus_bleu(h, r) == pytest.approx((p1 * p2 * p3 * p4) ** 0.25)


def test_rouge_l():
    assert rouge_l(["a b c d"], [["a c e d"]]) == pytest.approx(0.75)
    # LCS 2, P = 1, R = 0.5, beta 1.2: (1 + 1.44) * 0.5 / (0.5 + 1.44)
    assert rouge_l(["a b"], [["a b c d"]]) == pytest.approx(2.44 * 0.5 / 1.94)
    assert rouge_l(["a b"], [["x y", "a b c d"]]) == pytest.approx(2.44 * 0.5 / 1.94)  # best reference


def test_distinct_and_self_bleu():
    assert distinct_n(["a b a b", "a c"], 1) == pytest.approx(3 / 6)
    assert distinct_n(["a b a b", "a c"], 2) == pytest.approx(3 / 4)
    assert self_bleu(["a b c d", "a b c d"]) == pytest.approx(1.0)
    assert self_bleu(["a b c d", "e f g h"]) == 0.0
    # smoothed sentence BLEU of "a b c x" vs "a b c d": p1 = 3/4 (unsmoothed), p2 = (2 + 1)/(3 + 1),
    # p3 = (1 + 1)/(2 + 1), p4 = (0 + 1)/(1 + 1)
    assert sentence_bleu("a b c x", ["a b c d"]) == pytest.approx((0.75 * 0.75 * (2 / 3) * 0.5) ** 0.25)


def test_slot_errors():
    mr = {"name": "The Eagle", "area": "riverside", "family friendly": "no"}
    vals = {"area": {"riverside", "city centre"}}
    e, n, det = slot_errors(mr, "The Eagle is in the city centre and is family friendly .", vals)
    assert (e, n) == (2, 3)
    assert any("contradicted by 'city centre'" in d for d in det)
    assert any("family friendly=no: contradicted" in d for d in det)
    assert slot_errors(mr, "The Eagle by the riverside is not family - friendly .")[0] == 0
    for negation in ("isn't kid friendly", "isn 't family - friendly", "is n't child friendly", "aren’t kid - friendly",
                     "isn ' t family friendly"):
        assert slot_errors(mr, f"The Eagle by the riverside {negation} .")[0] == 0, negation   # E2E's spellings
    mrs = [mr, {"name": "Aromi", "customer rating": "5 out of 5"}]
    texts = ["The Eagle is in the riverside , not family friendly .", "Aromi is rated 5 out of 5 ."]
    assert slot_error_rate(mrs, texts) == 0.0
    assert slot_error_rate(mrs, ["nothing", "Aromi"]) == pytest.approx(4 / 5)
    assert slot_values(mrs)["name"] == {"The Eagle", "Aromi"}


def test_slot_errors_by_slot():
    mrs = [{"name": "The Eagle", "area": "riverside", "family friendly": "no"},
           {"name": "Aromi", "area": "city centre"}]
    texts = ["The Eagle is in the city centre and is family friendly .",   # area contradicted, family contradicted
             "It is in the city centre ."]                                 # name missing
    vals = {"area": {"riverside", "city centre"}}
    assert slot_errors_by_slot(mrs, texts, vals) == {
        "name": {"slots": 2, "missing": 1, "contradicted": 0},
        "area": {"slots": 2, "missing": 0, "contradicted": 1},
        "family friendly": {"slots": 1, "missing": 0, "contradicted": 1}}
    # without the value sets another area cannot contradict: the wrong area is a missing one
    assert slot_errors_by_slot(mrs, texts)["area"] == {"slots": 2, "missing": 1, "contradicted": 0}
    assert slot_error_rate(mrs, texts, vals) == pytest.approx(3 / 5)
    from multidiff.modalities.text.evaluate import slot_error_summary
    assert slot_error_summary(slot_errors_by_slot(mrs, texts, vals)) == \
        "family friendly 1/1 (0, 1), name 1/2 (1, 0), area 1/2 (0, 1)"   # worst rate first; ties keep their order


def test_slot_select_keeps_the_candidate_that_realises_its_mr():
    from multidiff.modalities.text.corpus import Example
    from multidiff.modalities.text.evaluate import slot_select
    eagle = Example(text="", mr={"name": "The Eagle", "food": "Chinese", "area": "riverside"})
    aromi = Example(text="", mr={"name": "Aromi", "family friendly": "yes"})
    vals = {"food": {"Chinese", "Italian"}, "area": {"riverside", "city centre"}}
    cands = [["The Eagle serves Italian food by the riverside .",        # food contradicted: 1 error
              "The Eagle serves Chinese food by the riverside .",        # 0 errors
              "It serves Chinese food in the city centre ."],            # name missing, area contradicted: 2
             ["Aromi is not family friendly .", "Aromi is family friendly .", "Aromi is kid friendly ."]]
    assert slot_select([eagle, aromi], cands, vals) == [cands[0][1], cands[1][1]]  # ties: the first one


def test_data2text_quality_counts_the_references_own_slot_errors():
    from multidiff.modalities.text.corpus import Example
    from multidiff.modalities.text.evaluate import data2text_quality
    eagle = Example(text="", mr={"name": "The Eagle", "food": "Chinese", "area": "riverside"})
    aromi = Example(text="", mr={"name": "Aromi", "family friendly": "yes"})
    refs = [["The Eagle serves Chinese food by the riverside .",        # 0 of 3 slots wrong
             "The Eagle is by the riverside ."],                         # food missing: 1 of 3
            ["Aromi is not family friendly ."]]                          # contradicted: 1 of 2
    q = data2text_quality([eagle, aromi], refs, ["The Eagle serves Chinese food .", "Aromi ."])
    assert q["reference_slot_error_rate"] == pytest.approx(2 / 8)
    assert q["slot_error_rate"] == pytest.approx(2 / 5)                  # area missing; family missing
    assert {slot: (c["slots"], c["missing"]) for slot, c in q["slot_errors_by_slot"].items()} == {
        "name": (2, 0), "food": (1, 0), "area": (1, 1), "family friendly": (1, 1)}


def test_synthetic_references_have_no_slot_errors():
    """Every template of the embedded corpus realises every slot the way the SER matcher reads it."""
    from multidiff.modalities.text import synthetic_corpus
    from multidiff.modalities.text.corpus import parse_examples
    ex = parse_examples(synthetic_corpus(num_mrs=200, refs_per_mr=3, seed=4))
    assert slot_error_rate([e.mr for e in ex], [e.text for e in ex], slot_values([e.mr for e in ex])) == 0.0
