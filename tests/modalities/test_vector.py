import json

import numpy as np
import pytest
import torch

from multidiff.errors import CheckpointError, DataError
from multidiff.model import DiffusionModel
from multidiff.modalities import get


def test_csv_bad_rows_skipped_and_counted(tmp_path):
    p = tmp_path / "v.csv"
    p.write_text("a,b\n1,2\n3,4,5\nx,1\nnan,1\n5,6\ninf,2\n")
    m = get("vector")()
    items, skipped = m.read(p)
    assert [list(i) for i in items] == [[1, 2], [5, 6]]
    reasons = dict(skipped)
    assert reasons == {"line 3": "has 3 columns, expected 2", "line 4": "has a non-numeric cell",
                       "line 5": "contains NaN or Inf", "line 7": "contains NaN or Inf"}


def test_no_usable_rows_is_a_clear_error(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="no usable vectors"):
        get("vector")().read(tmp_path / "e.csv")
    with pytest.raises(DataError, match="unsupported file type"):
        (tmp_path / "x.bin").write_bytes(b"\0")
        get("vector")().read(tmp_path / "x.bin")


def test_standardization_round_trip_and_save_load(tmp_path):
    m = get("vector")()
    x = [np.array([1.0, 10.0], np.float32), np.array([3.0, 30.0], np.float32)]
    m.prepare(x)
    enc = m.encode(x)
    assert torch.allclose(enc.x0.std(0), torch.ones(2), atol=1e-6)
    assert np.allclose(np.stack(m.decode(enc.x0)), np.stack(x))
    model = DiffusionModel(m, {"hidden": 16, "depth": 1})
    model.save_pretrained(tmp_path / "m")
    back = DiffusionModel.from_pretrained(tmp_path / "m")
    assert torch.equal(back.modality.mean, m.mean)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), model.state_dict().values()))


def test_loading_refuses_mismatches(tmp_path):
    m = get("vector")()
    m.prepare([np.zeros(2, np.float32), np.ones(2, np.float32)])
    DiffusionModel(m, {"hidden": 16, "depth": 1}).save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["net"]["hidden"] = 32
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match the network"):
        DiffusionModel.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "modality" / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="meta.json is missing"):
        DiffusionModel.from_pretrained(tmp_path / "m")


def test_read_names_items_by_line_and_row(tmp_path):
    (tmp_path / "v.csv").write_text("a,b\n1,2\n\n3,x\n5,6\n")
    items, _ = get("vector")().read(tmp_path / "v.csv")
    assert items.names == ["line 2", "line 5"]
    np.save(tmp_path / "v.npy", np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, 4.0]], dtype=np.float32))
    items, skipped = get("vector")().read(tmp_path / "v.npy")
    assert items.names == ["row 0", "row 2"] and skipped == [("row 1", "contains NaN or Inf")]
