"""Our samplers agree with diffusers' schedulers and k-diffusion's samplers (benchmarks/parity.py, small size).

diffusers and k-diffusion are only in the optional `bench` extra: each test skips with the reason when its
peer is not installed. Gaussian fixture [4, 3, 8, 8], 10 steps, float32: max relative difference < 1e-5.
"""

from __future__ import annotations


import pytest
import torch

from script_loader import load_script


P = load_script("benchmarks/parity.py")
DIFFUSERS = [n for n, (lib, _, _) in P.PAIRS.items() if lib == "diffusers"]
KDIFF = [n for n, (lib, _, _) in P.PAIRS.items() if lib == "k-diffusion"]


@pytest.mark.parametrize("pair", DIFFUSERS)
def test_diffusers_parity(pair):
    if P.load_diffusers() is None:
        pytest.skip('diffusers is not installed (optional: pip install -e ".[bench]")')
    torch.set_num_threads(1)
    rel, _ = P.accuracy(pair, 10, fixture="gaussian [4,3,8,8]")["gaussian [4,3,8,8]"]
    assert rel < 1e-5, f"{pair}: relative difference {rel:.2e}"


@pytest.mark.parametrize("pair", KDIFF)
def test_k_diffusion_parity(pair):
    P.KD = P.load_k_sampling()
    if P.KD is None:
        pytest.skip("k-diffusion is not installed (optional: pip install --no-deps k-diffusion)")
    rel, _ = P.accuracy(pair, 10, fixture="gaussian [4,3,8,8]")["gaussian [4,3,8,8]"]
    assert rel < 1e-5, f"{pair}: relative difference {rel:.2e}"
