"""Objectives against hand computations; the bound against an exactly known likelihood."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from multidiff.core.draws import Draws
from multidiff.modalities.text import objectives as obj
from multidiff.modalities.text.network import TextDenoiserNet


def _tiny_net(V=11, d=8, **kw):
    torch.manual_seed(0)
    net = TextDenoiserNet(V, embed_dim=d, hidden=16, layers=1, heads=2, dropout=0.0, max_len=12, **kw)
    return net.eval()


def _batch(B=3, L=5, V=11):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(6, V, (B, L), generator=g)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 3:] = False
    return obj.Batch(ids=ids, mask=mask, target=mask.clone(), known=None)


def test_x0_hat_is_softmax_times_table():
    torch.manual_seed(0)
    lg, E = torch.randn(2, 3, 5), torch.randn(5, 4)
    p = torch.exp(lg) / torch.exp(lg).sum(-1, keepdim=True)
    manual = torch.einsum("blv,vd->bld", p, E)
    assert torch.allclose(obj.x0_hat(lg, E), manual, atol=1e-6)


@pytest.mark.parametrize("norm", ["unit", "sqrt_d", "none"])
def test_embedding_norms(norm):
    net = _tiny_net(norm=norm)
    E = net.embedding_matrix()
    if norm == "unit":
        assert torch.allclose(E.norm(dim=-1), torch.ones(11), atol=1e-5)
    elif norm == "sqrt_d":
        assert torch.allclose(E.norm(dim=-1), torch.full((11,), math.sqrt(8)), atol=1e-4)
    assert torch.allclose(net.embed(torch.tensor([[3, 4]])), E[[3, 4]][None])


def test_score_interpolation_loss_equals_hand_cross_entropy():
    net, b = _tiny_net(self_cond=False), _batch()
    sampler = obj.LogSNRSampler(-6, 6, bins=8, adaptive=False)
    loss, _ = obj.training_loss(net, b, Draws.seeded(7, 3), objective="score_interp", sampler=sampler,
                                self_cond_prob=0.0)
    # the same draws by hand: u (stratified), eps [B, max_len, d] cut to L
    dr = Draws.seeded(7, 3)
    u = dr.stratified()
    eps = dr.randn(12, 8)[:, :5]
    lam_rel = -6 + 12 * u                                          # uniform density on [-6, 6]
    sd = 1 / math.sqrt(8)                                          # unit-norm rows in 8 dims
    sigma = sd * torch.exp(-lam_rel / 2)
    E = net.embedding_matrix()
    x = E[b.ids] + sigma[:, None, None] * eps
    raw = net(x / torch.sqrt(sigma ** 2 + sd ** 2)[:, None, None], lam_rel, attention_mask=b.mask)
    prior = (x @ E.T - 0.5 * (E ** 2).sum(-1)) / sigma[:, None, None] ** 2   # Gaussian output prior
    logp = torch.log_softmax(raw + prior, -1).gather(-1, b.ids[..., None]).squeeze(-1)
    hand = -(logp * b.target).sum() / b.target.sum()
    assert float(loss.detach()) == pytest.approx(float(hand.detach()), rel=1e-5)


def test_sampler_density_and_adaptation():
    s = obj.LogSNRSampler(-10, 10, bins=20, mix=0.1)
    u = torch.linspace(0, 1 - 1e-6, 1001)
    lam, pdf = s.sample(u)
    assert lam.min() >= -10 and lam.max() <= 10
    assert torch.allclose(pdf, torch.full_like(pdf, 1 / 20))
    # integrand concentrated in [0, 2]: after updates most draws land there, pdf stays normalised
    lam_obs = torch.linspace(-9.9, 9.9, 200)
    for _ in range(5):
        s.update(lam_obs, torch.where((lam_obs > 0) & (lam_obs < 2), 10.0, 0.01))
    assert s.mass_in(0, 2) > 0.6
    grid = torch.linspace(-10, 10, 20001)[:-1] + 0.0005
    assert float(s.pdf(grid).sum() * 0.001) == pytest.approx(1.0, abs=1e-3)
    lam, pdf = s.sample(torch.rand(4000, generator=torch.Generator().manual_seed(0)))
    assert float(((lam > 0) & (lam < 2)).float().mean()) > 0.55
    assert torch.allclose(pdf, s.pdf(lam))


class ExactPosterior(nn.Module):
    """Zero network logits: with the output prior, logits = log N(x; e_w, sigma^2), i.e. the exact
    posterior p(w | x) for tokens drawn independently and uniformly from the table."""

    def __init__(self, E):
        super().__init__()
        self.E, self.embed_dim, self.max_len, self.use_self_cond = E, E.shape[1], 4, False

    def embedding_matrix(self):
        return self.E

    def embed(self, ids):
        return self.E[ids]

    def sigma_data(self):
        return self.E.pow(2).mean().sqrt()

    def forward(self, x_in, c_noise, self_cond=None, attention_mask=None, known=None):
        return torch.zeros(*x_in.shape[:2], self.E.shape[0])


def test_bound_matches_exact_nll_for_exact_denoiser():
    """Tokens uniform over V = 6 embeddings, 2 independent positions: -log p = 2 log 6 exactly. With the
    exact denoiser the continuous bound is tight up to the end-point terms (< 1e-3 here), so its
    estimate must match 2 log 6 within Monte Carlo error; this checks the integrand 0.5 e^lambda |.|^2,
    the importance weights 1/pdf and the end-point terms. The fitted proposal must cut the variance."""
    torch.manual_seed(0)
    V, d, L, B = 6, 3, 2, 20000
    E = F.normalize(torch.randn(V, d), dim=-1)
    net = ExactPosterior(E)
    ids = torch.randint(V, (B, L), generator=torch.Generator().manual_seed(3))
    b = obj.Batch(ids, torch.ones(B, L, dtype=torch.bool), torch.ones(B, L, dtype=torch.bool), None)
    exact, se = L * math.log(V), {}
    for importance in (False, True):
        s = obj.LogSNRSampler(-12, 12, bins=48, adaptive=importance)
        if importance:                                      # fit the proposal on a few batches first
            for k in range(5):
                obj.training_loss(net, b, Draws.seeded(100 + k, B), objective="score_interp", sampler=s,
                                  self_cond_prob=0.0)
        t = obj.bound_terms(net, b, Draws.seeded(0, B), sampler=s)
        se[importance] = float(t["total"].std()) / math.sqrt(B)
        assert float(t["prior"].mean()) < 1e-3 and float(t["reconstruction"].mean()) < 1e-3
        assert float(t["total"].mean()) == pytest.approx(exact, abs=4 * se[importance])
    assert se[True] < 0.7 * se[False]


def test_flow_bound_matches_exact_nll_for_exact_denoiser():
    """The same exactly known likelihood (2 uniform tokens of 6: 2 log 6) through the probability-flow
    bound. Each row also has a known (context) first position and a padded last one: neither may flow
    nor count.
    With the exact denoiser p_ODE(z0) is the true marginal, so the bound is tight up to -log p(w | z0)
    (about 0 at lambda_max 12) and the solver's error; a 4-step solve is far off (it checks that the test
    can see solver error)."""
    torch.manual_seed(0)
    V, d, B = 6, 3, 2048
    E = F.normalize(torch.randn(V, d), dim=-1)
    net = ExactPosterior(E)
    ids = torch.randint(V, (B, 4), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(B, 4, dtype=torch.bool)
    mask[:, 3] = False
    known = torch.zeros(B, 4, dtype=torch.bool)
    known[:, 0] = True
    b = obj.Batch(ids, mask, mask & ~known, known)
    s = obj.LogSNRSampler(-12, 12, bins=48, adaptive=False)
    exact = 2 * math.log(V)
    t = obj.flow_terms(net, b, Draws.seeded(0, B), sampler=s, steps=32)
    se = float(t["total"].std()) / math.sqrt(B)
    assert float(t["reconstruction"].mean()) < 1e-3 and torch.equal(t["tokens"], torch.full((B,), 2.0))
    assert float(t["total"].mean()) == pytest.approx(exact, abs=4 * se) and se < 0.05
    assert float(t["entropy"].mean()) == pytest.approx(-2 * d / 2 * (1 + math.log(2 * math.pi) - 12 + 2 * math.log(
        float(net.sigma_data()))), abs=0.3)   # -H(q(z0 | w)) over the 2 counted positions
    coarse = obj.flow_terms(net, b, Draws.seeded(0, B), sampler=s, steps=4)
    assert abs(float(coarse["total"].mean()) - exact) > 10 * se


def test_diffusion_lm_and_elbo_objectives_run_and_train_embeddings():
    for objective in ("elbo", "diffusion_lm"):
        net, b = _tiny_net(norm="none"), _batch()
        s = obj.LogSNRSampler(-6, 6, bins=8)
        loss, logs = obj.training_loss(net, b, Draws.seeded(0, 3), objective=objective, sampler=s)
        loss.backward()
        assert torch.isfinite(loss) and net.table.weight.grad.abs().sum() > 0
    assert float(obj.sqrt_logsnr(torch.tensor(0.0))) == pytest.approx(math.log(0.99 / 0.01), rel=1e-3)


def test_local_pretrained_encoder_folder(tmp_path):
    """A local Hugging Face encoder folder (made here from a config: nothing is downloaded) as backbone."""
    from transformers import BertConfig, BertModel
    BertModel(BertConfig(vocab_size=10, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=16), add_pooling_layer=False
              ).save_pretrained(tmp_path / "enc")
    net = TextDenoiserNet(11, embed_dim=8, pretrained=str(tmp_path / "enc"), hidden=999)
    assert net.hidden == 24 and net.adaln is not None
    lg = net(torch.randn(2, 5, 8), torch.zeros(2), attention_mask=torch.ones(2, 5))
    assert lg.shape == (2, 5, 11)
    from multidiff.errors import ConfigError
    with pytest.raises(ConfigError):
        TextDenoiserNet(11, pretrained=str(tmp_path))
