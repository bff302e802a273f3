"""NaN guard, run-folder lock, full disk, safe loading, config validation, hooks."""

import errno
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import train_toy  # noqa: E402

import multidiff.train.checkpoint as ckpt  # noqa: E402
from multidiff.errors import CheckpointError, ConfigError, RunLockedError, TrainingError  # noqa: E402
from multidiff.train import RunLock, TrainConfig, Trainer, checkpoint_step  # noqa: E402

torch.set_num_threads(1)


def _trainer(out: Path, model=None, **cfg) -> Trainer:
    return Trainer(model or train_toy.make_model(), train_toy.make_data(), train_toy.config(**cfg), out)


# --- NaN / Inf guard --------------------------------------------------------------------------
@pytest.mark.parametrize("log_every,checkpoint_every", [(3, 4), (100, 3)])
def test_nan_guard_names_the_step_and_keeps_last_good_checkpoint(tmp_path, log_every, checkpoint_every):
    # loss goes NaN at step 5; caught at the step-6 log (3, 4) or before the step-6 save (100, 3)
    model = train_toy.make_model(nan_at=5)
    with pytest.raises(TrainingError, match=r"non-finite loss at step 5\b.*learning rate.*bf16.*bad data item") as e:
        _trainer(tmp_path, model, log_every=log_every, checkpoint_every=checkpoint_every).train()
    good = 4 if checkpoint_every == 4 else 3
    assert checkpoint_step(tmp_path) == good and f"step {good}" in str(e.value)
    weights = ckpt.load_tensors(tmp_path / "model" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert not (tmp_path / ".lock").exists()
    assert model.calls <= 6  # stopped by the next check, not at the end of training


def test_gradient_overflow_with_finite_loss_is_never_saved(tmp_path):
    # no clipping, no log at step 4: the inf gradient of step 4 is caught by the weights check of the save
    model = train_toy.make_model(inf_grad_at=4)
    with pytest.raises(TrainingError, match=r"non-finite weights at step 4"):
        _trainer(tmp_path, model, log_every=100, checkpoint_every=2).train()
    assert checkpoint_step(tmp_path) == 2


def test_gradient_overflow_is_caught_at_its_step_when_clipping(tmp_path):
    model = train_toy.make_model(inf_grad_at=3)
    with pytest.raises(TrainingError, match=r"non-finite gradient norm at step 3\b"):
        _trainer(tmp_path, model, log_every=4, checkpoint_every=2, grad_clip=1.0).train()
    assert checkpoint_step(tmp_path) == 2


# --- lock -------------------------------------------------------------------------------------
def _write_lock(out: Path, pid: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    import socket
    (out / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def test_second_run_on_same_folder_is_refused(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(tmp_path, other.pid)  # a live process holds the folder
        with pytest.raises(RunLockedError, match=str(other.pid)):
            _trainer(tmp_path).train()
        assert not (tmp_path / "model").exists()
    finally:
        other.kill()
        other.wait()
    _trainer(tmp_path, max_steps=4).train()  # its pid is dead now: stale lock taken over
    assert checkpoint_step(tmp_path) == 4 and not (tmp_path / ".lock").exists()


def test_lock_is_exclusive_within_a_process(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):
        pass


# --- full disk --------------------------------------------------------------------------------
def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch):
    real = ckpt.save_file
    calls = {"n": 0}

    def full_disk(tensors, path, *a, **k):  # optimizer.safetensors of the second save fails
        calls["n"] += 1
        if calls["n"] == 2:
            with open(path, "wb") as f:
                f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    with pytest.raises(CheckpointError, match=r"step 8.*No space left.*previous checkpoint at step 4 .* is intact"):
        _trainer(tmp_path, max_steps=12).train()
    assert checkpoint_step(tmp_path) == 4
    assert not list(tmp_path.glob("model.tmp-*")) and not (tmp_path / "model.old").exists()
    monkeypatch.setattr(ckpt, "save_file", real)
    assert _trainer(tmp_path, max_steps=12).train(resume=True)["step"] == 12


# --- safe loading -----------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pwned",))


def test_resume_never_unpickles(tmp_path, monkeypatch):
    _trainer(tmp_path, max_steps=4).train()
    marker = tmp_path / "executed"
    (tmp_path / "model" / "optimizer.pt").write_bytes(pickle.dumps(_Payload(str(marker))))

    def no_pickle(*a, **k):
        raise AssertionError("torch.load / pickle used while resuming")
    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    assert _trainer(tmp_path, max_steps=8).train(resume=True)["step"] == 8  # planted optimizer.pt ignored
    assert not marker.exists()

    # a pickle in place of the optimizer file is refused, and its code never runs
    (tmp_path / "model" / "optimizer.safetensors").write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(CheckpointError, match="optimizer"):
        _trainer(tmp_path, max_steps=12).train(resume=True)
    assert not marker.exists()


def test_optimizer_state_roundtrip_without_pickle(tmp_path):
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.AdamW([p], lr=1e-3)
    p.grad = torch.randn(3)
    opt.step()
    ckpt.save_optimizer(opt, tmp_path / "o.safetensors")
    state = ckpt.load_optimizer_state(tmp_path / "o.safetensors")
    opt2 = torch.optim.AdamW([torch.nn.Parameter(p.detach().clone())], lr=1e-3)
    opt2.load_state_dict(state)
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(v, opt2.state_dict()["state"][0][k])
    assert opt2.param_groups[0]["lr"] == 1e-3


# --- run folder states ------------------------------------------------------------------------
def test_resume_without_checkpoint_and_restart_over_checkpoint_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        _trainer(tmp_path).train(resume=True)
    _trainer(tmp_path, max_steps=4).train()
    with pytest.raises(CheckpointError, match="--resume"):
        _trainer(tmp_path, max_steps=4).train()
    assert _trainer(tmp_path, max_steps=4).train(resume=True)["step"] == 4  # already done: no-op


# --- config validation ------------------------------------------------------------------------
def test_unknown_optimizer_lists_choices():
    with pytest.raises(ConfigError, match=r"unknown optimizer 'adamx'.*AdamW.*SGD"):
        TrainConfig(optimizer="adamx").validate()
    assert TrainConfig(optimizer="SgD").optimizer_class() is torch.optim.SGD


def test_batch_not_divisible_and_other_values():
    with pytest.raises(ConfigError, match=r"batch_size 10 is not divisible .*choose a multiple of 4"):
        TrainConfig(batch_size=10, grad_accum=2).validate(world_size=2)
    assert TrainConfig(batch_size=16, grad_accum=2).validate(world_size=2) == 4
    with pytest.raises(ConfigError, match="lr_schedule must be one of constant, cosine"):
        TrainConfig(lr_schedule="linear").validate()
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, fp16"):
        TrainConfig(precision="fp8").validate()
    with pytest.raises(ConfigError, match="takes:.*momentum"):
        Trainer(train_toy.make_model(), train_toy.make_data(), train_toy.config(
            optimizer="sgd", optimizer_options={"momentun": 0.9}), "/nonexistent/x")._make_optimizer()


def test_fp16_on_cpu_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs CUDA.*bf16"):
        _trainer(tmp_path, precision="fp16").train()


def test_lr_schedule():
    c = TrainConfig(lr=1.0, lr_schedule="cosine", warmup_steps=2, max_steps=12)
    assert [c.lr_at(s) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert c.lr_at(7) == pytest.approx(0.5) and c.lr_at(12) == pytest.approx(0.0)


# --- training semantics -----------------------------------------------------------------------
def test_grad_accum_equals_one_big_batch(tmp_path):
    # the draws are seeded per micro-step, so compare with a loss that draws nothing
    a, b = train_toy.make_model(noise=False), train_toy.make_model(noise=False)
    _trainer(tmp_path / "a", a, optimizer="sgd", max_steps=8).train()
    _trainer(tmp_path / "b", b, optimizer="sgd", max_steps=8, grad_accum=4).train()
    for k, v in a.state_dict().items():
        assert torch.allclose(v, b.state_dict()[k], atol=1e-6), k


def test_eval_hooks_see_ema_and_do_not_change_training(tmp_path):
    seen = []

    def eval_fn(model, step):
        torch.rand(100)  # consumes the global RNG: must not change the training trajectory
        seen.append((step, model.training))
        return {"ema_w": model.net[0].weight.sum()}

    a, b = train_toy.make_model(dropout=0.2), train_toy.make_model(dropout=0.2)
    Trainer(a, train_toy.make_data(), train_toy.config(max_steps=8, eval_every=4), tmp_path / "a",
            eval_fn=eval_fn, sample_fn=lambda m, s: {"sampled": 1}).train()
    res = Trainer(b, train_toy.make_data(), train_toy.config(max_steps=8), tmp_path / "b",
                  eval_data=train_toy.make_data(16, seed=9)).train()
    assert seen == [(4, False), (8, False)]
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    records = [json.loads(l) for l in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [4, 8] and all("ema_w" in r and r["sampled"] == 1 for r in evals)
    assert res["eval_loss"] > 0


def test_bf16_autocast_on_cpu_trains(tmp_path):
    res = _trainer(tmp_path, precision="bf16", max_steps=4).train()
    assert res["step"] == 4 and res["loss"] == res["loss"]


def test_model_without_save_pretrained(tmp_path):
    class Bare(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(train_toy.DIM, train_toy.DIM)

        def forward(self, batch, draws):
            return ((self.lin(batch.x0 + draws.randn(train_toy.DIM)) - batch.x0) ** 2).mean()

    Trainer(Bare(), train_toy.make_data(), train_toy.config(max_steps=4), tmp_path).train()
    assert set(ckpt.load_tensors(tmp_path / "model" / "model.safetensors")) == {"lin.weight", "lin.bias"}
    assert Trainer(Bare(), train_toy.make_data(), train_toy.config(max_steps=6), tmp_path).train(resume=True)["step"] == 6
