"""The text recipes end to end with tiny settings (slow: each trains a few steps and evaluates)."""

import json

import pytest
import torch

from multidiff.cli import main as cli_main
from multidiff.errors import CheckpointError
from multidiff.model import DiffusionModel, build_modality
from multidiff.modalities.text import synthetic_corpus
from multidiff.modalities.text.evaluate import bound_per_token
from script_loader import load_script

def _load(name, folder="recipes"):
    """The script `folder/name.py` (a recipe or a benchmark) as a module."""
    return load_script(f"{folder}/{name}.py")


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text("net: {hidden: 16, layers: 1, heads: 2, embed_dim: 8}\n"
                 "train: {batch_size: 16, warmup_steps: 1}\n"
                 "eval: {samples: 8, bound_repeats: 1, curve_every: 3, mbr: 1, judge: {layers: 1, hidden: 16, heads: 2}}\n")
    return p


@pytest.mark.slow
def test_unconditional_resume_continues_the_same_run(tmp_path, tiny):
    """Stopped at step 2 and resumed to 4 = trained to 4 at once (constant lr): same curve, same weights."""
    cfg = tmp_path / "resume.yaml"
    cfg.write_text(tiny.read_text().replace("curve_every: 3", "curve_every: 2")
                   .replace("warmup_steps: 1", "warmup_steps: 0, lr_schedule: constant"))
    ar = tmp_path / "ar"
    assert _load("text_ar_baseline").main(["--out", str(ar), "--max-steps", "2", "--config", str(cfg), "--quiet"]) == 0
    recipe = _load("text_unconditional")
    run = lambda out, steps, *more: recipe.main(["--out", str(out), "--max-steps", str(steps), "--config", str(cfg),
                                                  "--judge", str(ar / "model"), "--quiet", *more])
    with pytest.raises(SystemExit, match="no checkpoint"):
        run(tmp_path / "empty", 4, "--resume")
    assert run(tmp_path / "once", 4) == 0 and run(tmp_path / "twice", 2) == 0
    other = tmp_path / "other.yaml"                   # settings the checkpoint would silently override
    other.write_text(cfg.read_text() + "modality_options: {objective: elbo}\n")
    for more, match in ((["--config", str(other)], "modality_options.objective 'score_interp'"),
                        (["--seed", "1"], "--seed 0"), (["--data", str(tiny)], "--data None")):
        with pytest.raises(SystemExit, match=match):
            run(tmp_path / "twice", 4, "--resume", *more)
    assert json.loads((tmp_path / "twice" / "metrics.json").read_text())["train_steps"] == 2   # untouched
    assert run(tmp_path / "twice", 4, "--resume") == 0
    once, twice = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("once", "twice"))
    assert [c["step"] for c in twice["curve"]] == [2, 4] and twice["train_steps"] == 4
    assert [c["bound"] for c in twice["curve"]] == pytest.approx([c["bound"] for c in once["curve"]], abs=1e-6)
    a, b = (DiffusionModel.from_pretrained(tmp_path / d / "model") for d in ("once", "twice"))
    for (name, p), q in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6), name


@pytest.mark.slow
def test_unconditional_init_starts_a_new_run_from_saved_weights(tmp_path, tiny):
    """--init: a new run (step 0) from the saved EMA weights (a 1e-12 learning rate leaves the parameters as
    they were) with the objective of --config in force; refusals for another seed, network or layout settings."""
    ar = tmp_path / "ar"
    assert _load("text_ar_baseline").main(["--out", str(ar), "--max-steps", "2", "--config", str(tiny), "--quiet"]) == 0
    recipe = _load("text_unconditional")
    run = lambda out, cfg, *more: recipe.main(["--out", str(out), "--max-steps", "2", "--config", str(cfg),
                                               "--judge", str(ar / "model"), "--quiet", *more])
    assert run(tmp_path / "base", tiny) == 0
    base = tmp_path / "base" / "model"
    ft = tmp_path / "ft.yaml"
    ft.write_text(tiny.read_text().replace("warmup_steps: 1", "warmup_steps: 0, lr: 1.0e-12, lr_schedule: constant")
                  + "modality_options: {objective: elbo, ce_weight: 0.0}\n")
    assert run(tmp_path / "ft", ft, "--init", str(base)) == 0
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert m["train_steps"] == 2 and [c["step"] for c in m["curve"]] == [2]
    start, tuned = DiffusionModel.from_pretrained(base), DiffusionModel.from_pretrained(tmp_path / "ft", ema=False)
    assert tuned.modality.config.objective == "elbo" and start.modality.config.objective == "score_interp"
    for (name, p), q in zip(start.net.named_parameters(), tuned.net.parameters()):   # (the logSNR fit adapts on)
        assert torch.allclose(p, q, atol=1e-6), name
    with pytest.raises(SystemExit, match="--seed 0"):
        run(tmp_path / "x", ft, "--init", str(base), "--seed", "1")
    with pytest.raises(SystemExit, match="give one"):
        run(tmp_path / "ft", ft, "--init", str(base), "--resume")
    for bad, match in (("net: {layers: 2}\n", "keeps the saved network"),
                       ("modality_options: {max_len: 9}\n", "max_len cannot change")):
        (tmp_path / "bad.yaml").write_text(bad)
        with pytest.raises(SystemExit, match=match):
            run(tmp_path / "x", tmp_path / "bad.yaml", "--init", str(base))


@pytest.mark.slow
def test_unconditional_and_ar_recipes(tmp_path, tiny):
    out = tmp_path / "u"
    assert _load("text_unconditional").main(["--out", str(out), "--max-steps", "3", "--config", str(tiny),
                                             "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["bound"]["nats_per_token"] > 0 and m["ar_nll_nats_per_token"] > 0
    assert len((out / "samples.txt").read_text().splitlines()) == 8
    assert (out / "model" / "config.json").is_file() and (out / "report.md").is_file()
    # the curve's last point (the Trainer's EMA eval copy) is the saved model's bound for the same draws
    model = DiffusionModel.from_pretrained(out / "model")
    _, test, _ = _load("text_unconditional").read_examples(model.modality, None, 0)
    final = bound_per_token(model.modality, model.net.eval(), model.modality.encode(test), repeats=1, seed=0)
    (point,) = m["curve"]
    assert point["step"] == 3 and abs(point["bound"] - final["nats_per_token"]) < 1e-5
    assert point["ratio"] == pytest.approx(point["bound"] / point["ar_nll"])
    ar = tmp_path / "ar"
    assert _load("text_ar_baseline").main(["--out", str(ar), "--max-steps", "3", "--config", str(tiny),
                                           "--quiet"]) == 0
    ar_metrics = json.loads((ar / "metrics.json").read_text())
    assert ar_metrics["test_nll_nats_per_token"] > 0
    assert ar_metrics["read_counts"]["tokens"] == m["read_counts"]["tokens"] > 0   # same split, same counts
    assert "lines" not in m["read_counts"]      # the embedded corpus is made, not read: no file counts of 0
    # with the banned ids left out, given-length samples have every word asked for (a word tokenizer)
    ban = _load("text_banned_mass", "benchmarks").with_and_without_ban(model, 16, 9, "euler")
    assert ban["shorter_banned"] == 0 and ban["differ"] >= ban["shorter_allowed"]
    # the posterior mass on banned ids is taken at every word of the sentences (one target position each)
    (mass,) = _load("text_banned_mass", "benchmarks").banned_mass(model, test[:3], [1.0])
    assert mass["positions"] == sum(len(model.modality.tokenizer.encode(e.text)) for e in test[:3])
    assert 0 < mass["mean"] <= mass["max"] < 1
    with pytest.raises(CheckpointError, match="no AR judge"):    # a bad --judge fails before any training
        _load("text_unconditional").main(["--out", str(tmp_path / "j"), "--max-steps", "2", "--config", str(tiny),
                                          "--judge", str(tmp_path), "--quiet"])
    assert not (tmp_path / "j" / "model").exists()
    out2 = tmp_path / "u2"                                    # reuse the AR model as the judge
    assert _load("text_unconditional").main(["--out", str(out2), "--max-steps", "2", "--config", str(tiny),
                                             "--judge", str(ar / "model"), "--quiet"]) == 0

    # quality vs NFE on the trained run (benchmarks/quality_vs_nfe_trained.py): settings and seeds as asked
    bench = _load("quality_vs_nfe_trained", "benchmarks")
    data = tmp_path / "corpus.txt"
    data.write_text("\n".join(synthetic_corpus(seed=0)))
    for i in (1, 2):
        assert bench.main(["text", "--run", str(out), "--data", str(data), "--n", "6", "--methods", "euler,heun",
                           "--budgets", "4", "--extra", "ddpm:4", "--threads", "1",
                           "--json", str(tmp_path / f"q{i}.json")]) == 0
    q1, q2 = (json.loads((tmp_path / f"q{i}.json").read_text()) for i in (1, 2))
    q4 = tmp_path / "q4.json"                 # another sampling seed: other samples, the run's own real split
    assert bench.main(["text", "--run", str(out), "--data", str(data), "--n", "6", "--methods", "euler",
                       "--budgets", "4", "--extra", "", "--threads", "1", "--seed", "1", "--json", str(q4)]) == 0
    q4 = json.loads(q4.read_text())
    assert q4["floors"]["judge_ppl_real"] == q1["floors"]["judge_ppl_real"]
    assert q4["rows"][0]["judge_ppl"] != q1["rows"][0]["judge_ppl"]
    assert [(r["method"], r["nfe"], r["steps"]) for r in q1["rows"]] == [("euler", 4, 4), ("heun", 4, 2), ("ddpm", 4, 4)]
    assert [r["judge_ppl"] for r in q1["rows"]] == [r["judge_ppl"] for r in q2["rows"]]  # same seeds, same samples
    assert all(r["judge_ppl"] > 1 and r["distinct_2_ratio"] > 0 for r in q1["rows"])
    q3 = tmp_path / "q3.json"                 # --temperature reaches the sampler: other samples, same seeds
    assert bench.main(["text", "--run", str(out), "--data", str(data), "--n", "6", "--methods", "euler",
                       "--budgets", "4", "--extra", "", "--threads", "1", "--temperature", "0.2", "--json", str(q3)]) == 0
    assert json.loads(q3.read_text())["rows"][0]["judge_ppl"] != q1["rows"][0]["judge_ppl"]

    # many bound estimates on the same run: the run's own split and seeds, the error over the estimates
    tbe = _load("text_bound_estimates", "benchmarks")
    assert tbe.main(["--run", str(out), "--data", str(data), "--estimates", "3", "--ar-nll", "2.0",
                     "--json", str(tmp_path / "b.json")]) == 0
    b = json.loads((tmp_path / "b.json").read_text())
    direct = bound_per_token(model.modality, model.net.eval(), model.modality.encode(test), repeats=3, seed=0)
    held = b["rows"]["held_out"]
    assert held["sentences"] == len(test) and held["nats_per_token"] == pytest.approx(direct["nats_per_token"])
    assert held["standard_error"] == pytest.approx(direct["nats_per_token_se"]) and held["standard_error"] > 0
    assert b["ratio"] == pytest.approx(held["nats_per_token"] / 2.0)
    assert tbe.main(["--run", str(out), "--data", str(data), "--estimates", "2", "--method", "ode", "--ode-steps",
                     "3", "--held-out-only", "--json", str(tmp_path / "f.json")]) == 0    # the flow bound
    f = json.loads((tmp_path / "f.json").read_text())
    flow = bound_per_token(model.modality, model.net.eval(), model.modality.encode(test), repeats=2, seed=0,
                           method="ode", ode_steps=3)
    assert list(f["rows"]) == ["held_out"] and f["gap"] is None and f["method"] == "ode"
    assert f["rows"]["held_out"]["nats_per_token"] == pytest.approx(flow["nats_per_token"])
    assert flow["nats_per_token"] != pytest.approx(direct["nats_per_token"]) and "flow" in flow
    with pytest.raises(SystemExit):
        tbe.main(["--run", str(out), "--data", str(data), "--estimates", "1"])
    assert m["bound"]["nats_per_token_se"] is None and m["bound"]["repeats"] == 1   # the recipe's one estimate

    # text sampler overhead on the same run: one row per method and seed, ratios in the JSON
    tso = _load("text_sampler_overhead", "benchmarks")
    assert tso.main(["--run", str(out), "--n", "5", "--steps", "3", "--seeds", "2", "--json", str(tmp_path / "o.json")]) == 0
    rows = json.loads((tmp_path / "o.json").read_text())["rows"]
    assert [(r["method"], r["seed"]) for r in rows] == [("euler", 0), ("euler", 1), ("dpmpp_2m_sde", 0), ("dpmpp_2m_sde", 1)]
    assert all(r["sampler_overhead"] >= 1 and r["sequences"] == 5 for r in rows)


@pytest.mark.slow
def test_data2text_recipe(tmp_path, tiny):
    out = tmp_path / "d"
    assert _load("text_data2text").main(["--out", str(out), "--max-steps", "3", "--config", str(tiny),
                                         "--max-sources", "4", "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert 0 <= m["slot_error_rate"] <= 1 and m["sources"] == 4
    # the synthetic corpus says every slot of its MRs: the default cleaning changes nothing
    assert m["clean_mrs"]["changed"] == m["clean_mrs"]["dropped_examples"] == 0 and m["clean_mrs"]["slots_before"] > 0
    assert all("||" in line for line in (out / "samples.txt").read_text().splitlines())

    def reevaluate(name, eval_settings):
        """The saved model evaluated again (nothing trained) with `eval_settings` in place of `mbr: 1`."""
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(tiny.read_text().replace("mbr: 1", eval_settings))
        assert _load("text_data2text").main(["--out", str(tmp_path / name), "--model", str(out / "model"),
                                             "--config", str(cfg), "--max-sources", "4", "--quiet"]) == 0
        return json.loads((tmp_path / name / "metrics.json").read_text())

    # another selection: slot reranking over 2 candidates
    m2 = reevaluate("d2", "mbr: 2, select: slots")
    assert (m2["candidates"], m2["select"], m2["train_steps"]) == (2, "slots", None)
    assert not (tmp_path / "d2" / "model").exists() and "not trained here" in (tmp_path / "d2" / "report.md").read_text()
    # names and landmarks are delexicalised by default; outputs carry the MR's values, never a placeholder
    saved = DiffusionModel.from_pretrained(out / "model")
    assert saved.modality.config.delexicalise == ["name", "near"]
    assert "name_value" not in (out / "samples.txt").read_text()
    # several sampling seeds: the first reproduces the training run's evaluation; mean and s.e. over them
    m3 = reevaluate("d3", "mbr: 1, seeds: 2")
    a, b = m3["slot_error_rate_by_seed"]
    assert a == m3["slot_error_rate"] == m["slot_error_rate"]
    assert m3["slot_error_rate_mean"] == pytest.approx((a + b) / 2)
    assert m3["slot_error_rate_se"] == pytest.approx(abs(a - b) / 2)      # s.d. |a - b| / sqrt 2, over sqrt 2
    # errors by slot summed over both seeds: as many slots as two seeds' MRs, errors that give the mean rate
    counts = m3["slot_errors_by_slot_all_seeds"].values()
    assert sum(c["slots"] for c in counts) == 2 * sum(c["slots"] for c in m3["slot_errors_by_slot"].values())
    assert sum(c["missing"] + c["contradicted"] for c in counts) / sum(c["slots"] for c in counts) == \
        pytest.approx((a + b) / 2)
    assert "Slot errors by slot over the 2 sampling seed(s)" in (tmp_path / "d3" / "report.md").read_text()
    with pytest.raises(SystemExit, match="eval.seeds 0"):
        reevaluate("d4", "mbr: 1, seeds: 0")
    # the sampling benchmark generates as the recipe does: at the recipe's settings (its sampler, T 0.5,
    # quantile 0.75) the same SER, also after its ablation row that lets the decoding pick specials
    bench = tmp_path / "sampling.json"
    assert _load("text_d2t_sampling", "benchmarks").main([
        "--model", str(out / "model"), "--set", "held_out", "--sources", "4", "--quantiles", "0,0.75",
        "--seeds", "2", "--specials", "allowed,banned", "--json", str(bench)]) == 0
    rows = json.loads(bench.read_text())["rows"]
    assert [(r["specials"], r["length_quantile"]) for r in rows] == [
        ("allowed", 0), ("allowed", 0.75), ("banned", 0), ("banned", 0.75)]
    rows = rows[2:]
    assert rows[1]["slot_error_rate"] == [a, b]
    recipe_outputs = [line.split("||")[1] for line in (tmp_path / "d3" / "samples.txt").read_text().splitlines()]
    assert rows[1]["outputs"][0] == recipe_outputs and rows[1]["method"] == "dpmpp_2m_sde"
    assert rows[1]["slot_errors_by_slot"] == m3["slot_errors_by_slot_all_seeds"]   # the same two seeds' outputs
    # --grids: 'warped' is the model's own grid (the recipe's outputs again); karras samples on another grid
    assert _load("text_d2t_sampling", "benchmarks").main([
        "--model", str(out / "model"), "--set", "held_out", "--sources", "4", "--quantiles", "0.75",
        "--seeds", "2", "--grids", "karras,warped", "--json", str(bench)]) == 0
    karras, warped = json.loads(bench.read_text())["rows"]
    assert (karras["grid"], warped["grid"]) == ("karras", "warped")
    assert warped["outputs"][0] == recipe_outputs and warped["slot_error_rate"] == [a, b]
    assert karras["outputs"] != warped["outputs"]
    # a stopped run continues with --resume (the checkpoint's tokenizer and network); not as another task
    assert _load("text_data2text").main(["--out", str(out), "--max-steps", "5", "--config", str(tiny),
                                         "--max-sources", "4", "--resume", "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["train_steps"] == 5
    # the CLI samples a data-to-text model from a file of MRs: one output per MR, values copied back
    mrs = tmp_path / "mrs.txt"
    mrs.write_text("name : Zizzi | eatType : pub | near : The Sorrento\n\nname : Loch Fyne | food : French | near : The Rice Boat\n")
    assert cli_main(["sample", str(out), "--source", str(mrs), "--steps", "3", "--out", str(tmp_path / "s.txt")]) == 0
    outputs = (tmp_path / "s.txt").read_text().splitlines()
    assert len(outputs) == 2 and not any("_value" in o for o in outputs)
    assert cli_main(["sample", str(out), "--source", str(mrs), "--num", "3"]) == 2
    with pytest.raises(SystemExit, match="data2text model, not unconditional"):
        _load("text_unconditional").main(["--out", str(out), "--max-steps", "6", "--config", str(tiny),
                                          "--resume", "--quiet"])


def test_read_examples_cleans_training_mrs_only(tmp_path):
    # every sentence leaves out its food slot: cleaning drops it from training MRs, never from held-out ones
    data = tmp_path / "e2e.txt"
    data.write_text("".join(f"name : Place{i} | food : Chinese||Place{i} is a restaurant .\n" for i in range(20)))
    read = _load("text_unconditional").read_examples
    modality = build_modality("text", {"task": "data2text"})
    train, test, report = read(modality, str(data), 0)
    ctrain, ctest, creport = read(modality, str(data), 0, clean_mrs=True)
    assert [e.mr_text for e in ctest] == [e.mr_text for e in test] and all("food" in e.mr for e in ctest)
    assert [e.mr for e in ctrain] == [{"name": e.mr["name"]} for e in train] and len(train) == 18
    assert creport["clean_mrs"]["dropped_slots"] == {"food": 18} and "clean_mrs" not in report
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {clean_mr: true}\n")
    with pytest.raises(SystemExit, match="unknown option.*clean_mr"):
        _load("text_data2text").main(["--out", str(tmp_path / "x"), "--config", str(bad), "--quiet"])
