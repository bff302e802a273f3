"""Vocoder speed on one CPU thread: HiFi-GAN generators beside Griffin-Lim, same mel, same process.

Real-time factor = seconds to decode / seconds of audio (median of `--repeats`, after warm-up), weight norm
folded as at inference. Generators (random weights: speed does not depend on training):
  v3_8k     HiFi-GAN V3 widths (256 initial channels, ResBlock2) with upsampling 8 x 4 x 2 = hop 64, `speech-8k`
  small_8k  the recipe's CPU config (64 channels), `speech-8k`
  v3_22k    the official V3 (upsampling 8 x 8 x 4 = hop 256), `hifigan-22k`
  v1_22k    the official V1, `hifigan-22k`
  v3_8k_bf16  v3_8k with bfloat16 weights and activations (`vocoder.to(torch.bfloat16)`; AMX/AVX-512 CPUs)
Griffin-Lim: torchaudio, 32 iterations, on the 8 kHz mel. Target (issue): V3-size at 8 kHz > 100x real time.
Each generator row also gives its convolution work (GMAC per second of audio, counted from the layer shapes)
and the rate achieved (GFLOP/s = 2 x GMAC x real-time multiple), printed beside the core's own ceiling: a
2048 x 2048 matrix product in float32 and bfloat16 on the same thread. Work / ceiling bounds the real-time
multiple any implementation of that generator can reach on this core.

    python benchmarks/vocoder_speed.py [--seconds 1] [--repeats 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from multidiff.modalities.audio.mel import get_preset
from multidiff.modalities.audio.metrics import real_time_factor
from multidiff.modalities.audio.vocoders import GriffinLimVocoder, HiFiGANVocoder

UP_8K = {"upsample_rates": [8, 4, 2], "upsample_kernel_sizes": [16, 8, 4]}
V3_8K = {"resblock": "2", "upsample_initial_channel": 256, "resblock_kernel_sizes": [3, 5, 7],
         "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]], **UP_8K}
GENERATORS = {  # name: (generator config, mel preset, weight dtype)
    "v3_8k": (V3_8K, "speech-8k", torch.float32),
    "small_8k": ({**V3_8K, "upsample_initial_channel": 64}, "speech-8k", torch.float32),
    "v3_8k_bf16": (V3_8K, "speech-8k", torch.bfloat16),
    "v3_22k": ("v3", "hifigan-22k", torch.float32),
    "v1_22k": ("v1", "hifigan-22k", torch.float32),
}


def conv_gmacs(generator: torch.nn.Module, mel: torch.Tensor) -> float:
    """Multiply-accumulates (1e9) of every Conv1d / ConvTranspose1d in one forward pass over `mel`."""
    total = [0]

    def count(m, inp, out):
        cin, cout, k = m.in_channels // m.groups, m.out_channels, m.kernel_size[0]
        n = inp[0].shape[-1] if isinstance(m, torch.nn.ConvTranspose1d) else out.shape[-1]
        total[0] += inp[0].shape[0] * n * cin * cout * k

    hooks = [m.register_forward_hook(count) for m in generator.modules()
             if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))]
    with torch.inference_mode():
        generator(mel)
    for h in hooks:
        h.remove()
    return total[0] / 1e9


def gemm_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` rate of an n x n matrix product on the current thread(s), GFLOP/s."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="audio length decoded per call")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", help="write the table as JSON to this path")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = {}
    for name, (cfg, preset_name, dtype) in GENERATORS.items():
        preset = get_preset(preset_name)
        mel = torch.randn(preset.n_mels, int(a.seconds * preset.sample_rate / preset.hop_length)) - 5
        voc = HiFiGANVocoder(cfg, preset).remove_weight_norm().eval().to(dtype)
        gmacs = conv_gmacs(voc.generator, mel[None].to(dtype)) / a.seconds
        with torch.inference_mode():
            rtf = real_time_factor(lambda: voc.decode(mel), a.seconds, repeats=a.repeats, warmup=2)
        rows[name] = {"preset": preset_name, "params": sum(p.numel() for p in voc.parameters()), "rtf": rtf,
                      "x_realtime": 1 / rtf, "gmac_per_audio_second": gmacs, "gflop_per_second": 2 * gmacs / rtf}
    preset = get_preset("speech-8k")
    mel = torch.randn(preset.n_mels, int(a.seconds * preset.sample_rate / preset.hop_length)) - 5
    gl = GriffinLimVocoder(preset, n_iter=32)
    rtf = real_time_factor(lambda: gl.decode(mel), a.seconds, repeats=max(3, a.repeats // 2))
    rows["griffinlim_32it_8k"] = {"preset": "speech-8k", "params": 0, "rtf": rtf, "x_realtime": 1 / rtf,
                                  "gmac_per_audio_second": None, "gflop_per_second": None}
    ceiling = {"float32": gemm_gflops(torch.float32), "bfloat16": gemm_gflops(torch.bfloat16)}
    print(f"one CPU thread, {a.seconds:g} s of audio per call, torch {torch.__version__}; matrix-product ceiling "
          f"{ceiling['float32']:.0f} GFLOP/s float32, {ceiling['bfloat16']:.0f} bfloat16")
    print(f"{'vocoder':22s} {'preset':12s} {'params':>10s} {'x real time':>12s} {'vs Griffin-Lim':>15s} "
          f"{'GMAC/audio s':>13s} {'GFLOP/s':>8s}")
    for name, r in rows.items():
        work = "" if r["gmac_per_audio_second"] is None else \
            f" {r['gmac_per_audio_second']:13.2f} {r['gflop_per_second']:8.1f}"
        print(f"{name:22s} {r['preset']:12s} {r['params']:10,d} {r['x_realtime']:12.1f} "
              f"{r['x_realtime'] / rows['griffinlim_32it_8k']['x_realtime']:15.2f}{work}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"benchmark": "vocoder_speed", "torch": torch.__version__,
                                            "seconds": a.seconds, "gemm_gflops": ceiling, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
