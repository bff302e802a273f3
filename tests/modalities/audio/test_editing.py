"""Mel editing (inpainting, continuation, SDEdit, DDIM inversion, slerp) on a tiny U-Net and on the analytic
Gaussian denoiser (exact probability-flow ODE, so inversion + sampling error is pure discretisation)."""

import math

import pytest
import torch

from analytic import Gaussian
from multidiff.model import DiffusionConfig, DiffusionModel
from multidiff.modalities.audio import editing
from multidiff.modalities.audio.modality import AudioModality

torch.set_num_threads(1)

PRESET = {"base": "speech-8k", "n_mels": 16}
F_, T_ = 16, 32  # 0.256 s at hop 64


def tiny_modality(labels=()):
    m = AudioModality({"preset": PRESET, "clip_seconds": T_ * 64 / 8000,
                       "label_pattern": r"^(?P<label>[^_]+)_" if labels else None,
                       "unet": {"channels": 8, "channel_mults": [1, 2], "attention_levels": [],
                                "mid_attention": False}})
    m.labels = list(labels)
    m.mean, m.std = torch.full((F_, 1), -5.0), torch.ones(F_, 1)
    assert m.num_frames == T_
    return m


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return DiffusionModel(tiny_modality(["a", "b", "c"]), {}, DiffusionConfig(steps=6, guidance=2.0)).eval()


class AnalyticModel(DiffusionModel):
    """An unconditional audio `DiffusionModel` whose denoiser is the exact one for N(mu, std^2) data."""

    def __init__(self, gauss: Gaussian, **diffusion):
        super().__init__(tiny_modality(), {}, DiffusionConfig(**diffusion))
        self.gauss = gauss

    def denoiser(self, net=None):
        return self.gauss.denoiser


@pytest.fixture(scope="module")
def gauss():
    return Gaussian(mu=0.3, std=0.5)


def x0_like(n=2, seed=0):
    return torch.randn(n, 1, F_, T_, generator=torch.Generator().manual_seed(seed)) * 0.5


# --- inpainting --------------------------------------------------------------------------------
def test_inpaint_keeps_known_frames_exactly_and_changes_the_span(tiny):
    x0 = x0_like()
    out = editing.inpaint(tiny, x0, 10, 20, seed=3, label="b")
    assert out.shape == x0.shape and torch.isfinite(out).all()
    assert torch.equal(out[..., :10], x0[..., :10]) and torch.equal(out[..., 20:], x0[..., 20:])
    assert (out[..., 10:20] - x0[..., 10:20]).abs().mean() > 0.1
    # unconditional (null label) path and another seed give another fill
    other = editing.inpaint(tiny, x0, 10, 20, seed=4)
    assert torch.equal(other[..., 20:], x0[..., 20:]) and not torch.allclose(other, out)


def test_continue_clip_keeps_the_prefix(tiny):
    x0 = x0_like(1)
    out = editing.continue_clip(tiny, x0, 12, seed=1)
    assert torch.equal(out[..., :12], x0[..., :12]) and not torch.allclose(out[..., 12:], x0[..., 12:])
    longer = editing.extend(tiny, x0, 8, times=2, seed=1)
    assert longer.shape[-1] == T_ + 2 * (T_ - 8) and torch.equal(longer[..., :T_], x0)


def test_bad_span_is_refused(tiny):
    with pytest.raises(ValueError, match="start_frame"):
        editing.inpaint(tiny, x0_like(1), 20, 10)


def test_inpaint_with_the_exact_denoiser_matches_the_conditional_law(gauss):
    """Independent elementwise Gaussian: the generated span must look like fresh data (mean mu, std S)."""
    model = AnalyticModel(gauss, steps=16)
    x0 = gauss.sample((8, 1, F_, T_), torch.Generator().manual_seed(1))
    out = editing.inpaint(model, x0, 8, 24, method="heun", seed=2)
    span = out[..., 8:24]
    assert abs(float(span.mean()) - gauss.mu) < 0.05 and abs(float(span.std()) - gauss.std) < 0.05


# --- SDEdit ------------------------------------------------------------------------------------
def test_vary_strength_zero_returns_input_and_grows_with_strength(tiny):
    x0 = x0_like()
    assert torch.equal(editing.vary(tiny, x0, 0.0), x0)
    tiny_change = (editing.vary(tiny, x0, 1e-4, seed=1) - x0).abs().max()
    assert tiny_change < 2e-2
    d = [float((editing.vary(tiny, x0, s, seed=1, label="a") - x0).pow(2).mean()) for s in (0.2, 0.9)]
    assert 0 < d[0] < d[1]
    assert editing.strength_sigma(tiny, 1.0) == pytest.approx(tiny.diffusion.sigma_max)
    with pytest.raises(ValueError):
        editing.vary(tiny, x0, 1.5)


# --- inversion ---------------------------------------------------------------------------------
def _roundtrip(gauss, method, steps):
    """(relative reconstruction error of invert -> sample, relative error of the latent vs the exact ODE)."""
    model = AnalyticModel(gauss, steps=steps)
    x0 = gauss.sample((4, 1, F_, T_), torch.Generator().manual_seed(0))
    z = editing.invert(model, x0, method=method)
    d = model.diffusion
    exact = gauss.ode_endpoint(x0, d.sigma_min, d.sigma_max)  # x0 taken as the ODE state at sigma_min
    back = editing._run(model, z, model.sigmas(), method=method, seed=0, label=None, guidance=1.0)
    return float((back - x0).norm() / x0.norm()), float((z - exact).norm() / exact.norm())


def test_invert_then_sample_reconstructs_with_the_exact_denoiser(gauss):
    # measured (Karras grid 0.002..80, 4 x 16 x 32 Gaussian items), relative L2 error recon / latent:
    #   euler 50: 9.4e-2 / 5.6e-2, euler 100: 4.8e-2 / 2.8e-2 (first order: halves with twice the steps)
    #   heun 20: 7.1e-3 / 3.4e-2,  heun 40: 8.4e-4 / 8.7e-3,  heun 80: 9.0e-5 / 2.2e-3
    e50, z50 = _roundtrip(gauss, "euler", 50)
    e100, z100 = _roundtrip(gauss, "euler", 100)
    assert e100 < 0.06 and z100 < 0.04
    assert 1.8 < e50 / e100 < 2.2 and 1.8 < z50 / z100 < 2.2
    h40, hz40 = _roundtrip(gauss, "heun", 40)
    assert h40 < 2e-3 and hz40 < 1.5e-2


def test_interpolate_endpoints_and_path(gauss):
    model = AnalyticModel(gauss, steps=40)
    g = torch.Generator().manual_seed(5)
    a, b = gauss.sample((1, 1, F_, T_), g), gauss.sample((1, 1, F_, T_), g)
    out = editing.interpolate(model, a, b, [0.0, 0.5, 1.0], method="heun")
    assert out.shape == (3, 1, 1, F_, T_)
    assert float((out[0] - a).norm() / a.norm()) < 1e-3 and float((out[2] - b).norm() / b.norm()) < 1e-3
    mid = out[1]
    assert (mid - a).norm() > 0.3 * (b - a).norm() and (mid - b).norm() > 0.3 * (b - a).norm()


def test_interpolate_on_a_conditional_unet(tiny):
    out = editing.interpolate(tiny, x0_like(1, 1), x0_like(1, 2), [0.0, 0.3, 1.0], steps=4, label="c")
    assert out.shape == (3, 1, 1, F_, T_) and torch.isfinite(out).all()


# --- slerp -------------------------------------------------------------------------------------
def test_slerp_endpoints_and_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 1, 4, 5, generator=g), torch.randn(3, 1, 4, 5, generator=g)
    b = b / b.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1) * a.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    assert torch.equal(editing.slerp(a, b, 0.0), a) and torch.equal(editing.slerp(a, b, 1.0), b)
    for t in (0.25, 0.5, 0.9):
        m = editing.slerp(a, b, t)
        torch.testing.assert_close(m.flatten(1).norm(dim=1), a.flatten(1).norm(dim=1), rtol=1e-5, atol=1e-6)
        # on the great circle: the angle to a is t * omega
        cos = lambda u, v: torch.nn.functional.cosine_similarity(u.flatten(1), v.flatten(1), eps=0)  # noqa: E731
        omega = torch.arccos(cos(a, b))
        torch.testing.assert_close(torch.arccos(cos(a, m).clamp(-1, 1)), t * omega, rtol=1e-4, atol=1e-4)
    # unequal norms: the norm moves linearly; parallel inputs fall back to a lerp
    c = 3 * a
    assert math.isclose(float(editing.slerp(a, c, 0.5).flatten(1).norm(dim=1)[0]),
                        2 * float(a.flatten(1).norm(dim=1)[0]), rel_tol=1e-5)
    torch.testing.assert_close(editing.slerp(a, c, 0.5), 2 * a)
