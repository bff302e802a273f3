"""HiFi-GAN training: discriminator shapes, the losses against their formulas, a 3-step run that saves in the
official layout and reloads to identical outputs, and the recipe end to end on a handful of clips."""

import json
import math

import pytest
import torch

from multidiff.modalities.audio import hifigan_train as H
from multidiff.modalities.audio.mel import get_preset
from multidiff.modalities.audio.synthetic import make_synthetic_set
from multidiff.modalities.audio.vocoders import HiFiGANVocoder

torch.set_num_threads(1)

TINY_GEN = {"resblock": "2", "upsample_rates": [8, 4, 2], "upsample_kernel_sizes": [16, 8, 4],
            "upsample_initial_channel": 16, "resblock_kernel_sizes": [3, 5],
            "resblock_dilation_sizes": [[1, 2], [2, 6]]}


def _ceil_div(a, b):
    return -(-a // b)


# --- discriminators ----------------------------------------------------------------------------
def test_mpd_shapes_and_official_widths():
    mpd = H.MultiPeriodDiscriminator()  # official widths
    L = 1000
    y, y_hat = torch.randn(2, 1, L), torch.randn(2, 1, L)
    with torch.no_grad():
        rs, gs, frs, fgs = mpd(y, y_hat)
    assert len(rs) == len(gs) == len(frs) == len(fgs) == 5
    for p, r, g, fmap in zip(H.PERIODS, rs, gs, frs):
        h = _ceil_div(L, p)
        for _ in range(4):
            h = _ceil_div(h, 3)  # kernel 5, stride 3, padding 2
        assert r.shape == g.shape == (2, h * p)
        assert [f.shape[1] for f in fmap] == [32, 128, 512, 1024, 1024, 1]
        assert all(f.shape[-1] == p for f in fmap)


def test_msd_shapes_pooling_and_spectral_norm():
    msd = H.MultiScaleDiscriminator(scale=0.125)
    L = 1024
    with torch.no_grad():
        rs, gs, frs, fgs = msd(torch.randn(3, 1, L), torch.randn(3, 1, L))
    assert len(rs) == 3 and all(len(f) == 8 for f in frs)
    lengths = [L, L // 2 + 1, (L // 2 + 1) // 2 + 1]  # AvgPool1d(4, 2, padding=2) between scales
    for n, r in zip(lengths, rs):
        for s in (2, 2, 4, 4):
            n = _ceil_div(n, s)
        assert r.shape == (3, n)
    names = [k for k, _ in msd.discriminators[0].named_parameters()]
    assert any("parametrizations.weight.original" in k for k in names)
    assert "spectral" in type(msd.discriminators[0].convs[0].parametrizations.weight[0]).__name__.lower()
    assert "weightnorm" in type(msd.discriminators[1].convs[0].parametrizations.weight[0]).__name__.lower()
    with torch.no_grad():
        widths = [f.shape[1] for f in H.MultiScaleDiscriminator().discriminators[1](torch.randn(1, 1, 256))[1]]
    assert widths == [128, 128, 256, 512, 1024, 1024, 1024, 1]


# --- losses ------------------------------------------------------------------------------------
def test_losses_equal_their_formulas():
    real = [torch.tensor([1.0, 0.5]), torch.tensor([[0.0, 2.0]])]
    fake = [torch.tensor([0.0, 0.5]), torch.tensor([[1.0, -1.0]])]
    # D: sum_k mean((1 - r)^2) + mean(g^2)
    d = (0 + 0.25) / 2 + (0 + 0.25) / 2 + (1 + 1) / 2 + (1 + 1) / 2
    assert float(H.discriminator_loss(real, fake)) == pytest.approx(d)
    # G: sum_k mean((1 - g)^2)
    assert float(H.generator_loss(fake)) == pytest.approx((1 + 0.25) / 2 + (0 + 4) / 2)
    # feature matching: 2 * sum over discriminators and layers of mean |a - b|
    fr = [[torch.zeros(2, 3), torch.ones(4)], [torch.full((5,), 2.0)]]
    fg = [[torch.ones(2, 3), torch.ones(4)], [torch.full((5,), -1.0)]]
    assert float(H.feature_loss(fr, fg)) == pytest.approx(2 * (1 + 0 + 3))


def test_mel_loss_is_45_times_the_log_mel_l1():
    p = H.loss_preset("speech-8k")
    assert p.f_max is None and p.n_mels == 64  # HiFi-GAN's fmax_for_loss = None
    y = 0.3 * torch.randn(2, 1, 4096, generator=torch.Generator().manual_seed(0))  # no band near the clamp
    assert float(H.mel_loss(y, y, p)) == 0.0
    # halving the amplitude lowers every (unclamped) log-mel by ln 2
    loss = float(H.mel_loss(y, 0.5 * y, p))
    assert loss == pytest.approx(45 * math.log(2), rel=2e-3)
    manual = 45 * (p.log_mel(y[:, 0]) - p.log_mel(0.5 * y[:, 0])).abs().mean()
    assert loss == pytest.approx(float(manual), rel=1e-6)


def test_random_segments_crop_and_pad():
    g = torch.Generator().manual_seed(0)
    waves = [torch.arange(100.0), torch.arange(10.0) + 1000]
    seg = H.random_segments(waves, 32, 16, g)
    assert seg.shape == (16, 1, 32)
    for s in seg[:, 0]:
        if s[0] >= 1000:  # the short wave: itself, then zeros
            assert torch.equal(s[:10], torch.arange(10.0) + 1000) and not s[10:].any()
        else:  # a contiguous crop of the long one
            assert torch.equal(s, torch.arange(32.0) + s[0])


# --- training ----------------------------------------------------------------------------------
def test_three_steps_train_save_and_reload_identically(tmp_path):
    torch.manual_seed(0)
    voc = HiFiGANVocoder(TINY_GEN, "speech-8k")
    trainer = H.GANTrainer(voc, H.GANConfig(discriminator_scale=1 / 64, discriminator_start=1))
    y = torch.sin(torch.arange(2 * 1024).reshape(2, 1, 1024) * 0.3) * 0.5
    d_before = [p.detach().clone() for p in trainer.mpd.parameters()]
    first = trainer.step(y)  # mel-only warm-up: discriminators untouched
    assert set(first) == {"loss_g", "mel_l1"}
    assert all(torch.equal(a, b) for a, b in zip(d_before, trainer.mpd.parameters()))
    g_before = [p.detach().clone() for p in voc.generator.parameters()]
    for _ in range(2):
        losses = trainer.step(y)
    assert set(losses) == {"loss_d", "loss_g", "loss_adv", "loss_fm", "mel_l1"}
    assert all(math.isfinite(v) for v in losses.values())
    assert not all(torch.equal(a, b) for a, b in zip(d_before, trainer.mpd.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(g_before, voc.generator.parameters()))
    trainer.end_epoch()
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.999)

    voc.save_checkpoint(tmp_path / "g_00000003", tmp_path / "config.json")
    assert set(torch.load(tmp_path / "g_00000003", weights_only=True)) == {"generator"}
    mel = get_preset("speech-8k").log_mel(y[0, 0])
    ref = voc.decode(mel)
    a = HiFiGANVocoder.from_checkpoint(tmp_path / "g_00000003")  # config.json beside it; weight norm folded
    b = HiFiGANVocoder.from_checkpoint(tmp_path / "g_00000003", fold_weight_norm=False)
    assert torch.equal(a.decode(mel), HiFiGANVocoder.from_checkpoint(tmp_path / "g_00000003").decode(mel))
    assert torch.equal(b.decode(mel), ref)
    torch.testing.assert_close(a.decode(mel), ref, rtol=0, atol=1e-6)


def test_recipe_runs_saves_and_reports(tmp_path):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "recipes"))
    import vocoder_hifigan

    data = tmp_path / "data"
    make_synthetic_set(data, per_speaker=1, speakers=["flute", "reed"], labels=["rise", "fall", "low"])
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps({"generator": TINY_GEN, "segment_size": 1024, "batch_size": 2,
                               "gan": {"discriminator_scale": 1 / 64}, "log_every": 1,
                               "eval": {"clips": 2, "griffinlim_iters": 2, "rtf_repeats": 1}}))
    out = tmp_path / "run"
    m = vocoder_hifigan.main(["--data", str(data), "--out", str(out), "--max-steps", "3", "--config", str(cfg)])
    assert m["steps"] == 3 and m["held_out"] == "speaker reed" and m["eval_clips"] == 2
    assert (out / "g_00000003").is_file() and (out / "config.json").is_file()
    assert json.loads((out / "metrics.json").read_text())["lsd_griffinlim_db"] == pytest.approx(m["lsd_griffinlim_db"])
    assert "log-spectral distance" in (out / "report.md").read_text()
    assert len((out / "log.jsonl").read_text().splitlines()) == 3
    for k in ("lsd_hifigan_db", "lsd_griffinlim_db", "rtf_hifigan_1thread", "mel_l1_hifigan"):
        assert math.isfinite(m[k]) and m[k] > 0
    voc = HiFiGANVocoder.from_checkpoint(out / "g_00000003")
    assert voc.preset.fingerprint() == get_preset("speech-8k").fingerprint()
    assert voc.config.upsample_initial_channel == 16


def test_recipe_resumes_after_sigterm_to_the_same_generator(tmp_path, monkeypatch):
    import os
    import signal
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "recipes"))
    import vocoder_hifigan

    data = tmp_path / "data"
    make_synthetic_set(data, per_speaker=1, speakers=["flute", "reed"], labels=["rise", "fall", "low"])
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps({"generator": TINY_GEN, "segment_size": 1024, "batch_size": 2, "checkpoint_every": 2,
                               "gan": {"discriminator_scale": 1 / 64}, "log_every": 1,
                               "eval": {"clips": 1, "griffinlim_iters": 1, "rtf_repeats": 1}}))
    run = lambda out, *extra: vocoder_hifigan.main(["--data", str(data), "--out", str(out), "--max-steps", "5",  # noqa: E731
                                                    "--config", str(cfg), *extra])
    run(tmp_path / "straight")

    step = vocoder_hifigan.GANTrainer.step
    def step_then_sigterm(self, y):                    # a SIGTERM arrives during the third step
        out = step(self, y)
        if self.steps == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return out
    monkeypatch.setattr(vocoder_hifigan.GANTrainer, "step", step_then_sigterm)
    m = run(tmp_path / "cut")
    assert m == {"interrupted": "SIGTERM", "steps": 3, "checkpoint": str(tmp_path / "cut" / "g_00000003")}
    assert sorted(p.name for p in (tmp_path / "cut").glob("[gd]*_*")) == ["do_00000003", "g_00000003"]
    monkeypatch.setattr(vocoder_hifigan.GANTrainer, "step", step)
    with pytest.raises(Exception, match="no do_XXXXXXXX"):
        run(tmp_path / "empty", "--resume")
    assert run(tmp_path / "cut", "--resume")["steps"] == 5

    a = torch.load(tmp_path / "straight" / "g_00000005", weights_only=True)["generator"]
    b = torch.load(tmp_path / "cut" / "g_00000005", weights_only=True)["generator"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(x) for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5]
