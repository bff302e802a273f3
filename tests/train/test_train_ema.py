"""EMA against averages computed by hand."""

import pytest
import torch
from torch import nn

from multidiff.train.ema import EMA

torch.set_num_threads(1)


def _model(value: float) -> nn.Module:
    m = nn.Linear(1, 1, bias=False)
    m.register_buffer("stat", torch.zeros(1))
    m.register_buffer("count", torch.zeros(1, dtype=torch.long))  # not float: not tracked
    with torch.no_grad():
        m.weight.fill_(value)
    return m


def _set(m: nn.Module, value: float) -> None:
    with torch.no_grad():
        m.weight.fill_(value)
        m.stat.fill_(2 * value)


def test_ema_without_warmup_matches_hand_average():
    m = _model(0.0)
    ema = EMA(m, decay=0.5, warmup=False)
    for t, v in enumerate([1.0, 2.0, 4.0]):
        _set(m, v)
        ema.update(m, t)
    # 0.5*0 + 0.5*1 = 0.5;  0.5*0.5 + 0.5*2 = 1.25;  0.5*1.25 + 0.5*4 = 2.625
    assert ema.state_dict()["weight"].item() == pytest.approx(2.625, abs=1e-6)
    assert ema.state_dict()["stat"].item() == pytest.approx(5.25, abs=1e-6)  # float buffers too
    assert "count" not in ema.state_dict()


def test_ema_warmup_matches_hand_average():
    m = _model(0.0)
    ema = EMA(m, decay=0.999, warmup=True)
    for t, v in enumerate([1.0, 2.0, 4.0]):
        _set(m, v)
        ema.update(m, t)
    # t=0: d=1/10   -> 0.1*0 + 0.9*1           = 0.9
    # t=1: d=2/11   -> (2/11)*0.9 + (9/11)*2    = 19.8/11 = 1.8
    # t=2: d=3/12   -> 0.25*1.8 + 0.75*4        = 3.45
    assert ema.state_dict()["weight"].item() == pytest.approx(3.45, abs=1e-6)
    assert ema.decay_at(10**6) == 0.999  # (1 + t) / (10 + t) -> 1, capped by decay


def test_ema_copy_to_and_state_roundtrip():
    m = _model(0.0)
    ema = EMA(m, decay=0.5, warmup=False)
    _set(m, 2.0)
    ema.update(m, 0)
    other = _model(7.0)
    ema.copy_to(other)
    assert other.weight.item() == pytest.approx(1.0) and other.stat.item() == pytest.approx(2.0)
    ema2 = EMA(_model(5.0), decay=0.5, warmup=False)
    ema2.load_state_dict(ema.state_dict())
    assert torch.equal(ema2.state_dict()["weight"], ema.state_dict()["weight"])
