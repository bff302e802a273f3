"""benchmarks/anomaly_contrast_levels.py: its table gives the library's own contrast scores, and --choose-on picks
the best setting of the other table and reports it on this one."""

from __future__ import annotations

import json

import pytest
import torch

from multidiff import scoring
from multidiff.model import DiffusionModel
from multidiff.modalities.audio import AudioModality
from multidiff.modalities.audio.anomalies import make_anomaly_set
from multidiff.modalities.audio.synthetic import make_synthetic_set
from script_loader import load_script

B = load_script("benchmarks/anomaly_contrast_levels.py")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small untrained unconditional audio model saved as a run whose held-out speaker is 'reed'."""
    d = tmp_path_factory.mktemp("contrast")
    make_synthetic_set(d / "clips", per_speaker=1, speakers=["flute", "reed"], labels=["rise", "fall", "low"])
    make_anomaly_set(d / "anomalies", per_type=2, kinds=["tone", "noise"])
    modality = AudioModality({"label_pattern": None})
    items, _ = modality.read(d / "clips")
    modality.prepare(items)
    torch.manual_seed(0)
    model = DiffusionModel(modality, {"channels": 8, "channel_mults": [1, 2], "attention_levels": [],
                                      "mid_attention": False})
    model.save_pretrained(d / "run" / "model")
    (d / "run" / "metrics.json").write_text(json.dumps({"held_out_speaker": "reed"}))
    return d


def test_table_gives_the_library_contrast_scores(run, capsys):
    levels, weights = [0.5, 2.0], [0.0, 4.0]
    B.main(["--model", str(run / "run"), "--normal", str(run / "clips"), "--anomalies", str(run / "anomalies"),
            "--levels", "0.5,2", "--weights", "0,4", "--seed", "3", "--json", str(run / "t.json")])
    table = json.loads((run / "t.json").read_text())
    model = DiffusionModel.from_pretrained(run / "run" / "model").eval()
    modality = model.modality
    normal = [it for it in modality.read(run / "clips")[0] if it["speaker"] == "reed"]
    anomalous, _ = modality.read(run / "anomalies")
    assert len(table["normal"]["own"]) == len(normal) == 3 and table["anomalous"]["types"].count("tone") == 2
    results = B.grid(table, weights)
    for w in weights:  # all levels: the library's contrast score with the same draws
        lib_n = scoring.score_items(model, normal, "contrast", seed=3, batch_size=32, sigmas=levels, contrast_weight=w)
        lib_a = scoring.score_items(model, anomalous, "contrast", seed=3, batch_size=32, sigmas=levels,
                                    contrast_weight=w)
        assert B.scores(table, "normal", (0, 2), w) == pytest.approx(lib_n, abs=1e-5)
        assert B.scores(table, "anomalous", (0, 2), w) == pytest.approx(lib_a, abs=1e-5)
        assert results[((0, 2), w)]["all"] == scoring.auroc(lib_n, lib_a)
    # the first level alone draws the same noise as the library scoring at that level only
    lib = scoring.score_items(model, normal, "denoise", seed=3, batch_size=32, sigmas=[0.5])
    assert torch.tensor(table["normal"]["own"])[:, 0].tolist() == pytest.approx(lib, rel=1e-5)
    assert "levels [0.5, 2.0] weight 4.0" in capsys.readouterr().out


def test_choose_on_picks_the_other_tables_best_setting(tmp_path, capsys):
    """Two hand-made tables over levels (1, 2): on A only level 2 with weight 0 separates (the anomaly's error
    is high there, the normal item's low); on B that setting ranks the anomaly below the normal item."""
    def table(own_n, own_a):
        return {"levels": [1.0, 2.0], "normal": {"own": [own_n], "other": [own_n], "types": ["x"]},
                "anomalous": {"own": [own_a], "other": [own_a], "types": ["tone"]}}
    a = table(own_n=[1.0, 0.1], own_a=[0.1, 0.9])
    b = table(own_n=[1.0, 5.0], own_a=[2.0, 1.0])
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    B.main(["--model", "unused", "--normal", "unused", "--anomalies", "unused", "--weights", "0",
            "--json", str(tmp_path / "b.json"), "--choose-on", str(tmp_path / "a.json")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("chosen on") and "levels [2.0] weight 0.0 (AUROC there 1.000); here: 0.000" in last
