"""Vocoders: Griffin-Lim quality, HiFi-GAN official checkpoint layout, weights-only loading, preset refusal."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from multidiff.errors import CheckpointError, MismatchError
from multidiff.modalities.audio.metrics import log_spectral_distance, mel_l1
from multidiff.modalities.audio.mel import get_preset
from multidiff.modalities.audio.vocoders import (HIFIGAN_V1, HIFIGAN_V2, HIFIGAN_V3, GriffinLimVocoder,
                                                 HiFiGANGenerator, HiFiGANVocoder)

HIFI_MEL = {"num_mels": 80, "n_fft": 1024, "hop_size": 256, "win_size": 1024, "sampling_rate": 22050,
            "fmin": 0, "fmax": 8000, "fmax_for_loss": None, "segment_size": 8192}
SMALL_V1 = {"resblock": "1", "upsample_rates": [8, 8, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4],
            "upsample_initial_channel": 32, "resblock_kernel_sizes": [3, 7, 11],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], **HIFI_MEL}
SMALL_V3 = {"resblock": "2", "upsample_rates": [8, 8, 4], "upsample_kernel_sizes": [16, 16, 8],
            "upsample_initial_channel": 32, "resblock_kernel_sizes": [3, 5, 7],
            "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]], **HIFI_MEL}


def official_layout(cfg, gen):
    """Random state dict with the official keys and shapes, derived from HiFi-GAN's models.py
    (independently of our module tree): weight_g [out|in, 1, 1], weight_v, bias."""
    sd = {}

    def conv(name, cout, cin, k, transposed=False):
        v = torch.randn(cin, cout, k, generator=gen) if transposed else torch.randn(cout, cin, k, generator=gen)
        sd[f"{name}.weight_g"] = torch.rand(v.shape[0], 1, 1, generator=gen) + 0.5
        sd[f"{name}.weight_v"] = v
        sd[f"{name}.bias"] = 0.1 * torch.randn(cout, generator=gen)

    C = cfg["upsample_initial_channel"]
    conv("conv_pre", C, cfg["num_mels"], 7)
    for i, k in enumerate(cfg["upsample_kernel_sizes"]):
        conv(f"ups.{i}", C // 2 ** (i + 1), C // 2 ** i, k, transposed=True)
    n = 0
    for i in range(len(cfg["upsample_rates"])):
        ch = C // 2 ** (i + 1)
        for k, ds in zip(cfg["resblock_kernel_sizes"], cfg["resblock_dilation_sizes"]):
            for m in range(len(ds)):
                if cfg["resblock"] == "1":
                    conv(f"resblocks.{n}.convs1.{m}", ch, ch, k)
                    conv(f"resblocks.{n}.convs2.{m}", ch, ch, k)
                else:
                    conv(f"resblocks.{n}.convs.{m}", ch, ch, k)
            n += 1
    conv("conv_post", 1, C // 2 ** len(cfg["upsample_rates"]), 7)
    return sd


def reference_forward(sd, cfg, x):
    """HiFi-GAN's Generator.forward written with functional ops on w = g * v / ||v|| (norm over all dims but 0)."""
    def w(name):
        v, g = sd[f"{name}.weight_v"], sd[f"{name}.weight_g"]
        return g * v / v.flatten(1).norm(dim=1).reshape(-1, 1, 1)

    def conv(name, x, k, d=1):
        return F.conv1d(x, w(name), sd[f"{name}.bias"], padding=(k * d - d) // 2, dilation=d)

    x = conv("conv_pre", x, 7)
    K = len(cfg["resblock_kernel_sizes"])
    for i, (u, k) in enumerate(zip(cfg["upsample_rates"], cfg["upsample_kernel_sizes"])):
        x = F.leaky_relu(x, 0.1)
        x = F.conv_transpose1d(x, w(f"ups.{i}"), sd[f"ups.{i}.bias"], stride=u, padding=(k - u) // 2)
        xs = 0
        for j, (kr, ds) in enumerate(zip(cfg["resblock_kernel_sizes"], cfg["resblock_dilation_sizes"])):
            n, h = i * K + j, x
            for m, d in enumerate(ds):
                if cfg["resblock"] == "1":
                    t = conv(f"resblocks.{n}.convs1.{m}", F.leaky_relu(h, 0.1), kr, d)
                    h = conv(f"resblocks.{n}.convs2.{m}", F.leaky_relu(t, 0.1), kr, 1) + h
                else:
                    h = conv(f"resblocks.{n}.convs.{m}", F.leaky_relu(h, 0.1), kr, d) + h
            xs = xs + h
        x = xs / K
    x = F.leaky_relu(x)  # default slope 0.01
    return torch.tanh(conv("conv_post", x, 7))


@pytest.mark.parametrize("cfg", [SMALL_V1, SMALL_V3], ids=["v1-layout", "v3-layout"])
def test_official_checkpoint_loads_and_matches_reference(tmp_path, cfg):
    gen = torch.Generator().manual_seed(0)
    sd = official_layout(cfg, gen)
    torch.save({"generator": sd}, tmp_path / "g_00000001")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    mel = torch.randn(2, 80, 6, generator=gen) - 4
    ref = reference_forward(sd, cfg, mel).squeeze(1)
    for fold in (False, True):
        voc = HiFiGANVocoder.from_checkpoint(tmp_path / "g_00000001", fold_weight_norm=fold)  # config beside it
        assert voc.preset.name == "hifigan-22k"
        out = voc.decode(mel, preset="hifigan-22k")
        assert out.shape == (2, 256 * 6)
        assert torch.allclose(out, ref, atol=1e-5), float((out - ref).abs().max())
    # in bfloat16 (the fast CPU path of benchmarks/vocoder_speed.py): the mel is cast to the weights' dtype and
    # the waveform comes back as float32, within bfloat16 rounding of the reference
    out = HiFiGANVocoder.from_checkpoint(tmp_path / "g_00000001").to(torch.bfloat16).decode(mel)
    rel = float((out - ref).norm() / ref.norm())
    assert out.dtype == torch.float32 and 1e-4 < rel < 0.03, rel
    # and the official layout is what we write back
    voc = HiFiGANVocoder.from_checkpoint(tmp_path / "g_00000001", tmp_path / "config.json", fold_weight_norm=False)
    assert set(voc.generator.official_state_dict()) == set(sd)


@pytest.mark.parametrize("config,params,keys", [(HIFIGAN_V1, 13_936_130, 234), (HIFIGAN_V2, 928_514, 234),
                                                (HIFIGAN_V3, 1_464_322, 69)])
def test_paper_configs_sizes(config, params, keys):
    g = HiFiGANGenerator(config)
    assert sum(p.numel() for p in g.parameters()) == params
    assert len(g.official_state_dict()) == keys


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    torch.save({"generator": Evil()}, tmp_path / "g_evil")
    (tmp_path / "config.json").write_text(json.dumps(SMALL_V3))
    with pytest.raises(CheckpointError, match="refused"):
        HiFiGANVocoder.from_checkpoint(tmp_path / "g_evil")
    assert not marker.exists()


def test_wrong_layout_is_a_clear_error(tmp_path):
    torch.save({"generator": {"conv_pre.weight": torch.zeros(1)}}, tmp_path / "g")
    with pytest.raises(CheckpointError, match="missing keys"):
        HiFiGANVocoder.from_checkpoint(tmp_path / "g", SMALL_V3)
    torch.save({"model": {}}, tmp_path / "g2")
    with pytest.raises(CheckpointError, match="'generator'"):
        HiFiGANVocoder.from_checkpoint(tmp_path / "g2", SMALL_V3)


def test_vocoders_refuse_mel_from_another_preset():
    voc = HiFiGANVocoder(SMALL_V3, "hifigan-22k")
    with pytest.raises(MismatchError, match=r"speech-8k.*hifigan-22k"):
        voc.decode(torch.zeros(80, 4), preset="speech-8k")
    with pytest.raises(MismatchError, match="expects a log-mel"):
        voc.decode(torch.zeros(64, 4))
    gl = GriffinLimVocoder("speech-8k")
    with pytest.raises(MismatchError, match=r"hifigan-22k.*speech-8k"):
        gl.decode(torch.zeros(64, 4), preset="hifigan-22k")
    assert gl.fingerprint == get_preset("speech-8k").fingerprint()


def test_griffin_lim_reconstructs_a_sine():
    p = get_preset("speech-8k")
    t = torch.arange(4096) / 8000
    x = 0.5 * torch.sin(2 * math.pi * 440 * t) + 0.2 * torch.sin(2 * math.pi * 1300 * t)
    y = GriffinLimVocoder(p, n_iter=32).decode(p.log_mel(x), preset=p)
    assert y.shape == x.shape
    noise = torch.randn(4096, generator=torch.Generator().manual_seed(0)) * x.pow(2).mean().sqrt()
    lsd_gl, lsd_noise = log_spectral_distance(x, y, p), log_spectral_distance(x, noise, p)
    assert lsd_gl < 0.25 * lsd_noise, (lsd_gl, lsd_noise)   # measured 10.7 vs 75 dB
    assert mel_l1(x, y, p) < 0.15 * mel_l1(x, noise, p)     # measured 0.59 vs 7.1 nats (tone skirts)
    m = p.log_mel(x)
    peak = m == m.max(0, keepdim=True).values                # the tones themselves are exact to ~0.1 nat
    assert (m - p.log_mel(y))[peak].abs().mean() < 0.15
    # deterministic for a seed
    assert torch.equal(y, GriffinLimVocoder(p, n_iter=32).decode(p.log_mel(x)))
