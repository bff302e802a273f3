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


def _gpt2_style(tmp_path):
    """A byte-level BPE tokenizer with GPT-2's one special token, saved as vocab.json + merges.txt and as
    tokenizer.json (the two layouts of a Hugging Face GPT-2 folder)."""
    from tokenizers.implementations import ByteLevelBPETokenizer
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(LINES * 5, vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False)
    (tmp_path / "merges").mkdir()
    bpe.save_model(str(tmp_path / "merges"))
    (tmp_path / "json").mkdir()
    bpe.save(str(tmp_path / "json" / "tokenizer.json"))
    return bpe


def test_gpt2_style_folders_get_the_pad_token_they_lack(tmp_path):
    bpe = _gpt2_style(tmp_path)
    eot = bpe.token_to_id("<|endoftext|>")
    for folder in ("merges", "json"):
        tok = TextTokenizer.load(tmp_path / folder)
        assert tok.vocab_size == bpe.get_vocab_size() + 1 and tok.id_to_token(tok.pad_id) == "[PAD]"
        assert tok.pad_id not in (tok.eos_id, tok.unk_id) and tok.eos_id == tok.bos_id == eot
        assert tok.decode(tok.encode(LINES[0])) == LINES[0]
        assert TextTokenizer.from_str(tok.to_str()).fingerprint == tok.fingerprint   # as saved with a model
    m = TextModality(tokenizer=str(tmp_path / "json"))
    m.prepare(LINES)
    e = m.encode(LINES)
    assert e.x0[~e.mask].unique().tolist() == [m.tokenizer.pad_id]


def test_mostly_unknown_text_warns(tmp_path):
    m = TextModality()
    m.prepare(LINES)
    with pytest.warns(UserWarning, match=r"6 of 8 tokens \(75%\) are unknown"):
        m.encode(["le chat est sur la table", "the eagle"])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.encode(["the eagle is a pub near the sea ."])       # one unknown word in nine: no warning
        m.encode(["le chat"])                                 # warned once per modality, not per batch
    assert m.report()["unk_tokens"] == 9
