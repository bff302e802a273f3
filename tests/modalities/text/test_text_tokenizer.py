"""Tokenizer training, round trips, persistence and fingerprint refusal."""

import pytest

from multidiff.errors import CheckpointError, ConfigError, MismatchError
from multidiff.modalities.text import TextModality, TextTokenizer
from multidiff.modalities.text.tokenizer import SPECIALS, EncodeStats

LINES = ["the eagle is a pub near the river .", "aromi serves italian food .",
         "the eagle is cheap and family friendly ."]


@pytest.mark.parametrize("kind", ["word", "bpe", "wordpiece"])
def test_round_trip(kind, tmp_path):
    tok = TextTokenizer.train(LINES * 3, kind=kind, vocab_size=200)
    assert [tok.id_to_token(i) for i in range(6)] == list(SPECIALS)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4, 5)
    for line in LINES:
        assert tok.decode(tok.encode(line)) == line
    again = TextTokenizer.load(tok.save(tmp_path / kind))   # a folder holding tokenizer.json
    assert again.fingerprint == tok.fingerprint
    assert TextTokenizer.load(tmp_path / kind / "tokenizer.json").encode(LINES[0]) == tok.encode(LINES[0])


def test_decode_cuts_at_eos_and_drops_pad():
    tok = TextTokenizer.train(LINES)
    ids = tok.encode("the eagle is a pub") + [tok.eos_id] + tok.encode("aromi") + [tok.pad_id]
    assert tok.decode(ids) == "the eagle is a pub"
    assert tok.decode([tok.pad_id] + tok.encode("aromi") + [tok.pad_id]) == "aromi"


def test_unk_and_truncation_counted():
    tok = TextTokenizer.train(LINES, min_frequency=2)       # words seen once become UNK
    st = EncodeStats()
    out = tok.encode_batch(["the eagle serves zebra soup", "the eagle is the eagle is"], max_tokens=4, stats=st)
    assert [len(o) for o in out] == [4, 4]
    assert st.truncated == 2 and st.unk == 2                # 'serves' (seen once) and 'zebra' within the first 4
    assert tok.decode(out[0]) == "the eagle <unk> <unk>"


def test_fingerprint_mismatch_refused(tmp_path):
    a = TextTokenizer.train(LINES)
    b = TextTokenizer.train(LINES + ["a completely different word list"])
    a.check_fingerprint(a.fingerprint)
    with pytest.raises(MismatchError, match="does not match"):
        b.check_fingerprint(a.fingerprint)
    m = TextModality()
    m.prepare(LINES)
    meta, _ = m.state()
    other = TextModality()
    other.tokenizer = b
    with pytest.raises(MismatchError):
        other.load_state(meta)
    same = TextModality()
    same.load_state(meta)
    assert same.tokenizer.fingerprint == m.tokenizer.fingerprint
    meta["fingerprint"] = "0" * 16                          # edited by hand
    with pytest.raises(MismatchError):
        TextModality().load_state(meta)


def test_load_errors_and_hf_folder(tmp_path):
    with pytest.raises(CheckpointError):
        TextTokenizer.load(tmp_path / "missing.json")
    with pytest.raises(CheckpointError):
        TextTokenizer.load(tmp_path)                       # empty folder
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "eagle"]))
    tok = TextTokenizer.load(tmp_path)                     # a BERT-style folder with vocab.txt only
    assert tok.decode(tok.encode("The Eagle")) == "the eagle"
    assert tok.bos_id == 2 and tok.eos_id == 3
    with pytest.raises(ConfigError):
        TextTokenizer.train(LINES, kind="sentencepiece")
