"""A modality from a separate, pip-installed package, found through the entry-point group `multidiff.modalities`.

The throwaway package declares

    [project.entry-points."multidiff.modalities"]
    toy = "toy_mod:ToyModality"

and is installed with pip (a real wheel build and install, offline) into a private folder put on PYTHONPATH,
rather than into the shared virtual environment: nothing to uninstall, nothing left behind if the test dies,
and parallel test runs cannot race on site-packages. importlib.metadata finds the installed .dist-info there
exactly as it would in site-packages. Then `multidiff train` / `sample` / `info` run it as a user would.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from multidiff.errors import ConfigError
from multidiff.modalities import base

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "multidiff-toy-modality"
version = "0.0.1"

[project.entry-points."multidiff.modalities"]
toy = "toy_mod:ToyModality"

[tool.setuptools]
py-modules = ["toy_mod"]
"""

TOY_MOD = '''\
"""A third-party modality: 2-D points from .npy files, re-using the vector modality's reader and MLP."""
from multidiff.modalities.vector import VectorModality


class ToyModality(VectorModality):
    name = "toy"  # must equal the entry-point name: saved models record it and are loaded by it
'''

CONFIG = """\
modality: toy
net: {hidden: 32, depth: 2}
diffusion: {sigma_data: 1.0, steps: 8}
train: {max_steps: 40, batch_size: 32, lr: 0.003, checkpoint_every: 1000, log_every: 20, ema_decay: 0.9}
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip-install the toy package into a fresh folder; yield (folder, environment for subprocesses)."""
    root = tmp_path_factory.mktemp("toy")
    src, site = root / "src", root / "site"
    src.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "toy_mod.py").write_text(TOY_MOD)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--disable-pip-version-check", "--no-cache-dir", "-q", "--target", str(site), str(src)],
                         capture_output=True, text=True, timeout=300)
    if pip.returncode != 0:
        pytest.fail(f"pip could not install the toy package:\n{pip.stdout}\n{pip.stderr}")
    eps = list(site.glob("multidiff_toy_modality-*.dist-info/entry_points.txt"))
    assert eps and 'toy = toy_mod:ToyModality' in eps[0].read_text(), "pip wrote no entry point"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_NUM_THREADS": "1"}
    yield root, site, env
    base._REGISTRY.pop("toy", None)
    sys.modules.pop("toy_mod", None)


def _cli(env, *args):
    out = subprocess.run([sys.executable, "-m", "multidiff", *args], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, f"multidiff {' '.join(args)} failed:\n{out.stderr}"
    return out.stdout


def test_registry_finds_the_entry_point(installed, monkeypatch):
    root, site, _ = installed
    monkeypatch.syspath_prepend(str(site))
    base._REGISTRY.pop("toy", None)
    assert "toy" in base.available()
    cls = base.get("toy")
    assert cls.__name__ == "ToyModality" and cls.name == "toy"


def test_train_and_sample_through_the_cli(installed):
    root, _, env = installed
    rng = np.random.default_rng(0)
    np.save(root / "points.npy", rng.normal([1.0, -2.0], [0.3, 0.5], (256, 2)).astype(np.float32))
    (root / "toy.yaml").write_text(CONFIG)
    run = root / "run"
    out = _cli(env, "train", str(root / "toy.yaml"), "--out", str(run), "--quiet",
               "--set", f"data.path={root / 'points.npy'}")
    assert "model saved in" in out
    assert json.loads((run / "model" / "config.json").read_text())["modality"] == "toy"
    printed = _cli(env, "sample", str(run), "--num", "16", "--out", str(root / "samples.npy"))
    assert printed.strip().endswith("samples.npy")
    samples = np.load(root / "samples.npy")
    assert samples.shape == (16, 2) and np.isfinite(samples).all()
    info = json.loads(_cli(env, "info", str(run)))
    assert info["modality"] == "toy" and info["step"] == 40


def test_without_the_package_the_error_names_the_group(tmp_path):
    with pytest.raises(ConfigError, match="multidiff.modalities"):
        base.get("surely-not-installed")


def test_a_broken_plugin_is_named_and_does_not_break_the_others(tmp_path, monkeypatch):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[multidiff.modalities]\nbroken = no_such_module_here:Nope\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert "vector" in base.available() and "broken" not in base.available()
        with pytest.raises(ConfigError, match="no_such_module_here:Nope.*could not be loaded.*reinstall"):
            base.get("broken")
        with pytest.raises(ConfigError, match="unknown modality 'brokn'"):
            base.get("brokn")
    finally:
        base._BROKEN.pop("broken", None)


def test_registered_name_must_match_the_class_name():
    from multidiff.modalities.vector import VectorModality

    class Points(VectorModality):
        name = "base"  # forgotten: a saved model would record 'base' and could not be loaded

    with pytest.raises(ConfigError, match="set `name = 'points_mismatch'`"):
        base.register("points_mismatch", Points)
    assert "points_mismatch" not in base._REGISTRY
