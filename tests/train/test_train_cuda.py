"""The Trainer on CUDA: resume (CUDA RNG included), fp16 with GradScaler, bf16, NaN guard."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import train_toy  # noqa: E402

from multidiff.errors import TrainingError  # noqa: E402
from multidiff.train import Trainer, checkpoint_step  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _run(out, steps, resume=False, model=None, **cfg):
    model = model or train_toy.make_model(dropout=0.1)
    res = Trainer(model, train_toy.make_data(), train_toy.config(max_steps=steps, device="cuda", **cfg),
                  out).train(resume=resume)
    return model, res


def test_cuda_resume_matches_uninterrupted(tmp_path):
    a, ra = _run(tmp_path / "a", 8)
    _run(tmp_path / "b", 4)
    b, rb = _run(tmp_path / "b", 8, resume=True)  # dropout draws from the restored CUDA RNG
    assert next(a.parameters()).is_cuda
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert ra["loss"] == rb["loss"]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_mixed_precision_trains_and_resumes(tmp_path, precision):
    _, res = _run(tmp_path, 8, precision=precision)
    assert res["step"] == 8 and res["loss"] == res["loss"]
    state = json.loads((tmp_path / "model" / "trainer_state.json").read_text())
    assert (state["grad_scaler"] is not None) == (precision == "fp16")
    if precision == "fp16":
        assert state["grad_scaler"]["scale"] > 0
    _, res = _run(tmp_path, 12, resume=True, precision=precision)
    assert res["step"] == 12


def test_cuda_nan_guard(tmp_path):
    with pytest.raises(TrainingError, match=r"step 5\b"):
        _run(tmp_path, 12, model=train_toy.make_model(nan_at=5))
    assert checkpoint_step(tmp_path) == 4
