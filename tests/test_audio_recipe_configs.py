"""The spoken-digits recipe's YAML configs build what their comments and docs/benchmarks.md say they build.

A misspelt key in a GPU config would only show on a GPU; here every section goes through the same validation
(`from_dict`: unknown keys refused) and the network is built, on the CPU, from the recipe's merged config."""

import pytest

from multidiff.config import from_dict, load_yaml
from multidiff.model import DiffusionConfig, DiffusionModel, build_modality
from multidiff.train.trainer import TrainConfig
from script_loader import ROOT, load_script

# parameter counts of the U-Nets the measured runs trained (docs/benchmarks.md, FSDD table: 2.75M and 11.2M)
PARAMS = {"audio_spoken_digits.yaml": 2_752_609, "audio_spoken_digits_gpu.yaml": 11_179_969}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_config_builds_the_measured_network(name):
    r = load_script("recipes/audio_spoken_digits.py")
    cfg = r.merge(r.DEFAULTS, load_yaml(ROOT / "recipes" / "configs" / name))
    from_dict(TrainConfig, {**cfg["train"], "max_steps": 10}, "train")
    diffusion = from_dict(DiffusionConfig, cfg["diffusion"], "diffusion")
    modality = build_modality("audio", cfg["modality_options"])
    modality.labels = [str(d) for d in range(10)]  # what `prepare` finds on FSDD: ten digit classes
    model = DiffusionModel(modality, cfg["net"], diffusion)
    assert sum(p.numel() for p in model.net.parameters()) == PARAMS[name]


def test_gpu_config_is_the_cpu_config_with_a_wider_net_and_batch():
    cpu, gpu = (load_yaml(ROOT / "recipes" / "configs" / n) for n in sorted(PARAMS))
    assert gpu["diffusion"] == cpu["diffusion"] and gpu["modality_options"] == cpu["modality_options"]
    assert gpu["train"]["batch_size"] == 4 * cpu["train"]["batch_size"]
