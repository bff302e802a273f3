"""Errors a user can cause. Each message says what was wrong and what to do.

All subclass `MultidiffError` (and `ValueError`, so generic callers can still catch them);
the CLI prints them in one line and exits with status 2.
"""


class MultidiffError(ValueError):
    """Base class of every error the library raises on bad input."""


class ConfigError(MultidiffError):
    """A configuration key is unknown, has the wrong type or an invalid value."""


class DataError(MultidiffError):
    """Input data cannot be read or holds nothing usable."""


class CheckpointError(MultidiffError):
    """A saved model or checkpoint is missing, corrupt, unsafe or does not match."""


class MismatchError(CheckpointError):
    """Two artefacts made with different settings were combined (e.g. mel presets, tokenizers)."""


class TrainingError(MultidiffError):
    """Training stopped on a non-finite loss or gradient."""


class RunLockedError(MultidiffError):
    """Another run holds the lock on this output folder."""


def run_script(main, argv=None) -> int:
    """Run a recipe's `main(argv)` for `sys.exit`: a MultidiffError prints one line ("SCRIPT: error: ...") and
    gives exit status 2, as the CLI does; any other result is the status (0 for a non-int result)."""
    import sys
    from pathlib import Path

    try:
        result = main(argv)
    except MultidiffError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
