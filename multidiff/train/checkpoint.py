"""Atomic checkpoints in a run folder, and pickle-free (de)serialization of training state.

Layout of a run folder `out/`:

    out/model/                 the latest complete checkpoint, also a loadable model folder:
        config.json, model.safetensors, ...   what `model.save_pretrained` writes
        ema.safetensors                       EMA of the model's float state
        optimizer.safetensors                 optimizer tensors; param groups and scalars as JSON
                                              in the file's metadata
        trainer_state.json                    step, data position, config, RNG states, ...
    out/log.jsonl              JSON-lines log
    out/.lock                  held by the run using the folder

A save writes everything to `out/model.tmp-<pid>/`, fsyncs every file and folder, renames
`model/` to `model.old/`, renames the new folder to `model/`, fsyncs `out/` and deletes
`model.old/`. Whatever moment a process dies at, `recover()` finds a complete checkpoint: `model/`,
or `model.old/` when it died between the two renames. Loading reads safetensors and JSON only.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

MODEL_DIR = "model"
OLD_DIR = "model.old"
TMP_PREFIX = "model.tmp-"
STATE_FILE = "trainer_state.json"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
_OPT_META_KEY = "multidiff.optimizer"


# --- files ------------------------------------------------------------------------------------
def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (and `root` itself)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath))


def write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, allow_nan=True)
        f.write("\n")


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e


def recover(out_dir: str | Path) -> None:
    """Make `out/model/` the latest complete checkpoint after a crash, and remove leftovers.

    Call only while holding the run folder's lock (a tmp folder of a live writer would be removed).
    """
    out = Path(out_dir)
    model, old = out / MODEL_DIR, out / OLD_DIR
    if not model.exists() and old.exists():  # died between the two renames: the old one is complete
        os.replace(old, model)
        _fsync_path(out)
    elif old.exists():  # died after the swap, before the old folder was deleted
        shutil.rmtree(old, ignore_errors=True)
    for tmp in out.glob(TMP_PREFIX + "*"):
        shutil.rmtree(tmp, ignore_errors=True)


def has_checkpoint(out_dir: str | Path) -> bool:
    """Whether out_dir holds a complete checkpoint (recovering an interrupted swap first)."""
    return (Path(out_dir) / MODEL_DIR / STATE_FILE).is_file()


def checkpoint_step(out_dir: str | Path) -> int | None:
    """Step of the checkpoint in `out/model/`, or None when there is none."""
    if not has_checkpoint(out_dir):
        return None
    return int(read_json(Path(out_dir) / MODEL_DIR / STATE_FILE)["step"])


def atomic_save(out_dir: str | Path, write: Callable[[Path], None], *, step: int) -> Path:
    """Run `write(tmp_dir)` and atomically make `tmp_dir` the new `out/model/`.

    On OSError (disk full, quota, I/O error) the partial folder is removed, the previous checkpoint
    is left (or put back) in place, and CheckpointError says which step it holds.
    """
    out = Path(out_dir)
    model, old, tmp = out / MODEL_DIR, out / OLD_DIR, out / f"{TMP_PREFIX}{os.getpid()}"
    previous = checkpoint_step(out)
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        write(tmp)
        fsync_tree(tmp)
        if model.exists():
            os.replace(model, old)
        os.replace(tmp, model)
        _fsync_path(out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not model.exists() and old.exists():
            try:
                os.replace(old, model)
            except OSError:
                pass  # recover() puts it back on the next start
        kept = (f"the previous checkpoint at step {previous} in {model} is intact"
                if previous is not None else "no earlier checkpoint exists")
        hint = " (disk full: free space or use another --out)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise CheckpointError(f"could not save the checkpoint at step {step}: {e}{hint}; {kept}") from e
    shutil.rmtree(old, ignore_errors=True)
    return model


# --- optimizer state without pickle -----------------------------------------------------------
def _jsonable(x: Any, what: str) -> Any:
    if isinstance(x, (bool, int, float, str)) or x is None:
        return x
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, what) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v, what) for k, v in x.items()}
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        return x.item()
    raise CheckpointError(f"cannot store {what} of type {type(x).__name__} without pickle")


def optimizer_to_tensors(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten `optimizer.state_dict()` into tensors named '<param id>.<name>' and JSON metadata
    (param_groups, non-tensor per-parameter state)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = _jsonable(value, f"optimizer state {name!r}")
    meta = {"param_groups": _jsonable(state_dict["param_groups"], "optimizer param_groups"),
            "scalars": scalars}
    return tensors, meta


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `optimizer_to_tensors`: a state_dict for `optimizer.load_state_dict`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, entries in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    tensors, meta = optimizer_to_tensors(optimizer.state_dict())
    save_file(tensors, str(path), metadata={_OPT_META_KEY: json.dumps(meta)})


def load_optimizer_state(path: Path) -> dict[str, Any]:
    """Read an optimizer state_dict from safetensors + JSON metadata (never unpickles)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[_OPT_META_KEY])
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types on corrupt files
        raise CheckpointError(f"cannot read optimizer state {path}: {e}") from e
    return optimizer_from_tensors(tensors, meta)


# --- RNG states as JSON -----------------------------------------------------------------------
def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def rng_state(device: torch.device) -> dict[str, Any]:
    """torch (CPU and this process's CUDA device), numpy and Python `random` states, JSON-able."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch_cpu": _b64(torch.get_rng_state()),
        "numpy": [np_state[0], base64.b64encode(np_state[1].tobytes()).decode("ascii"),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": json.dumps(_jsonable(random.getstate(), "python random state")),
    }
    if device.type == "cuda":
        state["torch_cuda"] = _b64(torch.cuda.get_rng_state(device))
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(_unb64(state["torch_cpu"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.frombuffer(base64.b64decode(keys), dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(_unb64(state["torch_cuda"]), device)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e
