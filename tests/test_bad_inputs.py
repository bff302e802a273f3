"""The bad-input corpus (scripts/make_bad_inputs.py): every file gets its expected outcome, never a crash."""

from pathlib import Path

import pytest

from multidiff.cli import main as cli
from multidiff.errors import DataError
from multidiff.modalities import get
from script_loader import load_script

bad = load_script("scripts/make_bad_inputs.py")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return bad.main(str(tmp_path_factory.mktemp("bad")))


def test_audio_folder_trains_on_good_files_and_lists_bad_ones(corpus):
    items, skipped = get("audio")().read(corpus / "audio")
    read_ok = {Path(it["path"]).name for it in items}
    reasons = {Path(p).name: r for p, r in skipped}
    for key, outcome in bad.EXPECTED.items():
        kind, name = key.split("/")
        if kind == "audio":
            assert (name in read_ok) == (outcome == "ok") and (name in reasons) == (outcome == "skipped"), name
    assert "NaN or Inf" in reasons["nan.wav"] and "silent" in reasons["silent.wav"]
    assert all(r for r in reasons.values())  # every skip has a reason
    assert all(it["wave"].ndim == 1 for it in items)  # six channels mixed down, 96 kHz resampled


def test_audio_folder_with_nothing_usable_fails_clearly(corpus, tmp_path):
    for name in ("empty.wav", "silent.wav", "not_audio.wav"):
        (tmp_path / name).write_bytes((corpus / "audio" / name).read_bytes())
    with pytest.raises(DataError, match="no usable audio among 3 files"):
        get("audio")().read(tmp_path)


@pytest.mark.parametrize("name", [k.split("/")[1] for k in bad.EXPECTED if k.startswith("vectors/")])
def test_vector_files(corpus, name):
    outcome = bad.EXPECTED[f"vectors/{name}"]
    if outcome == "error":
        with pytest.raises(DataError):
            get("vector")().read(corpus / "vectors" / name)
    else:
        items, skipped = get("vector")().read(corpus / "vectors" / name)
        assert items and skipped and all(reason for _, reason in skipped)


@pytest.mark.parametrize("name", [k.split("/")[1] for k in bad.EXPECTED if k.startswith("text/")])
def test_text_files(corpus, name):
    outcome, path = bad.EXPECTED[f"text/{name}"], corpus / "text" / name
    m = get("text")()
    if outcome == "error":
        with pytest.raises(DataError, match="empty"):
            m.read(path)
        return
    items, reported = m.read(path)
    assert items and not reported  # text skips only empty lines: the altered lines are kept, and counted
    rep = m.report()
    assert (rep["bad_utf8_replaced"] + rep["truncated_chars"] > 0) == (outcome == "altered"), rep
    m.prepare(items)  # the tokenizer copes with NUL, right-to-left, combining characters and emoji
    assert m.encode(items).x0.shape[0] == len(items)


@pytest.mark.parametrize("name", [k.split("/")[1] for k in bad.EXPECTED if k.startswith("configs/")])
def test_bad_configs_exit_2_with_one_line(corpus, name, tmp_path, capsys):
    rc = cli(["train", str(corpus / "configs" / name), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("multidiff: error: ") and err.count("\n") == 1, err
