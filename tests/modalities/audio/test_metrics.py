"""Frechet distance, spectral distances, judge, pictures, real-time factor."""

import math

import pytest
import torch

from multidiff.errors import MismatchError
from multidiff.modalities.audio.mel import get_preset
from multidiff.modalities.audio.metrics import (JudgeCNN, frechet_distance, frechet_distance_from_stats,
                                                log_spectral_distance, mel_l1, real_time_factor,
                                                spectrogram_grid, train_judge)


def test_fd_of_identical_sets_is_zero():
    a = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    assert abs(frechet_distance(a, a)) < 1e-6


def test_fd_of_gaussians_equals_analytic_value():
    g = torch.Generator().manual_seed(1)
    d = 8
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.full((d,), 0.5, dtype=torch.float64)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    c1 = A @ A.T / d + torch.eye(d, dtype=torch.float64)
    c2 = 2.0 * c1  # commuting covariances: tr sqrt(C1 C2) = sqrt(2) tr C1
    expected = float((mu1 - mu2).pow(2).sum() + (3 - 2 * math.sqrt(2)) * torch.trace(c1))
    assert abs(frechet_distance_from_stats(mu1, c1, mu2, c2) - expected) < 1e-9
    # shifted standard Gaussians: FD = |shift|^2, up to sampling error
    x = torch.randn(20000, 4, generator=g, dtype=torch.float64)
    y = torch.randn(20000, 4, generator=g, dtype=torch.float64) + torch.tensor([1.0, 0.0, 2.0, 0.0], dtype=torch.float64)
    assert abs(frechet_distance(x, y) - 5.0) < 0.05


def test_spectral_distances():
    p = get_preset("speech-8k")
    x = 0.3 * torch.randn(4096, generator=torch.Generator().manual_seed(0))  # every bin above the floor
    assert log_spectral_distance(x, x, p) == 0 and mel_l1(x, x, p) == 0
    assert log_spectral_distance(x, 0.5 * x, p) == pytest.approx(20 * math.log10(2), rel=1e-3)
    assert mel_l1(x, x * 0.5, p) == pytest.approx(math.log(2), rel=1e-3)


def test_judge_learns_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(0)
    n, F_, T = 64, 16, 24
    labels = torch.arange(n) % 2
    mels = torch.randn(n, F_, T, generator=g) - 5
    mels[labels == 1, :8] += 3.0  # class 1 is louder in the low bands
    p = get_preset("speech-8k").replace(n_mels=F_)
    judge = train_judge(mels, labels, 2, label_names=["quiet", "loud"], preset=p, width=4, epochs=6, batch_size=16)
    assert judge.accuracy(mels, labels) > 0.9
    assert judge.embeddings(mels).shape == (n, 32)
    judge.save(tmp_path / "judge")
    again = JudgeCNN.load(tmp_path / "judge", preset=p)
    assert torch.allclose(again.embeddings(mels), judge.embeddings(mels), atol=1e-6)
    assert set(again.per_class_accuracy(mels, labels)) == {"quiet", "loud"}
    with pytest.raises(MismatchError):
        JudgeCNN.load(tmp_path / "judge", preset="speech-8k")


def test_spectrogram_grid_and_rtf(tmp_path):
    mels = [torch.randn(64, 125) for _ in range(3)]
    path = spectrogram_grid(mels, tmp_path / "grid.png", titles=["a", "b", "c"], ncols=2, preset="speech-8k")
    assert path.read_bytes()[:4] == b"\x89PNG"
    rtf = real_time_factor(lambda: sum(range(1000)), audio_seconds=1.0, repeats=2)
    assert 0 < rtf < 1
