"""Bad-input accounting of the corpus reader and the synthetic corpus."""

import pytest

from multidiff.errors import DataError
from multidiff.modalities.text import TextModality, read_corpus, read_lines, split_by_mr, synthetic_corpus
from multidiff.modalities.text.corpus import ReadStats, parse_mr


def test_empty_file(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_lines(p)
    p.write_bytes(b"\n  \n\n")
    with pytest.raises(DataError, match="empty"):
        read_lines(p)
    with pytest.raises(DataError, match="does not exist"):
        read_lines(tmp_path / "nope.txt")


def test_empty_lines_bad_utf8_long_lines(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(b"first line\n\n   \nsecond \xff\xfe line\n" + b"x" * 50 + b"\nlast\n")
    st = ReadStats()
    lines = read_lines(p, max_chars=20, stats=st)
    assert lines == ["first line", "second \ufffd\ufffd line", "x" * 20, "last"]
    assert (st.lines, st.kept, st.empty_skipped, st.bad_utf8, st.truncated_chars) == (6, 4, 2, 1, 1)
    assert st.bad_utf8_lines == [4] and st.empty_lines == [2, 3] and st.truncated_lines == [5]
    with pytest.raises(DataError, match=r"c.txt:4: not valid UTF-8"):
        read_lines(p, on_bad_utf8="error")
    m = TextModality(max_chars=20)
    items, skipped = m.read(p)
    assert len(items) == 4 and skipped == [(f"{p}:2", "empty line"), (f"{p}:3", "empty line")]
    assert items.names == [f"{p}:{n}" for n in (1, 4, 5, 6)]  # items keep their line numbers
    rep = m.report()
    assert rep["empty_skipped"] == 2 and rep["bad_utf8_replaced"] == 1 and rep["truncated_chars"] == 1
    assert rep["bad_utf8_lines"] == [4] and rep["truncated_chars_lines"] == [5]


def test_byte_order_mark_is_not_part_of_the_first_line(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes(b"\xef\xbb\xbfthe eagle\r\nthe mill\r\n")
    assert read_lines(p) == ["the eagle", "the mill"]


def test_mr_without_sentence_is_skipped_and_counted(tmp_path):
    p = tmp_path / "e2e.txt"
    p.write_text("name : A||A serves food.\nname : B||  \nname : C||C is cheap.\n")
    items, skipped = TextModality().read(p)
    assert [e.text for e in items] == ["A serves food.", "C is cheap."] and items.names == [f"{p}:1", f"{p}:3"]
    assert skipped == [(f"{p}:2", "meaning representation without a sentence")]


def test_unk_and_token_truncation_in_report():
    m = TextModality(min_frequency=2, max_len=5)
    m.prepare(["a b c", "a b c", "a b"])
    m.encode(["a b zzz", "a b c a b c a b"])
    rep = m.report()
    assert rep["unk_tokens"] == 1 and rep["truncated_lines"] == 1


def test_e2e_format_and_split():
    lines = synthetic_corpus(num_mrs=30, refs_per_mr=3, seed=5)
    assert lines == synthetic_corpus(num_mrs=30, refs_per_mr=3, seed=5)        # deterministic
    assert lines != synthetic_corpus(num_mrs=30, refs_per_mr=3, seed=6)
    mr_text, sent = lines[0].split("||")
    mr = parse_mr(mr_text)
    assert mr["name"] in sent
    assert parse_mr("name[The Eagle], area[riverside]") == {"name": "The Eagle", "area": "riverside"}
    from multidiff.modalities.text.corpus import parse_examples
    ex = parse_examples(lines)
    tr, te = split_by_mr(ex, 0.1, seed=0)
    assert len(tr) + len(te) == len(ex) and len(te) == 9
    assert not {e.mr_text for e in tr} & {e.mr_text for e in te}


@pytest.mark.data
def test_read_e2e(shared_data):
    path = shared_data / "e2e" / "e2e_nlg_valid.txt"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    ex, st = read_corpus(path)
    assert st.kept == len(ex) > 4000 and st.bad_utf8 == 0
    assert all(e.mr.get("name") for e in ex)
    # human references omit some slots; the matcher should put them near E2E's known ~10% floor
    from multidiff.modalities.text.metrics import slot_error_rate, slot_values
    ser = slot_error_rate([e.mr for e in ex], [e.text for e in ex], slot_values([e.mr for e in ex]))
    assert 0.02 < ser < 0.12


def test_clean_mrs_keeps_the_slots_the_sentence_says():
    from multidiff.modalities.text.corpus import clean_mrs, parse_examples
    lines = ["name : The Eagle | food : Chinese | area : riverside||The Eagle serves Chinese food .",
             "name : Cotto | family friendly : yes||Cotto is not family friendly .",          # contradicted
             "name : Aromi | near : Clare Hall||Aromi is a coffee shop near Clare Hall .",      # all said
             "name : Wildwood | area : riverside||A pub in the city centre .",                   # nothing said
             "just a plain sentence ."]
    out, counts = clean_mrs(parse_examples(lines))
    assert [(e.mr, e.mr_text) for e in out[:2]] == [
        ({"name": "The Eagle", "food": "Chinese"}, "name : The Eagle | food : Chinese"),
        ({"name": "Cotto"}, "name : Cotto")]
    assert out[2].mr_text == "name : Aromi | near : Clare Hall"    # unchanged
    assert out[3].text == "just a plain sentence ." and not out[3].mr  # plain text passes; Wildwood removed
    assert counts == {"changed": 2, "dropped_examples": 1, "slots_before": 9, "slots_after": 5,
                      "dropped_slots": {"area": 2, "family friendly": 1, "name": 1}}
    # a value of the slot named by another MR of the corpus counts as a contradiction
    ex = parse_examples(["name : The Eagle | area : riverside||The Eagle is in the city centre ."])
    assert clean_mrs(ex, {"area": {"riverside", "city centre"}, "name": {"The Eagle"}})[0][0].mr == {"name": "The Eagle"}


def test_delexicalise_replaces_names_in_mr_and_sentence_and_relexicalise_restores_them():
    from multidiff.modalities.text.corpus import delexicalise, parse_examples, placeholder, relexicalise
    assert placeholder("name") == "name_value" and placeholder("family friendly") == "family_friendly_value"
    e = parse_examples(["name : The Mill | area : riverside | near : Crowne Plaza Hotel||"
                        "the mill is by the river , near the Crown Plaza Hotel . The Millstone is not The Mill 's ."])[0]
    d = delexicalise(e, ["name", "near"])
    assert d.mr == {"name": "name_value", "area": "riverside", "near": "near_value"}
    assert d.mr_text == "name : name_value | area : riverside | near : near_value"
    # any case, whole words only, the checker's variants ("Crown" for "Crowne")
    assert d.text == "name_value is by the river , near the near_value . The Millstone is not name_value 's ."
    assert relexicalise("NAME_VALUE is near near_value .", e.mr, ["name", "near"]) == \
        "The Mill is near Crowne Plaza Hotel ."
    # a value the sentence does not say: the MR still gets the placeholder, the sentence is unchanged
    e2 = parse_examples(["name : Aromi | near : Clare Hall||Aromi is a pub ."])[0]
    assert delexicalise(e2, ["name", "near"]).text == "name_value is a pub ."
    # an example without any of the slots is returned as it is (its MR text is not rewritten)
    e3 = parse_examples(["name[Cotto], area[riverside]||Cotto is by the river ."])[0]
    assert delexicalise(e3, ["near"]) is e3
    # a placeholder whose slot the MR lacks stays
    assert relexicalise("near_value is close .", {"name": "Cotto"}, ["name", "near"]) == "near_value is close ."
