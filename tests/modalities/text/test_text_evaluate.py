"""bound_per_token: the mean over repeats and its standard error, against hand-computed values."""

import math

import pytest
import torch

from multidiff.modalities.base import Encoded
from multidiff.modalities.text.evaluate import bound_per_token


class ScriptedModality:
    """nll_terms returns the next scripted per-item totals (nats); every item has 5 tokens."""

    def __init__(self, totals):
        self.totals = list(totals)

    def nll_terms(self, net, batch, draws, method="elbo", ode_steps=64):
        total = torch.tensor(self.totals.pop(0), dtype=torch.float64)
        assert len(total) == len(batch)
        return {"total": total, "diffusion": 0.5 * total, "tokens": torch.full_like(total, 5.0)}


def test_mean_and_standard_error_over_repeats():
    # 3 items in batches of 2 -> two calls per repeat; per-repeat sums 30, 45, 15 nats over 15 tokens
    script = [[10, 5], [15], [20, 10], [15], [5, 5], [5]]
    data = Encoded(x0=torch.zeros(3, 4, 2), mask=torch.ones(3, 4))
    out = bound_per_token(ScriptedModality(script), None, data, repeats=3, batch_size=2)
    # per token: 2, 3, 1 nats
    assert out["nats_per_token"] == pytest.approx(2.0)
    assert out["diffusion"] == pytest.approx(1.0)
    assert out["bits_per_token"] == pytest.approx(2.0 / math.log(2))
    # sample standard deviation (n - 1) of 2, 3, 1 is 1; its mean over 3 repeats: 1 / sqrt(3)
    assert out["nats_per_token_se"] == pytest.approx(1 / math.sqrt(3))
    assert out["tokens"] == 15 and out["repeats"] == 3


def test_one_repeat_has_no_standard_error():
    data = Encoded(x0=torch.zeros(2, 4, 2), mask=torch.ones(2, 4))
    out = bound_per_token(ScriptedModality([[4, 6]]), None, data, repeats=1, batch_size=8)
    assert out["nats_per_token"] == pytest.approx(1.0) and out["nats_per_token_se"] is None
