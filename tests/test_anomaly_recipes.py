"""The anomaly recipes end to end with tiny settings, and the anomaly makers they use."""

import json

import numpy as np
import pytest
import torch

from multidiff.modalities.audio import anomalies as audio_anomalies
from multidiff.modalities.text import anomalies as text_anomalies
from script_loader import load_script

torch.set_num_threads(1)


def recipe(name):
    return load_script(f"recipes/{name}.py")


def test_audio_anomalies_are_deterministic_and_sound_like_their_kind():
    for kind in audio_anomalies.MAKERS:
        a, b = audio_anomalies.make_anomaly(kind, 3, 1), audio_anomalies.make_anomaly(kind, 3, 1)
        assert np.array_equal(a, b) and not np.array_equal(a, audio_anomalies.make_anomaly(kind, 3, 2))
        assert a.dtype == np.float32 and 0.3 * 8000 <= len(a) <= 0.9 * 8000 + 1
        assert 0.29 < np.abs(a).max() < 0.81
    # a tone's energy sits in one narrow band; a white-ish noise burst spreads it
    spec = np.abs(np.fft.rfft(audio_anomalies.make_anomaly("tone", 0, 0))) ** 2
    assert np.sort(spec)[-len(spec) // 50:].sum() > 0.9 * spec.sum()
    w = np.arange(10, dtype=np.float32)
    assert np.array_equal(audio_anomalies.time_reversed(torch.from_numpy(w)), w[::-1])
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        audio_anomalies.make_anomaly("siren", 0, 0)


def test_text_anomalies_are_deterministic_and_out_of_order():
    sents = ["the eagle is a pub near the bakers .", "cotto serves cheap italian food in the riverside .", "ok"]
    a, b = text_anomalies.word_shuffled(sents, seed=1), text_anomalies.word_shuffled(sents, seed=1)
    assert a == b and len(a) == 2  # "ok" is too short to shuffle
    for orig, shuf in zip(sents, a):
        assert sorted(orig.split()) == sorted(shuf.split()) and orig != shuf
    for domain in text_anomalies.DOMAINS:
        x = text_anomalies.other_domain(30, domain, seed=2)
        assert x == text_anomalies.other_domain(30, domain, seed=2) != text_anomalies.other_domain(30, domain, seed=3)
        assert len(set(x)) > 20 and all(s.endswith(" .") for s in x)


@pytest.mark.slow
def test_anomaly_audio_recipe_end_to_end(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("net: {channels: 8, channel_mults: [1, 2], attention_levels: [], mid_attention: false}\n"
                   "train: {batch_size: 8, warmup_steps: 2, log_every: 5}\n"
                   "eval: {holdout: 0.2, per_type: 3, reversed: 3, synthetic_per_speaker: 1, batch_size: 32}\n")
    out = tmp_path / "run"
    m = recipe("anomaly_audio").main(["--out", str(out), "--max-steps", "8", "--config", str(cfg),
                                      "--methods", "denoise,contrast,elbo", "--quiet"])
    assert m["conditioning"] == "unconditional" and m["test_normal"] == 10
    assert m["anomaly_counts"] == {"tone": 3, "noise": 3, "click": 3, "notes": 3, "reversed": 3}
    saved = json.loads((out / "metrics.json").read_text())
    for method in ("denoise", "contrast", "elbo"):
        r = saved["methods"][method]
        assert 0 <= r["auroc"] <= 1 and 0 <= r["auprc"] <= 1 and r["items_per_second"] > 0
        assert set(r["per_type"]) == set(m["anomaly_counts"])
    assert (out / "roc.png").stat().st_size > 1000 and "| denoise |" in (out / "report.md").read_text()
    assert (out / "model" / "config.json").is_file() and len(list((out / "anomalies").glob("*.wav"))) == 15

    # the user's own anomalies: sub-folders name the types
    (tmp_path / "mine" / "beeps").mkdir(parents=True)
    audio_anomalies.make_anomaly_set(tmp_path / "mine" / "beeps", per_type=2, kinds=["tone"])
    m2 = recipe("anomaly_audio").main(["--out", str(tmp_path / "run2"), "--normal", str(out / "data"),
                                       "--anomalous", str(tmp_path / "mine"), "--max-steps", "2",
                                       "--config", str(cfg), "--methods", "denoise", "--quiet"])
    assert m2["anomaly_counts"] == {"beeps": 2} and not m2["anomalies_generated"]

    # an already trained model scores a speaker's clips as the normal class; nothing is trained
    m3 = recipe("anomaly_audio").main(["--out", str(tmp_path / "run3"), "--normal", str(out / "data"),
                                       "--model", str(out), "--test-speaker", "bell", "--config", str(cfg),
                                       "--methods", "denoise", "--quiet"])
    assert m3["test_normal"] == 10 and m3["normal_split"] == "speaker 'bell'" and m3["train_steps"] == 8
    assert m3["model"] == str(out) and not (tmp_path / "run3" / "model").exists()
    assert m3["labels"] == "given" and m3["conditioning"] == "unconditional"
    for extra in (["--model", str(out), "--test-speaker", "bell"], []):  # unconditional model / none given
        with pytest.raises(SystemExit, match="class-conditional"):
            recipe("anomaly_audio").main(["--out", str(tmp_path / "run4"), "--normal", str(out / "data"),
                                          "--labels", "best", "--config", str(cfg), "--quiet"] + extra)


@pytest.mark.slow
def test_anomaly_text_recipe_end_to_end(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("net: {embed_dim: 16, hidden: 32, layers: 1, heads: 2}\n"
                   "train: {batch_size: 16, warmup_steps: 2, log_every: 5}\n"
                   "eval: {per_type: 10, repeats: 2, batch_size: 64}\n")
    out = tmp_path / "run"
    m = recipe("anomaly_text").main(["--out", str(out), "--max-steps", "10", "--config", str(cfg), "--quiet"])
    assert m["anomaly_counts"] == {"shuffled": 10, "weather": 10, "reviews": 10}
    assert m["unk_share"]["shuffled"] == 0 and m["unk_share"]["weather"] > 0.3
    r = json.loads((out / "metrics.json").read_text())["methods"]["elbo"]
    assert r["units"] == "bits/token" and 0 <= r["auroc"] <= 1 and set(r["per_type"]) == set(m["anomaly_counts"])
    assert (out / "roc.png").is_file() and "| shuffled |" in (out / "report.md").read_text()

    # an E2E-format file as the normal data, a plain line file as the anomalies
    lines = [ln for ln in (out / "anomalies.txt").read_text().splitlines()]
    (tmp_path / "normal.txt").write_text("\n".join(
        f"name : X{i % 7} | food : Thai||the x{i % 7} serves thai food near the river ." for i in range(80)) + "\n")
    (tmp_path / "odd.txt").write_text("\n".join(ln.split("\t", 1)[1] for ln in lines[:5]) + "\n")
    m2 = recipe("anomaly_text").main(["--out", str(tmp_path / "run2"), "--normal", str(tmp_path / "normal.txt"),
                                      "--anomalous", str(tmp_path / "odd.txt"), "--max-steps", "2",
                                      "--config", str(cfg), "--quiet"])
    assert m2["anomaly_counts"] == {"given": 5} and m2["test_normal"] > 0

    # the trained run's model, given with --model: nothing trained, the same split and the same scores
    m3 = recipe("anomaly_text").main(["--out", str(tmp_path / "run3"), "--normal", str(tmp_path / "normal.txt"),
                                      "--anomalous", str(tmp_path / "odd.txt"), "--model", str(tmp_path / "run2"),
                                      "--config", str(cfg), "--quiet"])
    assert not (tmp_path / "run3" / "model").exists() and m3["train_steps"] == 2
    assert m3["methods"]["elbo"]["mean_score_normal"] == m2["methods"]["elbo"]["mean_score_normal"]
    assert m3["methods"]["elbo"]["auroc"] == m2["methods"]["elbo"]["auroc"]
