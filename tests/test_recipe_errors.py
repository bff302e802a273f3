"""Recipes report a user's bad input in one line with exit status 2 (as the CLI does), not a traceback."""

import pytest

from multidiff.cli import _parse_cond
from multidiff.errors import DataError, run_script
from script_loader import load_script


@pytest.mark.parametrize("recipe", ["text_unconditional", "text_data2text", "text_ar_baseline"])
def test_an_empty_data_file_is_one_line_and_exit_2(recipe, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    main = load_script(f"recipes/{recipe}.py").main
    assert run_script(main, ["--data", str(empty), "--out", str(tmp_path / "out"), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and str(empty) in err, err
    assert not (tmp_path / "out").exists()                 # a refused run leaves no empty --out behind


def test_run_script_passes_other_results_through(capsys):
    assert run_script(lambda argv: 0) == 0 and run_script(lambda argv: {"metrics": 1}) == 0
    assert run_script(lambda argv: 3) == 3

    def bad(argv):
        raise DataError("x.txt is empty; give a file with one example per line")
    assert run_script(bad) == 2 and "error: x.txt is empty" in capsys.readouterr().err
    with pytest.raises(KeyError):                        # a bug is not a user error: its traceback stays
        run_script(lambda argv: {}["missing"])


def test_cli_conditioning_values_are_numbers_where_they_parse():
    assert _parse_cond(["label=7", "length_quantile=0.75", "template=the [MASK] .", "length=-2"]) == \
        {"label": 7, "length_quantile": 0.75, "template": "the [MASK] .", "length": -2}
