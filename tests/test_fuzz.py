"""Property tests: whatever the input, readers, config parsing and the CLI raise only the library's errors."""

import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from multidiff.cli import main as cli
from multidiff.config import apply_overrides, from_dict
from multidiff.errors import MultidiffError
from multidiff.modalities import get
from multidiff.run import RunConfig

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=8))
trees = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                  st.dictionaries(st.text(max_size=8), c, max_size=3)), max_leaves=8)
keys = st.sampled_from(["modality", "data", "net", "diffusion", "train", "modality_options", "bogus"])
subkeys = st.sampled_from(["path", "max_steps", "batch_size", "lr", "sampler", "steps", "precision",
                           "weighting", "grad_accum", "eval_fraction", "x"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, st.one_of(trees, st.dictionaries(subkeys, scalars, max_size=4)), max_size=5))
def test_config_parsing_raises_only_config_errors(data):
    try:
        from_dict(RunConfig, data)
    except MultidiffError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet=string.ascii_letters + "=._-0123456789", max_size=12), max_size=4))
def test_overrides_raise_only_config_errors(items):
    try:
        from_dict(RunConfig, apply_overrides({"modality": "vector"}, items))
    except MultidiffError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["info", "sample", "nll", "score"]), st.text(max_size=20),
       st.lists(st.sampled_from(["--num", "--steps", "--method", "--seed", "-1", "0", "x", "euler", "--data",
                                 "--out", "--json"]), max_size=4))
def test_cli_exits_cleanly(tmp_path, capsys, command, path, extra):
    try:
        rc = cli([command, str(tmp_path / "nothing" / path.replace("\0", "")), *extra])
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    assert rc == 2


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_vector_reader_on_random_bytes(tmp_path, blob):
    p = tmp_path / "v.csv"
    p.write_bytes(blob)
    try:
        items, skipped = get("vector")().read(p)
        assert all(np.isfinite(i).all() for i in items)
    except MultidiffError:
        pass
