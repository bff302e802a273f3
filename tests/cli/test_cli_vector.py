"""End to end through the `multidiff` command on a 2-D Gaussian mixture (the vector modality)."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from multidiff.cli import main

CONFIG = "recipes/configs/vector.yaml"


def _mixture(path, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    left = rng.random(n) < 0.3
    x = np.where(left[:, None], rng.normal([-2, 0], 0.4, (n, 2)), rng.normal([2, 0.5], 0.4, (n, 2)))
    np.save(path, x.astype(np.float32))
    return x


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("vec")
    x = _mixture(d / "mix.npy")
    rc = main(["train", CONFIG, "--out", str(d / "run"), "--max-steps", "300", "--batch-size", "128", "--quiet",
               "--set", f"data.path={d / 'mix.npy'}", "--set", "net.hidden=64", "--set", "train.lr=0.003",
               "--set", "train.warmup_steps=20"])
    assert rc == 0
    return d, x


def test_samples_reproduce_mixture_weights(trained, capsys):
    d, _ = trained
    assert main(["sample", str(d / "run"), "--num", "2000", "--seed", "1", "--out", str(d / "s.npy")]) == 0
    s = np.load(d / "s.npy")
    assert s.shape == (2000, 2)
    assert abs((s[:, 0] < 0).mean() - 0.3) < 0.05


def test_nll_beats_a_single_gaussian(trained, capsys):
    d, x = trained
    capsys.readouterr()
    assert main(["nll", str(d / "run"), "--data", str(d / "mix.npy"), "--json", "--method", "ode"]) == 0
    res = json.loads(capsys.readouterr().out)
    # NLL of the data under the best single Gaussian (fitted covariance), in bits per dimension
    cov = np.cov(x.T)
    diff = x - x.mean(0)
    nll = 0.5 * (np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff) + np.log(np.linalg.det(2 * math.pi * cov)))
    gaussian_bpd = nll.mean() / (2 * math.log(2))
    assert res["units"] == "bits/dim" and res["items"] == len(x)
    assert res["mean"] < gaussian_bpd - 0.2, (res["mean"], gaussian_bpd)


def test_info_and_module_entry(trained):
    d, _ = trained
    out = subprocess.run([sys.executable, "-m", "multidiff", "info", str(d / "run")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["modality"] == "vector" and info["step"] == 300


def test_config_errors_are_one_line_exit_2(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((10, 2), np.float32))
    cases = [
        (["--set", "train.learning_rate=1"], "train.learning_rate: unknown key; valid keys:"),
        (["--set", "train.max_steps=ten"], "train.max_steps: expected an integer"),
        (["--set", "diffusion.sampler=plms"], "diffusion.sampler: 'plms' is not valid; choose one of euler"),
        (["--set", "train.batch_size=-4"], "batch_size must be a positive integer"),
        (["--set", "modality=images"], "unknown modality 'images'"),
    ]
    for extra, msg in cases:
        rc = main(["train", CONFIG, "--out", str(tmp_path / "r"), "--set", f"data.path={tmp_path / 'x.npy'}", *extra])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and err.count("\n") == 1, err


def test_missing_data_and_model_errors(tmp_path, capsys):
    assert main(["train", CONFIG, "--out", str(tmp_path / "r")]) == 2
    assert "data.path is not set" in capsys.readouterr().err
    assert main(["sample", str(tmp_path)]) == 2
    assert "holds no saved model" in capsys.readouterr().err


def test_guidance_on_an_unconditional_model_is_refused(trained, capsys):
    d, _ = trained
    assert main(["sample", str(d / "run"), "--num", "4", "--guidance", "2"]) == 2
    err = capsys.readouterr().err
    assert "needs a class-conditional model" in err and err.count("\n") == 1, err
