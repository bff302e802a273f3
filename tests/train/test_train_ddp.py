"""Two torchrun processes (gloo) give the parameters of one process with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import train_toy  # noqa: E402

from multidiff.train import Trainer  # noqa: E402

torch.set_num_threads(1)
SGD = {"optimizer": "sgd", "lr": 0.05, "max_steps": 20, "batch_size": 8, "checkpoint_every": 10}
ADAMW = {"optimizer": "adamw", "lr": 1e-2, "max_steps": 20, "batch_size": 8, "grad_accum": 2,
         "grad_clip": 1.0}


def _torchrun(tmp_path: Path, name: str, config: dict) -> dict:
    """Train with 2 processes (the Trainer initialises and destroys the process group)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(train_toy.REPO))
    env.pop("WORLD_SIZE", None)
    params = tmp_path / f"{name}.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(train_toy.__file__)), "--out", str(tmp_path / name), "--params-out", str(params),
           "--config", json.dumps(config)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"params": load_file(str(params)), "result": json.loads(Path(str(params) + ".json").read_text())}


def test_torchrun_two_processes_equal_one_process(tmp_path):
    two = _torchrun(tmp_path, "sgd", SGD)["params"]
    one = train_toy.make_model()
    Trainer(one, train_toy.make_data(), train_toy.config(**SGD), tmp_path / "one").train()
    for k, v in one.state_dict().items():
        assert torch.allclose(v, two[k], atol=1e-5, rtol=0), (k, (v - two[k]).abs().max())
    assert not torch.equal(one.state_dict()["net.0.weight"], train_toy.make_model().state_dict()["net.0.weight"])
    # rank 0 alone wrote the log
    steps = [json.loads(l)["step"] for l in (tmp_path / "sgd" / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps))


def test_torchrun_adamw_with_accumulation_completes(tmp_path):
    # AdamW with 2 micro-steps per step (no_sync on the first) completes and checkpoints
    result = _torchrun(tmp_path, "adamw", ADAMW)["result"]
    assert result["step"] == 20 and result["loss"] == result["loss"]  # finite, not NaN
    state = json.loads((tmp_path / "adamw" / "model" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and (tmp_path / "adamw" / "model" / "optimizer.safetensors").is_file()
