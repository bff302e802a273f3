"""The project's scripts (recipes/, benchmarks/, scripts/: files, not a package) imported as modules in tests."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str):
    """ROOT/relative, e.g. "recipes/anomaly_audio.py", executed as a fresh module named after the file."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(f"_md_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
