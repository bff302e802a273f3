"""Samplers against the analytic Gaussian / mixture fixtures and independent VP-space reference formulas."""

import math

import pytest
import torch

from analytic import Gaussian, Mixture
from multidiff.core import samplers as S

G = Gaussian(mu=0.3, std=0.5)
SMIN, SMAX = 0.002, 80.0


def _endpoint_errors(method, ns=(10, 20, 40, 80)):
    z = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * SMAX
    exact = G.ode_endpoint(z, SMAX)
    return [(S.sample(G.denoiser, z, S.karras_sigmas(n, SMIN, SMAX), method) - exact).abs().max().item()
            for n in ns]


@pytest.mark.parametrize("method,order", [("euler", 1), ("ddim", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_convergence_order(method, order):
    errs = _endpoint_errors(method)
    ratios = [errs[i] / errs[i + 1] for i in range(len(errs) - 1)]
    # the last doubling is in the asymptotic regime: ~2 for first order, ~4 for second order
    assert abs(ratios[-1] - 2 ** order) < 0.25 * 2 ** order, ratios
    assert errs[-1] < (0.08 if order == 1 else 0.006)


def test_euler_matches_karras_step_formula():
    # k-diffusion's Euler step written out: x + (s_next - s) * (x - D) / s
    sig = S.karras_sigmas(7, SMIN, SMAX)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1)) * SMAX
    ref = x.clone()
    for s, s_next in zip(sig[:-1], sig[1:]):
        d = (ref - G.denoiser(ref, s.repeat(5))) / s
        ref = ref + (s_next - s) * d
    assert torch.allclose(S.sample_euler(G.denoiser, x, sig), ref, rtol=1e-5, atol=1e-5)


def test_ddim_eta0_matches_vp_ddim_formula():
    """DDIM in VP space on the DDPM linear table: x_prev = sqrt(ab_p) x0 + sqrt(1 - ab_p) eps_hat."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ab = torch.cumprod(1 - betas, 0)
    ts = list(range(999, -1, -100))
    z = torch.randn(3, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x_vp = z.clone()
    for i, t in enumerate(ts):
        a = ab[t]
        s_ve = ((1 - a) / a).sqrt()
        x0 = G.denoiser(x_vp / a.sqrt(), s_ve.repeat(3))
        eps = (x_vp - a.sqrt() * x0) / (1 - a).sqrt()
        a_prev = ab[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        x_vp = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    sig = torch.cat([((1 - ab[ts]) / ab[ts]).sqrt(), torch.zeros(1, dtype=torch.float64)])
    ours = S.sample_ddim(G.denoiser, z * (1 + sig[0] ** 2).sqrt(), sig, eta=0.0)
    assert (ours - x_vp).abs().max() / x_vp.abs().max() < 1e-6


def test_ddpm_posterior_matches_vp_formula():
    """One DDPM step with the exact discrete posterior (Ho et al. eq. 7) vs ours, noise passed through the RNG."""
    ab_t, ab_p = 0.3, 0.6
    beta = 1 - ab_t / ab_p
    s, s_p = math.sqrt((1 - ab_t) / ab_t), math.sqrt((1 - ab_p) / ab_p)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * s
    x0 = G.denoiser(x, torch.full((4,), s, dtype=torch.float64))
    xt_vp = x * math.sqrt(ab_t)
    mean_vp = (math.sqrt(ab_p) * beta / (1 - ab_t)) * x0 + (math.sqrt(1 - beta) * (1 - ab_p) / (1 - ab_t)) * xt_vp
    std_vp = math.sqrt((1 - ab_p) / (1 - ab_t) * beta)
    noise = torch.randn(4, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    ref_ve = (mean_vp + std_vp * noise) / math.sqrt(ab_p)
    # our sampler on the grid [s, s_p, 0] stopped after its first step: use a callback to catch x at step 1
    seen = {}
    S.sample_ddpm(G.denoiser, x, torch.tensor([s, s_p, 0.0], dtype=torch.float64),
                  generator=torch.Generator().manual_seed(9),
                  callback=lambda i, xi, x0i, sig: seen.setdefault(i, xi.clone()))
    assert torch.allclose(seen[1], ref_ve, atol=1e-10)


@pytest.mark.parametrize("method,steps", [("euler_ancestral", 200), ("ddpm", 200), ("dpmpp_2m_sde", 50),
                                          ("ddim", 200)])
def test_stochastic_samplers_reproduce_moments(method, steps):
    n = 10_000
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, 1, generator=g) * SMAX
    opts = {"eta": 1.0} if method == "ddim" else {}
    out = S.sample(G.denoiser, x, S.karras_sigmas(steps, SMIN, SMAX), method, generator=g, **opts)
    # standard errors: mean 0.5/100 = 0.005, std ~ 0.5/sqrt(2n) = 0.0035; 4 sigma tolerances + discretisation
    assert abs(out.mean().item() - G.mu) < 0.02
    assert abs(out.std().item() - G.std) < 0.02


def test_mixture_mode_weights_dpmpp_2m_20_nfe():
    mix = Mixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 0.0]], [0.4, 0.4])
    g = torch.Generator().manual_seed(6)
    x = torch.randn(10_000, 2, generator=g) * SMAX
    out = S.sample(mix.denoiser, x, S.karras_sigmas(20, SMIN, SMAX), "dpmpp_2m")
    frac_right = (out[:, 0] > 0).float().mean().item()
    assert abs(frac_right - 0.7) < 0.03


def test_heun_uses_2n_minus_1_evaluations():
    calls = []
    def D(x, sigma):
        calls.append(1)
        return G.denoiser(x, sigma)
    S.sample_heun(D, torch.zeros(2, 3), S.karras_sigmas(18, SMIN, SMAX))
    assert len(calls) == 35 == S.nfe("heun", 18)


def test_deterministic_for_generator():
    x = torch.randn(3, 4) * SMAX
    sig = S.karras_sigmas(10, SMIN, SMAX)
    a = S.sample(G.denoiser, x, sig, "dpmpp_2m_sde", generator=torch.Generator().manual_seed(1))
    b = S.sample(G.denoiser, x, sig, "dpmpp_2m_sde", generator=torch.Generator().manual_seed(1))
    c = S.sample(G.denoiser, x, sig, "dpmpp_2m_sde", generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("method", list(S.SAMPLERS))
def test_known_positions_are_kept(method):
    values = torch.randn(4, 6, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:, :3] = True
    x = torch.randn(4, 6) * SMAX
    out = S.sample(G.denoiser, x, S.karras_sigmas(10, SMIN, SMAX), method, known=(values, mask),
                   generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out[:, :3], values[:, :3], atol=1e-6)
    assert not torch.allclose(out[:, 3:], values[:, 3:])


def test_project_and_callback_hooks():
    seen = []
    out = S.sample(G.denoiser, torch.randn(2, 3) * SMAX, S.karras_sigmas(5, SMIN, SMAX), "euler",
                   project=lambda x0: x0.round(), callback=lambda i, x, x0, s: seen.append((i, s)))
    assert torch.equal(out, out.round())  # the final step to sigma 0 returns the projected x0
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4] and seen[0][1] == pytest.approx(SMAX)


def test_cfg_combines_conditional_and_unconditional():
    def D(x, sigma, label):
        return x * 0 + label.to(x.dtype)[:, None]
    guided = S.cfg(D, scale=3.0, null_cond={"label": 0})
    out = guided(torch.zeros(2, 4), torch.ones(2), label=torch.tensor([2, 5]))
    # uncond = 0, cond = label: 0 + 3 * (label - 0)
    assert torch.equal(out, torch.tensor([[6.0] * 4, [15.0] * 4]))


def test_gradient_guidance_shifts_the_score():
    guided = S.gradient_guidance(G.denoiser, lambda x, s, x0: torch.ones_like(x), scale=2.0)
    x, sig = torch.zeros(2, 3), torch.full((2,), 3.0)
    assert torch.allclose(guided(x, sig) - G.denoiser(x, sig), torch.full((2, 3), 2.0 * 9.0))


def test_self_conditioning_feeds_previous_estimate():
    seen = []
    def D(x, sigma, self_cond):
        seen.append(self_cond.clone())
        return x + 1
    sc = S.SelfConditioning(D)
    S.sample_euler(sc, torch.zeros(1, 2), S.karras_sigmas(3, SMIN, SMAX))
    assert torch.equal(seen[0], torch.zeros(1, 2)) and not torch.equal(seen[1], torch.zeros(1, 2))
    S.sample_euler(sc, torch.zeros(1, 2), S.karras_sigmas(3, SMIN, SMAX))  # a new run starts from zeros
    assert torch.equal(seen[3], torch.zeros(1, 2))


@pytest.mark.parametrize("sigmas,msg", [
    (torch.tensor([1.0, 2.0, 0.0]), "decreasing"),
    (torch.tensor([2.0, 1.0, 0.5]), "end with exactly 0"),
    (torch.tensor([float("nan"), 1.0, 0.0]), "NaN"),
    (torch.tensor([1.0]), "at least 2"),
])
def test_bad_grids_are_refused(sigmas, msg):
    with pytest.raises(ValueError, match=msg):
        S.sample(G.denoiser, torch.zeros(1, 2), sigmas, "euler")


def test_bad_inputs_are_refused():
    sig = S.karras_sigmas(3, SMIN, SMAX)
    with pytest.raises(ValueError, match="NaN"):
        S.sample(G.denoiser, torch.tensor([[float("nan"), 0.0]]), sig, "euler")
    with pytest.raises(ValueError, match="valid choices: euler"):
        S.sample(G.denoiser, torch.zeros(1, 2), sig, "plms")
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        S.karras_sigmas(10, 5.0, 1.0)


def test_grids_decrease_and_end_in_zero():
    for g in (S.karras_sigmas(10, SMIN, SMAX), S.exponential_sigmas(10, SMIN, SMAX)):
        assert len(g) == 11 and g[-1] == 0 and (g[1:] < g[:-1]).all()
        assert g[0] == pytest.approx(SMAX) and g[-2] == pytest.approx(SMIN)


def test_non_finite_output_is_reported():
    def broken(x, sigma):
        return x * float("nan") if float(sigma[0]) < 1 else G.denoiser(x, sigma)
    with pytest.raises(ValueError, match="produced NaN or Inf.*callback"):
        S.sample(broken, torch.zeros(2, 3), S.karras_sigmas(10, SMIN, SMAX), "euler")


def test_churn_adds_the_edm_noise():
    """With churn the first step starts from sigma_hat = sigma (1 + gamma), gamma = min(S_churn / N, sqrt2 - 1)."""
    seen = []
    sig = S.karras_sigmas(4, SMIN, SMAX)
    S.sample_euler(lambda x, s: seen.append(float(s[0])) or x * 0, torch.zeros(1, 2) + SMAX, sig,
                   s_churn=0.4, generator=torch.Generator().manual_seed(0))
    assert seen[0] == pytest.approx(SMAX * 1.1, rel=1e-6) and seen[-1] == pytest.approx(float(sig[-2]) * 1.1, rel=1e-5)
