"""docs/api.md is exactly what scripts/gen_api_docs.py generates from the current docstrings."""

import difflib

from script_loader import ROOT, load_script

API_MD = ROOT / "docs" / "api.md"


def _generator():
    return load_script("scripts/gen_api_docs.py")


def test_api_reference_is_up_to_date():
    expected = _generator().render()
    current = API_MD.read_text(encoding="utf-8") if API_MD.is_file() else ""
    if current != expected:
        diff = "".join(list(difflib.unified_diff(current.splitlines(True), expected.splitlines(True),
                                                 "docs/api.md (committed)", "docs/api.md (regenerated)", n=1))[:40])
        raise AssertionError("docs/api.md is out of date with the docstrings; regenerate it with\n"
                             "    python scripts/gen_api_docs.py\nand commit the result. First differences:\n"
                             + diff)


def test_reference_covers_the_public_modules_and_runs_nothing():
    gen = _generator()
    text = API_MD.read_text(encoding="utf-8")
    for module in gen.MODULES:
        assert f"\n## {module}\n" in text, module
    assert "```python" not in text  # the docs harness would execute it
    assert " at 0x" not in text     # no memory addresses: regeneration must be reproducible
