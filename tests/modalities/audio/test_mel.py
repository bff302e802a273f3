"""Mel presets: HiFi-GAN's reference function (golden array), filterbanks vs librosa, fingerprints."""

from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from multidiff.errors import ConfigError, MismatchError
from multidiff.modalities.audio.mel import MelPreset, get_preset

GOLDEN = Path(__file__).parent / "golden" / "hifigan22k_logmel.npy"


def hifigan_mel_reference(y, n_fft, num_mels, sampling_rate, hop_size, win_size, fmin, fmax, center=False):
    """HiFi-GAN's meldataset.mel_spectrogram (jik876/hifi-gan@4769534), with the two documented modern
    fixes only: librosa keyword arguments and view_as_real for complex STFT output."""
    mel = librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax)
    mel_basis = torch.from_numpy(mel).float()
    hann_window = torch.hann_window(win_size)
    y = F.pad(y.unsqueeze(1), (int((n_fft - hop_size) / 2), int((n_fft - hop_size) / 2)), mode="reflect").squeeze(1)
    spec = torch.stft(y, n_fft, hop_length=hop_size, win_length=win_size, window=hann_window, center=center,
                      pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
    spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
    spec = torch.matmul(mel_basis, spec)
    return torch.log(torch.clamp(spec, min=1e-5) * 1)


def golden_signal() -> torch.Tensor:
    """8192 samples at 22.05 kHz: a chirp, two harmonics, a decaying pseudo-noise burst, a silent gap."""
    n = np.arange(8192, dtype=np.float64)
    t = n / 22050
    y = 0.3 * np.sin(2 * np.pi * (200 * t + 3000 * t * t)) + 0.2 * np.sin(2 * np.pi * 440 * t)
    y += 0.1 * np.sin(2 * np.pi * 2637 * t) * (t > 0.1)
    y += 0.05 * np.sin(n * n * 0.7071) * np.exp(-t * 8)
    y[5000:5600] = 0.0
    return torch.from_numpy(y.astype(np.float32))


def test_hifigan_22k_matches_reference_golden():
    p = get_preset("hifigan-22k")
    y = golden_signal().unsqueeze(0)
    ref = hifigan_mel_reference(y, 1024, 80, 22050, 256, 1024, 0, 8000)[0].numpy()
    if not GOLDEN.exists():  # generated once, then committed
        GOLDEN.parent.mkdir(exist_ok=True)
        np.save(GOLDEN, ref.astype(np.float32))
    golden = np.load(GOLDEN)
    assert golden.shape == (80, 32)
    assert np.abs(ref - golden).max() < 1e-4, "the reference function drifted (librosa/torch change)"
    ours = p.log_mel(y)[0].numpy()
    assert ours.shape == golden.shape == (80, len(y[0]) // 256)
    assert np.abs(ours - golden).max() < 1e-4


@pytest.mark.parametrize("name", ["hifigan-22k", "speech-8k"])
@pytest.mark.parametrize("scale,norm", [("slaney", "slaney"), ("htk", None), ("htk", "slaney")])
def test_filterbank_matches_librosa(name, scale, norm):
    p = get_preset(name).replace(mel_scale=scale, mel_norm=norm)
    ref = librosa.filters.mel(sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.f_min, fmax=p.f_max,
                              htk=scale == "htk", norm=norm)
    fb = p.filterbank().numpy()
    assert fb.shape == ref.shape == (p.n_mels, p.n_fft // 2 + 1)
    assert np.abs(fb - ref).max() <= 1e-5 * np.abs(ref).max()


def test_frames_and_center_padding():
    p = get_preset("speech-8k")
    assert p.log_mel(torch.randn(8000)).shape == (64, 125) and p.num_frames(8000) == 125
    c = p.replace(padding="center", magnitude="abs")
    assert c.log_mel(torch.randn(2, 8000)).shape == (2, 64, 126) == (2, 64, c.num_frames(8000))
    assert p.num_samples(125) == 8000


def test_fingerprint_identity_and_round_trip():
    p = get_preset("speech-8k")
    assert p.fingerprint() == MelPreset.from_dict(p.to_dict()).fingerprint()
    assert p.replace(name="renamed").fingerprint() == p.fingerprint()  # the name is cosmetic
    q = p.replace(hop_length=80)
    assert q.fingerprint() != p.fingerprint()
    with pytest.raises(MismatchError, match="speech-8k.*hop_length|hop_length"):
        p.check_same(q)
    d = p.to_dict()
    d["n_mels"] = 80
    with pytest.raises(MismatchError, match="fingerprint"):
        MelPreset.from_dict(d)
    custom = get_preset({"base": "speech-8k", "n_mels": 40})
    assert custom.n_mels == 40 and custom.sample_rate == 8000 and custom.name == "speech-8k+custom"


def test_bad_preset_settings():
    with pytest.raises(ConfigError, match="mel_scale"):
        MelPreset(mel_scale="bark")
    with pytest.raises(ConfigError, match="unknown mel preset"):
        get_preset("nope")
