import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from multidiff.core import schedules

NAMES = ["linear", "cosine", "sqrt", "edm"]
t_values = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=50, deadline=None)
@given(a=t_values, b=t_values)
def test_logsnr_strictly_decreasing(name, a, b):
    sch = schedules.get(name)
    if abs(a - b) < 1e-6:
        return
    lo, hi = min(a, b), max(a, b)
    assert sch.logsnr(lo) > sch.logsnr(hi)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=50, deadline=None)
@given(t=t_values)
def test_inverse_and_vp_identity(name, t):
    sch = schedules.get(name)
    assert float(sch.t_from_logsnr(sch.logsnr(t))) == pytest.approx(t, abs=1e-6)
    assert float(sch.alpha(t) ** 2 + sch.sigma(t) ** 2) == pytest.approx(1.0, abs=1e-12)
    assert float(sch.sigma_ve(t)) == pytest.approx(float(sch.sigma(t) / sch.alpha(t)), rel=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_sampling_grid(name):
    g = schedules.get(name).sigmas(12)
    assert len(g) == 13 and g[-1] == 0 and (g[1:] < g[:-1]).all()


def test_linear_matches_ddpm_table():
    sch = schedules.get("linear")
    table = sch.discrete_table()
    k = torch.tensor([0, 99, 499, 999])
    # the VP-SDE limit of the table (integral of the beta ramp instead of the product of 1 - beta):
    # logSNR within 0.1 of the table everywhere; from_alphas_cumprod(table) is the exact table
    assert (sch.logsnr(k.double() / 999.0) - (table[k].log() - (-table[k]).log1p())).abs().max() < 0.1
    assert float(table[999]) == pytest.approx(4.04e-5, rel=0.01)


def test_from_alphas_cumprod_hits_table_points():
    table = schedules.get("linear").discrete_table()
    sch = schedules.from_alphas_cumprod(table)
    k = torch.arange(0, 1000, 37)
    assert torch.allclose(torch.sigmoid(sch.logsnr(k.double() / 999.0)), table[k], rtol=1e-10)
    assert torch.allclose(sch.t_from_logsnr(sch.logsnr(k.double() / 999.0)), k.double() / 999.0, atol=1e-9)


def test_cosine_and_sqrt_closed_forms():
    cos = schedules.get("cosine")
    u = cos.u0 + 0.5 * (cos.u1 - cos.u0)
    s = 0.008
    ab = math.cos((u + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    assert float(torch.sigmoid(cos.logsnr(0.5))) == pytest.approx(ab, rel=1e-9)
    sq = schedules.get("sqrt")
    assert float(torch.sigmoid(sq.logsnr(0.0))) == pytest.approx(1 - math.sqrt(1e-4), rel=1e-9)


def test_edm_endpoints_and_karras_grid():
    from multidiff.core.samplers import karras_sigmas
    sch = schedules.get("edm", sigma_min=0.002, sigma_max=80.0)
    assert sch.sigma_min == pytest.approx(0.002) and sch.sigma_max == pytest.approx(80.0)
    assert torch.allclose(sch.sigmas(18), karras_sigmas(18, 0.002, 80.0), rtol=1e-5)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="valid choices: cosine, edm, linear, sqrt"):
        schedules.get("quadratic")
    with pytest.raises(ValueError, match="strictly decreasing"):
        schedules.from_alphas_cumprod(torch.tensor([0.5, 0.6]))
