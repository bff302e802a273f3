"""Write the corpus of bad inputs the reliability tests feed to the readers (default: tests/data/bad/).

    python scripts/make_bad_inputs.py [OUT_DIR]

Each file's expected outcome lives in `EXPECTED` (kind/name -> "error", "skipped", "altered" or "ok"); the tests read it.
Files are generated, not committed: the 30-minute recording alone is 29 MB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 8000


def _tone(seconds: float, sr: int = SR, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * 440 * t) * np.hanning(len(t))
    return np.repeat(x[:, None], channels, 1).astype(np.float32) if channels > 1 else x.astype(np.float32)


def audio(out: Path) -> None:
    d = out / "audio"
    d.mkdir(parents=True, exist_ok=True)
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "good.wav", _tone(1.0), SR, subtype="PCM_16")
    good = (d / "good.wav").read_bytes()
    (d / "header_only.wav").write_bytes(good[:44])
    (d / "truncated.wav").write_bytes(good[: len(good) // 3][:44] + b"\x01")  # header claims more data
    (d / "wrong_extension.wav").write_bytes(b"fLaC" + b"\0" * 100)
    (d / "not_audio.wav").write_bytes(b"this is a text file, not audio\n" * 10)
    nan = _tone(1.0)
    nan[100:110] = np.nan
    sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
    inf = _tone(1.0)
    inf[5] = np.inf
    sf.write(d / "inf.wav", inf, SR, subtype="FLOAT")
    sf.write(d / "pcm24.wav", _tone(1.0), SR, subtype="PCM_24")
    sf.write(d / "rate96k.wav", _tone(1.0, 96000), 96000, subtype="PCM_16")
    sf.write(d / "six_channels.wav", _tone(1.0, channels=6), SR, subtype="PCM_16")
    sf.write(d / "thirty_minutes.wav", np.tile(_tone(1.0), 1800), SR, subtype="PCM_16")
    sf.write(d / "silent.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")
    sf.write(d / "clipped.wav", np.clip(_tone(1.0, amp=3.0), -1, 1), SR, subtype="PCM_16")


def vectors(out: Path) -> None:
    d = out / "vectors"
    d.mkdir(parents=True, exist_ok=True)
    (d / "wrong_columns.csv").write_text("1,2,3\n4,5\n6,7,8\n")
    (d / "strings.csv").write_text("1,2\nthree,4\n5,6\n")
    (d / "nan.csv").write_text("1,2\nnan,4\n5,6\n")
    (d / "inf.csv").write_text("1,2\ninf,4\n5,-inf\n7,8\n")
    (d / "all_bad.csv").write_text("a,b\nx,y\n")
    np.save(d / "object.npy", np.array([["a", "b"]]))


def text(out: Path) -> None:
    d = out / "text"
    d.mkdir(parents=True, exist_ok=True)
    (d / "empty.txt").write_bytes(b"")
    (d / "blank_lines.txt").write_bytes(b"\n\n   \n\t\n")
    (d / "nul_bytes.txt").write_bytes(b"the food\x00 is good\nnice place\n")
    (d / "invalid_utf8.txt").write_bytes(b"a good line\n\xff\xfe broken bytes\nanother line\n")
    (d / "one_megabyte_line.txt").write_text("word " * 200_000 + "\nshort line\n", encoding="utf-8")
    (d / "international.txt").write_text("\u0645\u0637\u0639\u0645 \u062c\u064a\u062f\ncafe\u0301 au lait\n"
                                         "the food \U0001F355 is great \U0001F600\n", encoding="utf-8")


def configs(out: Path) -> None:
    d = out / "configs"
    d.mkdir(parents=True, exist_ok=True)
    (d / "unknown_key.yaml").write_text("modality: vector\ntrain:\n  max_step: 10\n")
    (d / "wrong_type.yaml").write_text("modality: vector\ntrain:\n  lr: fast\n")
    (d / "negative_size.yaml").write_text("modality: vector\ntrain:\n  batch_size: -8\n")
    (d / "missing_data.yaml").write_text("modality: vector\ntrain:\n  max_steps: 5\n")
    (d / "not_a_mapping.yaml").write_text("- just\n- a list\n")
    (d / "bad_yaml.yaml").write_text("train: {max_steps: [\n")


# kind/name -> expected outcome when read (audio: by AudioModality.read of the folder; vectors: VectorModality.read;
# text: TextModality.read, "altered" = every line kept, the replaced bytes or the cut line counted in `report()`;
# configs: `multidiff train` exits 2 with a one-line message)
EXPECTED = {
    **{f"audio/{n}": "skipped" for n in ["empty.wav", "header_only.wav", "truncated.wav", "wrong_extension.wav",
                                         "not_audio.wav", "nan.wav", "inf.wav", "silent.wav"]},
    **{f"audio/{n}": "ok" for n in ["good.wav", "pcm24.wav", "rate96k.wav", "six_channels.wav",
                                    "thirty_minutes.wav", "clipped.wav"]},
    "vectors/wrong_columns.csv": "skipped", "vectors/strings.csv": "skipped", "vectors/nan.csv": "skipped",
    "vectors/inf.csv": "skipped", "vectors/all_bad.csv": "error", "vectors/object.npy": "error",
    "text/empty.txt": "error", "text/blank_lines.txt": "error", "text/nul_bytes.txt": "ok",
    "text/invalid_utf8.txt": "altered", "text/one_megabyte_line.txt": "altered", "text/international.txt": "ok",
    **{f"configs/{n}": "error" for n in ["unknown_key.yaml", "wrong_type.yaml", "negative_size.yaml",
                                         "missing_data.yaml", "not_a_mapping.yaml", "bad_yaml.yaml"]},
}


def main(out: str = "tests/data/bad") -> Path:
    root = Path(out)
    for make in (audio, vectors, text, configs):
        make(root)
    return root


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
