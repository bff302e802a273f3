"""Waveform I/O round trips, mixdown, resampling, bad files listed with reasons."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from multidiff.errors import DataError
from multidiff.modalities.audio import AudioModality
from multidiff.modalities.audio import io as aio


def sine(freq, sr, seconds=0.5, amp=0.5):
    t = torch.arange(int(sr * seconds)) / sr
    return amp * torch.sin(2 * math.pi * freq * t)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_pcm16_round_trip(tmp_path, suffix):
    x = sine(440, 8000)
    path = aio.write_audio(tmp_path / f"a{suffix}", x, 8000)
    assert sf.info(str(path)).subtype == "PCM_16"
    y, info = aio.load_audio(path)
    assert info.sample_rate == 8000 and not info.resampled and y.dtype == torch.float32
    assert (x - y).abs().max() <= 1.0 / 32768 + 1e-6
    assert list(tmp_path.iterdir()) == [path]  # no temp files left


def test_stereo_mixdown(tmp_path):
    left, right = sine(300, 8000), sine(700, 8000, amp=0.2)
    sf.write(str(tmp_path / "s.wav"), torch.stack([left, right]).T.numpy(), 8000, subtype="FLOAT")
    y, info = aio.load_audio(tmp_path / "s.wav")
    assert info.channels == 2 and info.mixed_down and y.shape == (4000,)
    assert torch.allclose(y, (left + right) / 2, atol=1e-6)
    both, _ = aio.load_audio(tmp_path / "s.wav", mono=False)
    assert both.shape == (2, 4000)


def test_resample_16k_to_8k_keeps_frequency(tmp_path):
    aio.write_audio(tmp_path / "hi.wav", sine(1000, 16000, seconds=1.0), 16000)
    y, info = aio.load_audio(tmp_path / "hi.wav", sample_rate=8000)
    assert info.resampled and info.sample_rate == 16000 and y.shape == (8000,)
    spec = torch.fft.rfft(y * torch.hann_window(len(y)))
    peak_hz = int(spec.abs().argmax()) * 8000 / len(y)
    assert abs(peak_hz - 1000) <= 2
    assert abs(float(y.abs().max()) - 0.5) < 0.02


def test_level_normalisation():
    x = sine(440, 8000, seconds=1.0, amp=0.1)
    assert abs(float(aio.peak_normalize(x, 0.9).abs().max()) - 0.9) < 1e-6
    y = aio.loudness_normalize(x, 8000, -20.0)
    assert abs(aio.loudness(y, 8000) - (-20.0)) < 0.1


def _bad_folder(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "1_x_0.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")            # corrupt
    sf.write(str(d / "2_x_0.wav"), np.zeros((0,), np.float32), 8000)                  # zero length
    bad = sine(440, 8000).numpy().copy()
    bad[100] = np.nan
    sf.write(str(d / "3_x_0.wav"), bad, 8000, subtype="FLOAT")                       # NaN
    sf.write(str(d / "4_x_0.wav"), np.zeros(4000, np.float32), 8000)                  # silent
    inf = sine(440, 8000).numpy().copy()
    inf[7] = np.inf
    sf.write(str(d / "5_x_0.wav"), inf, 8000, subtype="FLOAT")                       # Inf
    (d / "notes.txt").write_text("not audio, ignored")
    return d


def test_bad_files_are_listed_and_good_ones_kept(tmp_path):
    d = _bad_folder(tmp_path)
    aio.write_audio(d / "7_y_0.wav", sine(300, 16000), 16000)                         # resampled
    sf.write(str(d / "8_y_0.flac"), torch.stack([sine(300, 8000)] * 2).T.numpy(), 8000)   # stereo
    sf.write(str(d / "9_y_0.wav"), np.clip(sine(300, 8000, amp=3).numpy(), -1, 1), 8000)  # clipped
    m = AudioModality()
    items, skipped = m.read(d)
    assert sorted(it["label"] for it in items) == ["7", "8", "9"]
    reasons = {p.split("/")[-1]: r for p, r in skipped}
    assert set(reasons) == {"1_x_0.wav", "2_x_0.wav", "3_x_0.wav", "4_x_0.wav", "5_x_0.wav"}
    assert "cannot read" in reasons["1_x_0.wav"]
    assert "zero-length" in reasons["2_x_0.wav"]
    assert "NaN or Inf" in reasons["3_x_0.wav"] and "NaN or Inf" in reasons["5_x_0.wav"]
    assert "silent" in reasons["4_x_0.wav"]
    r = m.read_report
    assert (r["resampled"], r["mixed_down"], r["clipped"], r["usable"]) == (1, 1, 1, 3)
    assert all(it["wave"].dtype == torch.float32 and it["wave"].dim() == 1 for it in items)


def test_nothing_usable_raises_clear_error(tmp_path):
    d = _bad_folder(tmp_path)
    with pytest.raises(DataError, match="no usable audio among 5 files.*zero-length"):
        AudioModality().read(d)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no usable audio"):
        AudioModality().read(empty)


def test_manifest_with_labels(tmp_path):
    aio.write_audio(tmp_path / "a.wav", sine(300, 8000), 8000)
    aio.write_audio(tmp_path / "sub" / "b.flac", sine(500, 8000), 8000)
    (tmp_path / "list.csv").write_text("path,label\na.wav,low\nsub/b.flac,high\nmissing.wav,low\n")
    items, skipped = AudioModality().read(tmp_path / "list.csv")
    assert [it["label"] for it in items] == ["low", "high"]
    assert len(skipped) == 1 and "missing.wav" in skipped[0][0]
