"""Resume after SIGKILL is bit-for-bit identical to an uninterrupted run; kills inside a
checkpoint write never leave the folder without a complete checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import train_toy  # noqa: E402

from multidiff.train import Trainer, checkpoint_step, has_checkpoint, recover  # noqa: E402

torch.set_num_threads(1)
STEPS = 24
DROPOUT = 0.1  # uses torch's global RNG: its state must be restored too


def _run_in_process(out: Path, resume: bool = False) -> dict:
    model = train_toy.make_model(dropout=DROPOUT)
    return Trainer(model, train_toy.make_data(), train_toy.config(max_steps=STEPS), out).train(resume=resume)


def _spawn(out: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(train_toy.REPO))
    return subprocess.Popen([sys.executable, str(Path(train_toy.__file__)), "--out", str(out),
                             "--dropout", str(DROPOUT), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.stdout.read().decode()}")
        if time.time() > end:
            proc.kill()
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.01)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reap it, so its pid is really gone and the lock counts as stale


def _tensors(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    d = out / "model"
    return {name: load_file(str(d / name)) for name in ("model.safetensors", "ema.safetensors",
                                                        "optimizer.safetensors")}


def _last_loss(out: Path) -> float:
    records = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert losses[-1]["step"] == STEPS
    return losses[-1]["loss"]


def _assert_same_run(a: Path, b: Path) -> None:
    ta, tb = _tensors(a), _tensors(b)
    for name in ta:
        assert ta[name].keys() == tb[name].keys(), name
        for k in ta[name]:
            assert torch.equal(ta[name][k], tb[name][k]), f"{name}:{k} differs"
    sa = json.loads((a / "model/trainer_state.json").read_text())
    sb = json.loads((b / "model/trainer_state.json").read_text())
    assert sa["step"] == sb["step"] == STEPS and sa["rng"] == sb["rng"]
    assert _last_loss(a) == _last_loss(b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    _run_in_process(out)
    return out


def test_sigkill_then_resume_is_bit_identical(reference, tmp_path):
    out = tmp_path / "run"
    proc = _spawn(out, "--delay", "0.05")
    _wait_for(out / "model" / "trainer_state.json", proc)
    _kill(proc)
    killed_at = checkpoint_step(out)
    assert killed_at is not None and killed_at < STEPS
    assert (out / ".lock").exists()  # left behind by the killed run: stale, taken over below
    result = _run_in_process(out, resume=True)
    assert result["step"] == STEPS
    _assert_same_run(reference, out)


@pytest.mark.parametrize("phase,expect", [("files", 4), ("swap", 4), ("cleanup", 8)])
def test_kill_inside_checkpoint_write_keeps_a_complete_checkpoint(reference, tmp_path, phase, expect):
    out = tmp_path / "run"
    proc = _spawn(out, "--hang-phase", phase, "--hang-at", "2")  # hang inside the step-8 save
    _wait_for(Path(str(out) + ".hanging"), proc)
    _kill(proc)
    recover(out)  # what the next start does first
    assert has_checkpoint(out) and checkpoint_step(out) == expect
    assert not list(out.glob("model.tmp-*")) and not (out / "model.old").exists()
    for name in ("config.json", "model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        assert (out / "model" / name).is_file()
    _run_in_process(out, resume=True)
    _assert_same_run(reference, out)


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = _spawn(out, "--delay", "0.05", "--config", json.dumps({"checkpoint_every": 1000, "max_steps": 400}))
    _wait_for(out / "log.jsonl", proc)  # the loop runs (first log at step 4)
    proc.send_signal(signal.SIGTERM)
    text = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, text
    assert "--resume" in text
    step = checkpoint_step(out)
    assert step is not None and 4 <= step < 400
    assert not (out / ".lock").exists()


@pytest.mark.slow
def test_sigkill_at_random_moments_always_resumes_to_the_same_weights(reference, tmp_path):
    """Many kills at random moments (inside steps and inside checkpoint writes alike), each followed by a
    resume in a new process, end at exactly the uninterrupted run's weights."""
    import random
    rng = random.Random(1234)
    for trial in range(3):
        out = tmp_path / f"trial{trial}"
        kills = 0
        while kills < 4:
            resume = has_checkpoint(out)
            proc = _spawn(out, "--delay", "0.03", *(["--resume"] if resume else []))
            time.sleep(rng.uniform(0.3, 1.5))  # start-up takes ~0.5 s; then each step ~0.03 s
            if proc.poll() is not None:  # finished before the kill
                break
            _kill(proc)
            kills += 1
        recover(out)
        _run_in_process(out, resume=has_checkpoint(out))
        _assert_same_run(reference, out)
