import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

FSDD = Path(os.environ.get("MULTIDIFF_FSDD", Path(__file__).resolve().parents[4] / "shared" / "data" / "fsdd" / "recordings"))


@pytest.fixture
def fsdd() -> Path:
    if not FSDD.is_dir():
        pytest.skip(f"FSDD recordings not found at {FSDD} (set MULTIDIFF_FSDD)")
    return FSDD
