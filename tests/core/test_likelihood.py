import torch

from analytic import Gaussian, Mixture
from multidiff.core import likelihood

G = Gaussian(mu=0.3, std=0.5)


def test_ode_nll_matches_exact_gaussian():
    g = torch.Generator().manual_seed(0)
    x0 = G.sample((8, 64), g)
    nll = likelihood.ode_nll(G.denoiser, x0, sigma_min=1e-2, sigma_max=80.0, generator=g)
    exact = -G.log_prob(x0, sigma=1e-2)
    assert ((nll - exact).abs() / 64).max() < 0.02


def test_ode_nll_with_mask_scores_only_the_flowing_dims():
    """Independent dimensions: holding the last 24 of 64 fixed (even at absurd values) leaves the exact NLL
    of the first 40."""
    g = torch.Generator().manual_seed(0)
    x0 = G.sample((8, 64), g)
    x0[:, 40:] = 1e3
    mask = torch.arange(64) < 40
    for exact_trace in (False, True):
        nll = likelihood.ode_nll(G.denoiser, x0.double(), sigma_min=1e-2, sigma_max=80.0, generator=g,
                                 exact_trace=exact_trace, mask=mask)
        exact = -G.log_prob(x0[:, :40].double(), sigma=1e-2)
        assert ((nll - exact).abs() / 40).max() < 0.02


def test_ode_nll_exact_trace_on_mixture():
    mix = Mixture([0.5, 0.5], [[-1.5, 0.0], [1.5, 0.5]], [0.5, 0.3])
    x0, _ = mix.sample(16, torch.Generator().manual_seed(1))
    nll = likelihood.ode_nll(mix.denoiser, x0.double(), sigma_min=1e-2, sigma_max=80.0, exact_trace=True)
    exact = -mix.log_prob(x0.double(), sigma=1e-2)
    assert ((nll - exact).abs() / 2).max() < 0.02
    # ranks points by their true density
    assert torch.corrcoef(torch.stack([nll, exact]))[0, 1] > 0.999


def test_elbo_bounds_the_nll_and_tightens():
    """For N(mu, S^2) data and the exact denoiser the bound's expectation is known in closed form: the gap to
    the entropy is 3.5 nats at logSNR range +-2, 0.58 at +-4 and < 0.01 beyond +-8 (16 dims)."""
    x0 = G.sample((1024, 16), torch.Generator().manual_seed(2))
    exact = (-G.log_prob(x0)).mean()
    gaps = [(likelihood.elbo(G.denoiser, x0, logsnr_min=-lim, logsnr_max=lim, samples=256,
                             generator=torch.Generator().manual_seed(3)).mean() - exact).item()
            for lim in (2.0, 4.0, 12.0)]
    assert gaps[0] > gaps[1] > 0.2  # an upper bound, loose when the logSNR range is short
    assert abs(gaps[0] - 3.5) < 0.3 and abs(gaps[1] - 0.58) < 0.3
    assert abs(gaps[2]) < 0.45  # tight within Monte Carlo noise (standard error 0.13 nats)


def test_bits_per_dim():
    assert float(likelihood.bits_per_dim(torch.tensor(2 * 0.6931471805599453), 2)) == 1.0
