import pytest
import torch

from analytic import Gaussian
from multidiff.core import process

G = Gaussian(mu=0.3, std=0.5)


def _exact_net(parameterization, sigma_data=0.5):
    """The network F that makes D exact for Gaussian data, derived from the EDM form by hand."""
    def F(x_in, c_noise):
        sigma = (4 * c_noise).exp()
        c_skip, c_out, c_in, _ = process.coefficients(sigma, parameterization, sigma_data)
        b = lambda v: v[:, None]
        x = x_in / b(c_in)
        return (G.denoiser(x, sigma) - b(c_skip) * x) / b(c_out)
    return F


@pytest.mark.parametrize("p", ["eps", "x0", "v", "edm"])
def test_denoiser_reconstructs_exact_d(p):
    D = process.wrap(_exact_net(p), p, input_scaling=None)
    x, sig = torch.randn(6, 4, dtype=torch.float64), torch.logspace(-2, 1.5, 6, dtype=torch.float64)
    assert torch.allclose(D(x, sig), G.denoiser(x, sig), atol=1e-9)


def test_targets_are_the_textbook_ones():
    x0, eps = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 10.0], dtype=torch.float64)
    x = process.add_noise(x0, sigma, eps)
    alpha, s = (1 + sigma ** 2).rsqrt()[:, None], (sigma / (1 + sigma ** 2).sqrt())[:, None]
    for p, target in [("eps", eps), ("x0", x0), ("v", alpha * eps - s * x0)]:
        c_skip, c_out, _, _ = process.coefficients(sigma, p)
        assert torch.allclose((x0 - c_skip[:, None] * x) / c_out[:, None], target, atol=1e-12)


def test_edm_coefficients():
    sigma, sd = torch.tensor([0.7]), 0.5
    c_skip, c_out, c_in, c_noise = process.coefficients(sigma, "edm", sd)
    assert c_skip.item() == pytest.approx(0.25 / (0.49 + 0.25))
    assert c_out.item() == pytest.approx(0.7 * 0.5 / (0.49 + 0.25) ** 0.5)
    assert c_in.item() == pytest.approx(1 / (0.49 + 0.25) ** 0.5)
    assert c_noise.item() == pytest.approx(torch.log(torch.tensor(0.7)).item() / 4)


def test_loss_equals_weighted_x0_error():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 4).double()
    D = process.Denoiser(lambda_net(net), "eps")
    x0, eps = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    sigma, w = torch.tensor([0.05, 1.0, 20.0], dtype=torch.float64), torch.tensor([2.0, 1.0, 0.5])
    ref = w * ((D(x0 + sigma[:, None] * eps, sigma) - x0) ** 2).mean(1)
    assert torch.allclose(D.loss(x0, sigma, eps, w.double()).double(), ref.double(), rtol=1e-5)
    mask = torch.tensor([[1, 1, 0, 0]] * 3)
    ref_m = w * ((D(x0 + sigma[:, None] * eps, sigma) - x0) ** 2)[:, :2].mean(1)
    assert torch.allclose(D.loss(x0, sigma, eps, w.double(), mask=mask).double(), ref_m.double(), rtol=1e-5)


class lambda_net(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, c_noise):
        return self.net(x) * c_noise[:, None].exp()


def test_unknown_parameterization():
    with pytest.raises(ValueError, match="valid: eps, x0, v, edm"):
        process.Denoiser(torch.nn.Identity(), "score")
