import math

import pytest
import torch

from multidiff.core import losses, process, schedules
from multidiff.core.draws import Draws

L = torch.tensor([-6.0, -1.0, 0.0, 2.5, 8.0], dtype=torch.float64)


@pytest.mark.parametrize("name,closed", [
    ("eps", lambda l: math.exp(l)),
    ("x0", lambda l: 1.0),
    ("v", lambda l: math.exp(l) + 1),
    ("min_snr", lambda l: min(math.exp(l), 5.0)),
    ("edm", lambda l: math.exp(l) + 4.0),
    ("sigmoid", lambda l: math.exp(l) / (1 + math.exp(l + 3.0))),
])
def test_weightings_closed_form(name, closed):
    w = losses.weight(name, L, sigma_data=0.5, gamma=5.0, bias=-3.0)
    assert torch.allclose(w, torch.tensor([closed(float(l)) for l in L], dtype=torch.float64), rtol=1e-12)


def test_eps_weighting_equals_eps_mse():
    """w = SNR on the x0 error is L_simple on the noise for an eps-network."""
    torch.manual_seed(1)
    net = torch.nn.Linear(3, 3).double()
    D = process.Denoiser(Net(net), "eps")
    x0, eps = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.3, 1.0, 9.0], dtype=torch.float64)
    x = x0 + sigma[:, None] * eps
    eps_hat = net((1 + sigma[:, None] ** 2).rsqrt() * x)
    w = losses.weight("eps", -2 * sigma.log())
    assert torch.allclose(D.loss(x0, sigma, eps, w).double(), ((eps_hat - eps) ** 2).mean(1), rtol=1e-5)


class Net(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, c_noise):
        return self.net(x)


def test_elbo_weighting_matches_vdm():
    sch = schedules.get("cosine")
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    slope = sch.dlogsnr_dt(t)
    h = 1e-6  # finite-difference check of the autograd slope
    assert torch.allclose(slope, (sch.logsnr(t + h) - sch.logsnr(t - h)) / (2 * h), rtol=1e-5)
    w = losses.weight("elbo", sch.logsnr(t), dlogsnr_dt=slope, dims=7)
    # VDM: -1/2 dSNR/dt summed over dims = -1/2 SNR dlogsnr/dt * dims (per mean-squared error)
    assert torch.allclose(w, -0.5 * sch.logsnr(t).exp() * slope * 7)


def test_time_samplers():
    d = Draws.seeded(0, 20_000)
    sigma, _ = losses.sample_sigma("lognormal", d, p_mean=-1.2, p_std=1.2)
    assert abs(sigma.log().mean().item() + 1.2) < 0.03 and abs(sigma.log().std().item() - 1.2) < 0.03
    sch = schedules.get("edm")
    sigma, t = losses.sample_sigma("stratified", Draws.seeded(1, 8), schedule=sch)
    assert sorted(((t * 8) // 1).tolist()) == list(range(8))  # one draw per stratum
    with pytest.raises(ValueError, match="valid choices"):
        losses.sample_sigma("beta", d)
    with pytest.raises(ValueError, match="valid choices"):
        losses.weight("snr", L)


def test_draws_do_not_depend_on_the_split():
    full = Draws.seeded(7, 6).randn(3)
    parts = [Draws.seeded(7, 6, a, b).randn(3) for a, b in [(0, 2), (2, 4), (4, 6)]]
    assert torch.equal(full, torch.cat(parts))
