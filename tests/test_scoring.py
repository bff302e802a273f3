"""multidiff.scoring: per-item scores on the analytic fixtures (exact denoisers), separation metrics on tiny
hand-computed lists, determinism, per-token normalisation for text, and `multidiff score` on bad input."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from analytic import Gaussian, Mixture
from multidiff import scoring
from multidiff.cli import main
from multidiff.run import load
from multidiff.errors import ConfigError
from multidiff.model import DiffusionConfig, DiffusionModel
from multidiff.modalities.base import Encoded
from multidiff.modalities.vector.modality import VectorConfig, VectorModality

torch.set_num_threads(1)
SIGMA_MIN, SIGMA_MAX = 1e-2, 80.0
LN2 = math.log(2)


def analytic_model(denoiser, dims: int, contrast: bool = True) -> DiffusionModel:
    """A real DiffusionModel on raw vectors (no standardisation) whose denoiser is the exact one; with
    `contrast`, the modality's contrast transform reverses the order of the coordinates."""
    modality = VectorModality(VectorConfig(standardize=False))
    modality.prepare([np.zeros(dims, np.float32), np.ones(dims, np.float32)])
    model = DiffusionModel(modality, {"hidden": 8, "depth": 1},
                           DiffusionConfig(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, sigma_data=1.0))
    model.denoiser = lambda net=None: denoiser  # the exact D(x, sigma) replaces the network
    if contrast:
        modality.contrast = lambda b: Encoded(b.x0.flip(-1), None, dict(b.cond))
    return model


def ranks(v) -> torch.Tensor:
    return torch.argsort(torch.argsort(torch.as_tensor(v, dtype=torch.float64))).double()


def spearman(a, b) -> float:
    return float(torch.corrcoef(torch.stack([ranks(a), ranks(b)]))[0, 1])


def kendall(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    s = torch.sign(a[:, None] - a[None]) * torch.sign(b[:, None] - b[None])
    n = len(a)
    return float(s.sum() / (n * (n - 1)))


MIX = Mixture([0.3, 0.7], [[-1.5, 0.0], [1.5, 0.5]], [0.5, 0.3])


def mixture_points():
    """Typical points plus a few between and beyond the modes (a wide range of densities)."""
    x, _ = MIX.sample(40, torch.Generator().manual_seed(0))
    extra = torch.tensor([[0.0, 0.2], [3.0, -1.0], [-3.0, 2.0], [0.5, 1.5], [2.5, 0.5], [-0.5, -1.0]])
    return torch.cat([x, extra])


# ------------------------------------------------------------------------------- analytic fixtures
def test_ode_scores_are_the_exact_density_in_bits_per_dim():
    """Gaussian data: the PF-ODE Jacobian is a multiple of the identity, so even Hutchinson's one-probe
    trace is exact and the score is -log2 p(x) / dims up to the solver's error."""
    g = Gaussian(mu=0.3, std=0.5)
    x = g.sample((64, 8), torch.Generator().manual_seed(1)) * torch.linspace(0.5, 3, 64)[:, None]
    s = scoring.score_items(analytic_model(g.denoiser, 8), list(x.numpy()), "ode", seed=0)
    exact = (-g.log_prob(x, sigma=SIGMA_MIN) / (8 * LN2)).tolist()
    assert max(abs(a - b) for a, b in zip(s, exact)) < 0.03
    assert spearman(s, exact) > 0.999


def test_ode_ranks_mixture_points_by_density():
    """On the mixture the one-probe trace is noisy near the boundary between the modes (up to ~1 bit/dim
    for single points), yet the ranking holds; averaging seeds tightens it."""
    x = mixture_points()
    model = analytic_model(MIX.denoiser, 2)
    exact = (-MIX.log_prob(x.double(), sigma=SIGMA_MIN) / (2 * LN2)).tolist()
    runs = [scoring.score_items(model, list(x.numpy()), "ode", seed=100 * k, batch_size=16) for k in range(4)]
    assert all(spearman(r, exact) > 0.95 and kendall(r, exact) > 0.83 for r in runs)
    mean = np.mean(runs, 0)
    assert spearman(mean, exact) > 0.98 and kendall(mean, exact) > 0.9
    assert np.abs(mean - exact).mean() < 0.15
    assert scoring.units(model, "ode") == "bits/dim"


def test_elbo_bounds_the_exact_nll_and_ranks_by_density():
    """The bound's estimate is noisy per item (about 1 bit/dim here: the diffusion integral is a large
    quantity estimated from 16 draws), so the bound is checked on means over 1024 items (standard error
    ~0.035 bits/dim) and the ranking on points whose densities differ by several bits/dim."""
    g = Gaussian(mu=0.3, std=0.5)
    x = g.sample((1024, 8), torch.Generator().manual_seed(1))
    exact = -g.log_prob(x, sigma=SIGMA_MIN) / (8 * LN2)            # bits/dim per item
    right = torch.tensor(scoring.score_items(analytic_model(g.denoiser, 8), list(x.numpy()), "elbo", seed=0))
    wrong = torch.tensor(scoring.score_items(analytic_model(Gaussian(mu=0.3, std=0.8).denoiser, 8),
                                             list(x.numpy()), "elbo", seed=0))
    assert abs(float((right - exact).mean())) < 0.1     # exact denoiser: tight within Monte Carlo noise
    assert float((wrong - right).mean()) > 0.15          # a wrong model pays for it: an upper bound
    spread = g.sample((64, 8), torch.Generator().manual_seed(1)) * torch.linspace(0.5, 3, 64)[:, None]
    s = scoring.score_items(analytic_model(g.denoiser, 8), list(spread.numpy()), "elbo", seed=0)
    assert spearman(s, -g.log_prob(spread)) > 0.8


@pytest.mark.parametrize("sigmas", [scoring.DENOISE_SIGMAS, (1.0, 2.0)])
def test_denoise_score_matches_its_expectation_per_dimension(sigmas):
    """For N(mu, S^2) and the exact denoiser, E||D(x0 + s eps, s) - x0||^2 / s^2 per dimension is
    (S^4 + s^2 r^2) / (S^2 + s^2)^2 with r = x0 - mu: it grows with the distance from the mean. Checked for
    the default noise levels and a user's own."""
    g = Gaussian(mu=0.3, std=0.5)
    model = analytic_model(g.denoiser, 16)
    for r in (0.0, 0.5, 1.5):
        item = np.full(16, g.mu + r, np.float32)
        s = scoring.score_items(model, [item] * 64, "denoise", seed=3, batch_size=64, sigmas=sigmas)
        expected = np.mean([(g.std ** 4 + sig ** 2 * r ** 2) / (g.std ** 2 + sig ** 2) ** 2 for sig in sigmas])
        assert abs(np.mean(s) - expected) < 0.03 * expected + 0.01, (r, np.mean(s), expected)


def test_denoise_noise_levels_must_be_positive():
    model = analytic_model(Gaussian().denoiser, 2)
    for bad in ([], [1.0, 0.0], [-0.5]):
        with pytest.raises(ConfigError, match="noise levels"):
            scoring.score_items(model, [np.zeros(2, np.float32)], "denoise", sigmas=bad)


def expected_denoise_error(x0: np.ndarray, std: np.ndarray, sigmas) -> float:
    """E||D(x0 + s eps, s) - x0||^2 / s^2 per dimension for N(0, diag(std^2)) and its exact denoiser, averaged
    over the noise levels: per coordinate (S^4 + s^2 x^2) / (S^2 + s^2)^2."""
    return float(np.mean([np.mean((std ** 4 + s ** 2 * x0 ** 2) / (std ** 2 + s ** 2) ** 2) for s in sigmas]))


def test_contrast_score_matches_its_closed_form_and_flags_reversed_items():
    """N(0, diag(S^2)) with S rising along the axis: items drawn from it and their reversals. With 512
    dimensions the error averages concentrate, so each item's contrast score is close to
    log E(x) + w (log E(x) - log E(T x)) with E the closed-form expected error, and every reversed item
    scores above every normal one."""
    dims, sigmas, w = 512, (0.2, 1.0), 4.0
    std = np.linspace(0.2, 2.0, dims)
    model = analytic_model(Gaussian(mu=0.0, std=torch.tensor(std, dtype=torch.float32)).denoiser, dims)
    rng = np.random.default_rng(0)
    normal = [(std * rng.standard_normal(dims)).astype(np.float32) for _ in range(24)]
    flipped = [x[::-1].copy() for x in normal]
    s_norm = scoring.score_items(model, normal, "contrast", seed=1, sigmas=sigmas, contrast_weight=w)
    s_flip = scoring.score_items(model, flipped, "contrast", seed=1, sigmas=sigmas, contrast_weight=w)
    for x, got in zip(normal + flipped, s_norm + s_flip):
        own, other = math.log(expected_denoise_error(x, std, sigmas)), math.log(
            expected_denoise_error(x[::-1], std, sigmas))
        assert got == pytest.approx(own + w * (own - other), abs=0.1 * (1 + w)), (got, own, other)
    assert scoring.auroc(s_norm, s_flip) == 1.0


def test_contrast_of_a_symmetric_item_is_its_log_denoise_error():
    """T x = x: both terms use the same noise draws, so the ratio is exactly 1 and the score log e(x)."""
    model = analytic_model(Gaussian(mu=0.0, std=0.7).denoiser, 8)
    items = [np.array([1, 2, 3, 4, 4, 3, 2, 1], np.float32) * k for k in (0.1, 0.5, 2.0)]
    c = scoring.score_items(model, items, "contrast", seed=4, contrast_weight=3.0)
    d = scoring.score_items(model, items, "denoise", seed=4, sigmas=scoring.CONTRAST_SIGMAS)
    assert c == pytest.approx([math.log(v) for v in d], abs=1e-5)


def test_contrast_needs_a_modality_with_a_contrast_transform():
    model = analytic_model(Gaussian().denoiser, 2, contrast=False)
    with pytest.raises(ConfigError, match="contrast"):
        scoring.score_items(model, [np.zeros(2, np.float32)], "contrast")


def test_scores_are_deterministic_for_a_seed():
    x = list(mixture_points().numpy())
    model = analytic_model(MIX.denoiser, 2)
    for method in scoring.METHODS:
        a = scoring.score_items(model, x, method, seed=5, batch_size=16)
        b = scoring.score_items(model, x, method, seed=5, batch_size=16)
        assert a == b, method
    assert scoring.score_items(model, x, "elbo", seed=6) != scoring.score_items(model, x, "elbo", seed=5)
    with pytest.raises(ConfigError, match="unknown scoring method"):
        scoring.score_items(model, x, "likelihood")


# ------------------------------------------------------------------------------- metrics by hand
NORMAL = [0.1, 0.4, 0.35, 0.8]
ANOMALOUS = [0.35, 0.9, 0.8]


def test_auroc_counts_ties_half():
    # pairs (anomaly > normal): 0.35 -> 1 + 0.5 (tie), 0.9 -> 4, 0.8 -> 3 + 0.5 (tie): 9 of 12
    assert scoring.auroc(NORMAL, ANOMALOUS) == pytest.approx(9 / 12)
    assert scoring.auroc([0.5, 0.1], [0.5, 0.5, 0.9]) == pytest.approx(5 / 6)
    assert scoring.auroc([1, 2], [3, 4]) == 1.0 and scoring.auroc([3, 4], [1, 2]) == 0.0
    assert scoring.auroc([1, 1], [1, 1, 1]) == 0.5
    with pytest.raises(ConfigError):
        scoring.auroc([], [1.0])


def test_auprc_by_hand():
    # thresholds 0.9: P 1, R 1/3; 0.8: P 2/3, R 2/3; 0.35: P 1/2, R 1 -> AP = (1 + 2/3 + 1/2) / 3
    assert scoring.auprc(NORMAL, ANOMALOUS) == pytest.approx(13 / 18)
    assert scoring.auprc([0.1, 0.2], [0.8, 0.9]) == 1.0
    # anomalies all below the normals: precision 1/3 and 2/4 at the two hits
    assert scoring.auprc([0.8, 0.9], [0.1, 0.2]) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_auprc_treats_a_tie_group_as_one_threshold():
    # 0.9 (a) | 0.5 (n, a, a) | 0.1 (n): thresholds 0.9: P 1, R 1/3; 0.5: P 3/4, R 1 -> 1/3 + 2/3 * 3/4
    assert scoring.auprc([0.5, 0.1], [0.5, 0.5, 0.9]) == pytest.approx(5 / 6)


def test_threshold_and_tpr_at_fpr_by_hand():
    normal = list(range(1, 11))                      # 1 .. 10
    assert scoring.threshold_at_fpr(normal, 0.1) == 9     # flags only 10: 10%
    assert scoring.threshold_at_fpr(normal, 0.05) == 10   # may flag none
    assert scoring.threshold_at_fpr(normal, 0.0) == 10
    assert scoring.threshold_at_fpr(normal, 0.25) == 8    # floor(2.5) = 2 flagged
    tied = [1, 2, 2, 2, 3]
    assert scoring.threshold_at_fpr(tied, 0.2) == 2       # flags 3 only
    assert scoring.threshold_at_fpr(tied, 0.4) == 2       # a lower threshold would flag the three 2s (80%)
    assert scoring.threshold_at_fpr(tied, 0.8) == 1       # four flagged: 80%
    # an anomaly equal to the threshold is not flagged (score > threshold)
    assert scoring.tpr_at_fpr(tied, [2, 2.5, 3, 9], 0.4) == 0.75
    assert scoring.tpr_at_fpr(normal, [9, 9.5, 11], 0.1) == pytest.approx(2 / 3)
    for fpr in (-0.1, 1.0):
        with pytest.raises(ConfigError):
            scoring.threshold_at_fpr(normal, fpr)


def test_roc_curve_by_hand_and_its_area_is_the_auroc():
    f, t = scoring.roc_curve([0.5, 0.1], [0.5, 0.5, 0.9])
    assert f == [0, 0, 0.5, 1] and t == pytest.approx([0, 1 / 3, 1, 1])
    for normal, anomalous in [(NORMAL, ANOMALOUS), ([0.5, 0.1], [0.5, 0.5, 0.9]), ([1, 2, 2, 3], [2, 3, 3, 0])]:
        f, t = scoring.roc_curve(normal, anomalous)
        area = sum((f[i + 1] - f[i]) * (t[i + 1] + t[i]) / 2 for i in range(len(f) - 1))
        assert area == pytest.approx(scoring.auroc(normal, anomalous))
    sep = scoring.separation(NORMAL, ANOMALOUS)
    assert set(sep) == {"auroc", "auprc", "tpr_at_1pct_fpr"} and sep["tpr_at_1pct_fpr"] == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------- text: per token
def test_text_scores_are_per_token():
    """The same sentence three times in one item: bits/token stay within noise, bits/item triple."""
    from multidiff.model import build_modality
    from multidiff.modalities.text import corpus

    modality = build_modality("text", {"max_len": 64})
    modality.prepare(corpus.parse_examples(corpus.synthetic_corpus(num_mrs=60, seed=0)))
    torch.manual_seed(0)
    model = DiffusionModel(modality, {"embed_dim": 16, "hidden": 32, "layers": 1, "heads": 2}, DiffusionConfig())
    model.eval()
    sentence = "the eagle is a cheap coffee shop near burger king in the riverside ."
    longer = " ".join([sentence] * 3)
    # interleaved, so both items get the same spread of the bound's stratified logSNR draws
    n = 64
    s = np.array(scoring.score_items(model, [sentence, longer] * n, "elbo", seed=0, batch_size=2 * n))
    short, long = s[0::2], s[1::2]
    noise = (short - long).std() / math.sqrt(n)  # standard error of the mean paired difference
    assert abs(short.mean() - long.mean()) < max(3 * noise, 0.03 * short.mean()), (short.mean(), long.mean(), noise)
    assert scoring.units(model, "elbo") == "bits/token"
    batch = modality.encode([sentence, longer])
    tokens = model.units_per_item(batch)
    assert tokens.tolist() == [14 + 1, 42 + 1]  # words + EOS
    # per item (not per token), the longer item costs about three times as much
    assert 2.5 < (long.mean() * 43) / (short.mean() * 15) < 3.5


# ------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def vector_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("score")
    rng = np.random.default_rng(0)
    np.save(d / "train.npy", rng.normal(0, 1, (256, 3)).astype(np.float32))
    np.save(d / "val.npy", rng.normal(0, 1, (50, 3)).astype(np.float32))
    assert main(["train", "recipes/configs/vector.yaml", "--out", str(d / "run"), "--max-steps", "20",
                 "--batch-size", "64", "--quiet", "--set", f"data.path={d / 'train.npy'}",
                 "--set", "net.hidden=16", "--set", "net.depth=1"]) == 0
    return d


def test_cli_score_lists_unreadable_rows_and_scores_the_rest(vector_run, capsys):
    d = vector_run
    (d / "mixed.csv").write_text("a,b,c\n0.1,0.2,0.3\n1,two,3\n0.5,0.5\n4,5,6\nnan,0,0\n-1,0,1\n")
    rc = main(["score", str(d / "run"), "--data", str(d / "mixed.csv"), "--out", str(d / "scores.csv"),
               "--method", "denoise", "--calibrate", str(d / "val.npy"), "--fpr", "0.1"])
    assert rc == 0
    assert "3 unreadable" in capsys.readouterr().out
    rows = list(csv.DictReader(open(d / "scores.csv")))
    scored = [r for r in rows if r["score"]]
    bad = {r["item"]: r["error"] for r in rows if not r["score"]}
    assert len(scored) == 3 and all(math.isfinite(float(r["score"])) and r["error"] == "" for r in scored)
    assert all(r["method"] == "denoise" and r["units"] == "mse/dim" and r["anomalous"] in ("0", "1")
               for r in scored)
    assert bad == {"line 3": "has a non-numeric cell", "line 4": "has 2 columns, expected 3",
                   "line 6": "contains NaN or Inf"}
    assert [r["item"] for r in scored] == ["line 2", "line 5", "line 7"]  # rows named as they are in the file
    # the far-away row (4, 5, 6) is the most anomalous and is flagged
    assert max(scored, key=lambda r: float(r["score"]))["anomalous"] == "1"
    th = json.loads((d / "scores.threshold.json").read_text())
    assert th["fpr"] == 0.1 and th["method"] == "denoise" and th["units"] == "mse/dim"
    assert all(int(r["anomalous"]) == int(float(r["score"]) > th["threshold"]) for r in scored)


def test_cli_score_is_deterministic(vector_run):
    d = vector_run
    outs = []
    for i in range(2):
        assert main(["score", str(d / "run"), "--data", str(d / "val.npy"), "--out", str(d / f"s{i}.csv"),
                     "--method", "elbo", "--seed", "7"]) == 0
        outs.append((d / f"s{i}.csv").read_text())
    assert outs[0] == outs[1] and outs[0].count("\n") == 51


def test_cli_score_labels_on_an_unconditional_model_is_a_clear_error(vector_run, capsys):
    d = vector_run
    assert main(["score", str(d / "run"), "--data", str(d / "val.npy"), "--out", str(d / "s.csv"),
                 "--method", "denoise", "--labels", "best"]) == 2
    assert "class-conditional" in capsys.readouterr().err and not (d / "s.csv").exists()
    assert main(["score", str(d / "run"), "--data", str(d / "val.npy"), "--out", str(d / "s.csv"),
                 "--method", "denoise", "--sigmas", "1,two"]) == 2
    assert "--sigmas" in capsys.readouterr().err
    assert main(["score", str(d / "run"), "--data", str(d / "val.npy"), "--out", str(d / "s.csv"),
                 "--method", "contrast"]) == 2  # vectors have no contrast transform
    assert "contrast" in capsys.readouterr().err and not (d / "s.csv").exists()


def test_cli_score_sigmas_set_the_denoise_noise_levels(vector_run):
    """`--sigmas 1,2` gives what score_items gives with those levels (and not the defaults' scores)."""
    d = vector_run
    assert main(["score", str(d / "run"), "--data", str(d / "val.npy"), "--out", str(d / "s12.csv"),
                 "--method", "denoise", "--sigmas", "1,2", "--calibrate", str(d / "val.npy")]) == 0
    got = [float(r["score"]) for r in csv.DictReader(open(d / "s12.csv"))]
    model = load(d / "run")
    items, _ = model.modality.read(d / "val.npy")
    assert got == pytest.approx(scoring.score_items(model, items, "denoise", sigmas=[1.0, 2.0]), rel=1e-5)
    assert got != pytest.approx(scoring.score_items(model, items, "denoise"), rel=1e-3)
    assert json.loads((d / "s12.threshold.json").read_text())["sigmas"] == [1.0, 2.0]


def test_auprc_matches_scikit_learn_with_many_ties():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is in the dev extra")
    rng = np.random.default_rng(0)
    for _ in range(20):
        normal = rng.integers(0, 6, size=int(rng.integers(1, 30))).tolist()      # few distinct values: ties
        anomalous = rng.integers(2, 9, size=int(rng.integers(1, 30))).tolist()
        ref = metrics.average_precision_score([0] * len(normal) + [1] * len(anomalous), normal + anomalous)
        assert scoring.auprc(normal, anomalous) == pytest.approx(ref, abs=1e-12)


def test_denoise_score_on_text_says_to_use_elbo():
    from multidiff.modalities.text import TextModality, synthetic_corpus
    text = TextModality()
    lines = synthetic_corpus(num_mrs=5, refs_per_mr=1, seed=0)
    text.prepare(lines)
    model = DiffusionModel(text, {"embed_dim": 8, "hidden": 16, "layers": 1, "heads": 2})
    with pytest.raises(ConfigError, match="elbo"):
        scoring.score_batch(model, text.encode(lines[:2]), "denoise")


# ------------------------------------------------------------------------------- label modes
class TwoClasses:
    """A class-conditional model with exact denoisers: label c -> Gaussian component c, label 2 (the null
    label) or no label -> their equal-weight mixture (what a classifier-free-guidance model's branches learn)."""

    def __init__(self, dims: int):
        self.means, self.stds = [-1.0, 1.5], [0.5, 0.3]
        self.parts = [Mixture([1.0], [[m] * dims], [s]) for m, s in zip(self.means, self.stds)]
        self.mixture = Mixture([0.5, 0.5], [[m] * dims for m in self.means], self.stds)

    def denoiser(self, x, sigma, label=None, **_):
        out = self.mixture.denoiser(x, sigma)
        for c, part in enumerate(self.parts):
            pick = label == c if label is not None else torch.zeros(len(x), dtype=torch.bool)
            if pick.any():
                out[pick] = part.denoiser(x[pick], sigma[pick])
        return out

    def model(self, dims: int) -> DiffusionModel:
        model = analytic_model(self.denoiser, dims)
        model.modality.num_classes = 2
        model.modality.null_cond = lambda: {"label": 2}
        return model


def test_best_label_denoise_score_is_the_nearest_class_expectation():
    """labels='best' keeps the lower of the two class-conditional errors; with exact denoisers each has the
    closed form of the single-Gaussian test, so the score is the smaller expectation, point by point."""
    dims = 16
    two = TwoClasses(dims)
    model = two.model(dims)

    def expected(x0: float, mean: float, std: float) -> float:
        r = x0 - mean
        return float(np.mean([(std ** 4 + s ** 2 * r ** 2) / (std ** 2 + s ** 2) ** 2 for s in scoring.DENOISE_SIGMAS]))

    for x0 in (-1.0, -0.3, 0.4, 1.5, 2.5):
        s = scoring.score_items(model, [np.full(dims, x0, np.float32)] * 64, "denoise", seed=3, batch_size=64,
                                labels="best")
        want = min(expected(x0, m, sd) for m, sd in zip(two.means, two.stds))
        assert abs(np.mean(s) - want) < 0.05 * want + 0.01, (x0, np.mean(s), want)


def test_best_label_elbo_is_an_upper_bound_between_the_class_nlls_and_the_mixture():
    """-log p(x) <= min_c -log p(x|c) + log 2 for an equal-weight mixture: on 512 mixture draws the mean
    'best' bound is >= the exact mixture NLL and equals min_c NLL + 1 bit within Monte Carlo noise; the
    'null' bound (the mixture branch) matches the exact mixture NLL."""
    dims = 4
    two = TwoClasses(dims)
    model = two.model(dims)
    x, _ = two.mixture.sample(512, torch.Generator().manual_seed(2))
    items = list(x.numpy())
    exact = -two.mixture.log_prob(x, sigma=SIGMA_MIN) / (dims * LN2)
    per_class = torch.stack([-p.log_prob(x, sigma=SIGMA_MIN) for p in two.parts]) / (dims * LN2)
    best = torch.tensor(scoring.score_items(model, items, "elbo", seed=0, batch_size=128, labels="best"))
    null = torch.tensor(scoring.score_items(model, items, "elbo", seed=0, batch_size=128, labels="null"))
    assert float((best - exact).mean()) > -0.1
    assert abs(float((best - (per_class.min(0).values + 1 / dims)).mean())) < 0.1
    assert abs(float((null - exact).mean())) < 0.1


def test_label_modes_need_a_class_conditional_model():
    model = analytic_model(Gaussian().denoiser, 2)
    x = [np.zeros(2, np.float32)]
    for mode in ("null", "best"):
        with pytest.raises(ConfigError, match="class-conditional"):
            scoring.score_items(model, x, "denoise", labels=mode)
    with pytest.raises(ConfigError, match="label mode"):
        scoring.score_items(model, x, "denoise", labels="all")
