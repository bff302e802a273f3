"""The public E2E NLG dataset, fetched only when a user asks: download with a SHA-256 check, CSV -> lines.

The release (Novikova, Dušek and Rieser 2017, CC BY-SA 4.0; github.com/tuetschek/e2e-dataset) is a zip of
CSV files with columns ``mr,ref`` (``name[The Eagle], eatType[coffee shop], ...``). `convert_csv` writes
them in the line format the text recipes read, the one Diffusion-LM distributes
(``name : The Eagle | Type : coffee shop | ... ||The Eagle is a coffee shop .``, punctuation split off).

    multidiff fetch e2e --out data/e2e [--sha256 HEX]     # e2e_nlg_{train,valid,test}.txt
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import urllib.request
import zipfile
from pathlib import Path

from ...errors import DataError

E2E_URL = "https://github.com/tuetschek/e2e-dataset/archive/v1.0.0.zip"
SPLITS = {"train": "trainset.csv", "valid": "devset.csv", "test": "testset_w_refs.csv"}
SLOT_NAMES = {"eatType": "Type", "priceRange": "price", "familyFriendly": "family friendly",
              "customerRating": "customer rating"}   # release name -> Diffusion-LM's (others unchanged)


def tokenize(text: str) -> str:
    """Split off punctuation, currency signs and hyphens, and clitics ("isn't" -> "isn 't") with spaces."""
    text = re.sub(r"([.,!?;:£$€()\"\-])", r" \1 ", text)
    text = re.sub(r"(\w)'(\w)", r"\1 '\2", text)
    return " ".join(text.split())


def convert_mr(mr: str) -> str:
    """``name[The Eagle], eatType[coffee shop]`` -> ``name : The Eagle | Type : coffee shop`` (slot order kept)."""
    slots = re.findall(r"\s*([^\[\],]+?)\s*\[([^\]]*)\]", mr)
    if not slots:
        raise DataError(f"not an E2E meaning representation (slot[value], ...): {mr[:80]!r}")
    return " | ".join(f"{SLOT_NAMES.get(k, k)} : {tokenize(v)}" for k, v in slots)


def convert_csv(csv_path: str | Path, out_path: str | Path) -> int:
    """Write one ``MR||sentence`` line per row of an E2E CSV (header ``mr,ref``); returns the line count."""
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"mr", "ref"} <= set(reader.fieldnames):
            raise DataError(f"{csv_path}: expected an E2E CSV with columns mr,ref; found {reader.fieldnames}")
        lines = [f"{convert_mr(row['mr'])}||{tokenize(row['ref'])}\n" for row in reader if row["ref"].strip()]
    Path(out_path).write_text("".join(lines), encoding="utf-8")
    return len(lines)


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | Path, sha256: str | None = None) -> str:
    """Download `url` to `dest` (through `dest.part`, renamed only when complete) and return its SHA-256.

    With `sha256`, a file whose digest differs is deleted and DataError names both digests. A `dest` that
    already exists with the expected digest is reused without a download."""
    dest = Path(dest)
    if dest.exists() and sha256 and sha256_of(dest) == sha256.lower():
        return sha256.lower()
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
            while block := r.read(1 << 20):
                f.write(block)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {e}; check the network, or download it yourself and "
                        f"convert the CSVs with multidiff.modalities.text.e2e.convert_csv") from e
    digest = sha256_of(part)
    if sha256 and digest != sha256.lower():
        part.unlink()
        raise DataError(f"{url}: SHA-256 {digest} does not match the expected {sha256.lower()}; the file was "
                        "deleted. Check the URL, or the checksum you gave")
    os.replace(part, dest)
    return digest


def fetch_e2e(out_dir: str | Path, url: str = E2E_URL, sha256: str | None = None) -> dict:
    """Download the E2E release into `out_dir` and write ``e2e_nlg_{train,valid,test}.txt`` there.

    Returns {"url", "sha256" (of the zip: pin it with `sha256=` for later fetches), "files": {split: path},
    "lines": {split: count}}."""
    out = Path(out_dir)
    archive = out / "e2e-dataset.zip"
    digest = download(url, archive, sha256)
    try:
        with zipfile.ZipFile(archive) as z:
            members = {Path(n).name: n for n in z.namelist()}
            missing = [f for f in SPLITS.values() if f not in members]
            if missing:
                raise DataError(f"{archive} has no {', '.join(missing)}; is it the E2E release ({E2E_URL})?")
            files, lines = {}, {}
            for split, name in SPLITS.items():
                csv_path = out / name
                csv_path.write_bytes(z.read(members[name]))
                files[split] = out / f"e2e_nlg_{split}.txt"
                lines[split] = convert_csv(csv_path, files[split])
    except zipfile.BadZipFile as e:
        raise DataError(f"{archive} is not a zip file ({e}); delete it and fetch again") from e
    return {"url": url, "sha256": digest, "files": {k: str(v) for k, v in files.items()}, "lines": lines}
