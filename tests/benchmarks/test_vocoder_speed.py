"""benchmarks/vocoder_speed.py counts convolution work right (the GFLOP/s column rests on it)."""

from __future__ import annotations


import torch

from script_loader import load_script

V = load_script("benchmarks/vocoder_speed.py")


def test_conv_gmacs_counts_conv_and_transposed_conv():
    net = torch.nn.Sequential(torch.nn.Conv1d(4, 6, 3, padding=1), torch.nn.ConvTranspose1d(6, 2, 4, 2, padding=1))
    # Conv1d: 10 outputs x 4 in x 6 out x 3 taps; ConvTranspose1d: 10 inputs x 6 in x 2 out x 4 taps
    assert V.conv_gmacs(net, torch.randn(1, 4, 10)) * 1e9 == 10 * 4 * 6 * 3 + 10 * 6 * 2 * 4


def test_v3_8k_work_matches_the_closed_form():
    from multidiff.modalities.audio.vocoders import HiFiGANVocoder

    cfg, preset, _ = V.GENERATORS["v3_8k"]
    voc = HiFiGANVocoder(cfg, preset).remove_weight_norm()
    frames = 125  # one second at hop 64, 8 kHz (speech-8k: 64 mel bands)
    ups = 256 * 128 * 16 * frames + 128 * 64 * 8 * 1000 + 64 * 32 * 4 * 4000
    # ResBlock2 x 3 kernels (3, 5, 7), two convs each: 2 * 15 * ch^2 per sample at 1, 4 and 8 kHz
    resblocks = 30 * (128 ** 2 * 1000 + 64 ** 2 * 4000 + 32 ** 2 * 8000)
    pre_post = 64 * 256 * 7 * frames + 32 * 1 * 7 * 8000
    got = V.conv_gmacs(voc.generator, torch.randn(1, 64, frames)) * 1e9
    assert got == ups + resblocks + pre_post
