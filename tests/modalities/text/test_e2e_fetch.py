"""Fetching the public E2E release: CSV conversion to the recipes' line format, checksum, bad input.

No network: the "download" is a file:// URL of a zip laid out like the release."""

import csv
import hashlib
import zipfile

import pytest

from multidiff.cli import main as cli
from multidiff.errors import DataError
from multidiff.modalities.text.corpus import parse_examples
from multidiff.modalities.text.e2e import convert_csv, convert_mr, fetch_e2e, tokenize
from multidiff.modalities.text.metrics import slot_errors

ROWS = [  # written in the release's style for this test (not copied from the data set)
    ("name[The Punter], eatType[coffee shop], priceRange[£20-25], customer rating[3 out of 5], "
     "familyFriendly[no], near[Café Sicilia]",
     "The Punter isn't kid-friendly: it's a coffee shop near Café Sicilia, £20-25, rated 3 out of 5."),
    ("name[Aromi], eatType[pub], area[riverside]", "Aromi is a pub by the riverside."),
]


def _zip(tmp_path):
    src = tmp_path / "release"
    src.mkdir()
    for name in ("trainset.csv", "devset.csv", "testset_w_refs.csv"):
        with open(src / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["mr", "ref"])
            w.writerows(ROWS if name != "devset.csv" else ROWS[:1])
    archive = tmp_path / "v1.0.0.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in src.iterdir():
            z.write(p, f"e2e-dataset-1.0.0/{p.name}")
    return archive


def test_conversion_gives_diffusion_lm_lines_that_the_recipes_parse(tmp_path):
    assert convert_mr(ROWS[0][0]) == ("name : The Punter | Type : coffee shop | price : £ 20 - 25 | "
                                      "customer rating : 3 out of 5 | family friendly : no | near : Café Sicilia")
    assert tokenize(ROWS[0][1]) == ("The Punter isn 't kid - friendly : it 's a coffee shop near Café Sicilia , "
                                    "£ 20 - 25 , rated 3 out of 5 .")
    archive = _zip(tmp_path)
    with zipfile.ZipFile(archive) as z:
        (tmp_path / "train.csv").write_bytes(z.read("e2e-dataset-1.0.0/trainset.csv"))
    assert convert_csv(tmp_path / "train.csv", tmp_path / "train.txt") == 2
    ex = parse_examples((tmp_path / "train.txt").read_text(encoding="utf-8").splitlines())
    assert ex[1].mr == {"name": "Aromi", "Type": "pub", "area": "riverside"}
    assert ex[1].text == "Aromi is a pub by the riverside ."
    assert slot_errors(ex[0].mr, ex[0].text)[0] == 0          # every slot still found by the SER checker


def test_fetch_checks_the_digest_and_keeps_nothing_partial(tmp_path, capsys):
    archive = _zip(tmp_path)
    url, digest = archive.as_uri(), hashlib.sha256(archive.read_bytes()).hexdigest()
    out = tmp_path / "e2e"
    r = fetch_e2e(out, url=url)
    assert r["sha256"] == digest and r["lines"] == {"train": 2, "valid": 1, "test": 2}
    assert (out / "e2e_nlg_valid.txt").read_text(encoding="utf-8").startswith("name : The Punter | Type :")
    bad = "0" * 64
    with pytest.raises(DataError, match=f"{digest} does not match the expected {bad}"):
        fetch_e2e(tmp_path / "other", url=url, sha256=bad)
    assert not any((tmp_path / "other").iterdir())             # the mismatching download was deleted
    archive.unlink()                                           # pinned digest of the file already there: no download
    assert fetch_e2e(out, url=url, sha256=digest)["lines"]["train"] == 2
    assert cli(["fetch", "e2e", "--out", str(tmp_path / "nowhere"), "--url", url]) == 2
    assert "could not download" in capsys.readouterr().err


def test_bad_release_files_are_refused(tmp_path):
    (tmp_path / "x.csv").write_text("meaning,text\na,b\n")
    with pytest.raises(DataError, match="columns mr,ref"):
        convert_csv(tmp_path / "x.csv", tmp_path / "x.txt")
    with pytest.raises(DataError, match="not an E2E meaning representation"):
        convert_mr("just words")
    (tmp_path / "notzip.zip").write_text("hello")
    with pytest.raises(DataError, match="not a zip file"):
        fetch_e2e(tmp_path / "o", url=(tmp_path / "notzip.zip").as_uri())
