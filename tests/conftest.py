import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip when this machine does not have it (a fresh user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder {SHARED_DATA} (present in CI, absent on a fresh clone)")
    return SHARED_DATA
