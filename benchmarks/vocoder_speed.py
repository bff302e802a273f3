"""Vocoder speed on one CPU thread: HiFi-GAN generators beside Griffin-Lim, same mel, same process.

Real-time factor = seconds to decode / seconds of audio (median of `--repeats`, after warm-up), weight norm
folded as at inference. Generators (random weights: speed does not depend on training):
  v3_8k     HiFi-GAN V3 widths (256 initial channels, ResBlock2) with upsampling 8 x 4 x 2 = hop 64, `speech-8k`
  small_8k  the recipe's CPU config (64 channels), `speech-8k`
  v3_22k    the official V3 (upsampling 8 x 8 x 4 = hop 256), `hifigan-22k`
  v1_22k    the official V1, `hifigan-22k`
Griffin-Lim: torchaudio, 32 iterations, on the 8 kHz mel. Target (issue): V3-size at 8 kHz > 100x real time.

    python benchmarks/vocoder_speed.py [--seconds 1] [--repeats 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from multidiff.modalities.audio.mel import get_preset
from multidiff.modalities.audio.metrics import real_time_factor
from multidiff.modalities.audio.vocoders import GriffinLimVocoder, HiFiGANVocoder

UP_8K = {"upsample_rates": [8, 4, 2], "upsample_kernel_sizes": [16, 8, 4]}
GENERATORS = {
    "v3_8k": ({"resblock": "2", "upsample_initial_channel": 256, "resblock_kernel_sizes": [3, 5, 7],
               "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]], **UP_8K}, "speech-8k"),
    "small_8k": ({"resblock": "2", "upsample_initial_channel": 64, "resblock_kernel_sizes": [3, 5, 7],
                  "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]], **UP_8K}, "speech-8k"),
    "v3_22k": ("v3", "hifigan-22k"),
    "v1_22k": ("v1", "hifigan-22k"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="audio length decoded per call")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", help="write the table as JSON to this path")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = {}
    for name, (cfg, preset_name) in GENERATORS.items():
        preset = get_preset(preset_name)
        mel = torch.randn(preset.n_mels, int(a.seconds * preset.sample_rate / preset.hop_length)) - 5
        voc = HiFiGANVocoder(cfg, preset).remove_weight_norm().eval()
        with torch.inference_mode():
            rtf = real_time_factor(lambda: voc.decode(mel), a.seconds, repeats=a.repeats, warmup=2)
        rows[name] = {"preset": preset_name, "params": sum(p.numel() for p in voc.parameters()), "rtf": rtf,
                      "x_realtime": 1 / rtf}
    preset = get_preset("speech-8k")
    mel = torch.randn(preset.n_mels, int(a.seconds * preset.sample_rate / preset.hop_length)) - 5
    gl = GriffinLimVocoder(preset, n_iter=32)
    rtf = real_time_factor(lambda: gl.decode(mel), a.seconds, repeats=max(3, a.repeats // 2))
    rows["griffinlim_32it_8k"] = {"preset": "speech-8k", "params": 0, "rtf": rtf, "x_realtime": 1 / rtf}
    print(f"one CPU thread, {a.seconds:g} s of audio per call, torch {torch.__version__}")
    print(f"{'vocoder':22s} {'preset':12s} {'params':>10s} {'x real time':>12s} {'vs Griffin-Lim':>15s}")
    for name, r in rows.items():
        print(f"{name:22s} {r['preset']:12s} {r['params']:10,d} {r['x_realtime']:12.1f} "
              f"{r['x_realtime'] / rows['griffinlim_32it_8k']['x_realtime']:15.2f}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"benchmark": "vocoder_speed", "torch": torch.__version__,
                                            "seconds": a.seconds, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
