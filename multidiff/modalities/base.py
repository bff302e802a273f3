"""The modality plugin protocol and the registry.

A modality owns everything between raw data and the continuous tensor the core diffuses:
reading items, fitting data-dependent state (`prepare`), `encode` to x0, `decode` back, the default
network, and saving its state next to the model. Third-party packages register modalities through
the entry-point group ``multidiff.modalities`` (value: ``package.module:ClassName``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from ..errors import ConfigError


class NamedItems(list):
    """The items `Modality.read` returns, with one identifier per item in `names` (e.g. ``data.csv:7``), so
    per-item outputs (scores) can point at the row or file a user wrote."""

    def __init__(self, items: Sequence[Any], names: Sequence[str]):
        super().__init__(items)
        if len(names) != len(self):
            raise ValueError(f"{len(names)} names for {len(self)} items")
        self.names = list(names)


def item_names(items: Sequence[Any]) -> list[str]:
    """Identifiers of read items: `NamedItems.names`, an item's `path`, else ``item i`` (0-based)."""
    if isinstance(items, NamedItems):
        return items.names
    path = lambda it: getattr(it, "path", None) or (it.get("path") if isinstance(it, dict) else None)  # noqa: E731
    return [str(path(it) or f"item {i}") for i, it in enumerate(items)]


@dataclass
class Encoded:
    """A batch in the core's space.

    x0:   [B, ...] float tensor, the clean data.
    mask: [B, ...] (broadcastable to x0) float/bool, 1 where positions are data that count in the loss
          (e.g. non-padding tokens or frames); None means everything counts.
    cond: conditioning tensors with leading dim B (class labels, source tokens, ...).
    known: optional [B, ...] bool mask of positions given as context (seq2seq sources, infilling);
           the sampler keeps them through its `known` hook. Modalities with their own `loss` (text) also
           keep them clean in training (partial noising); the default denoising loss ignores `known`.
    """

    x0: torch.Tensor
    mask: torch.Tensor | None = None
    cond: dict[str, torch.Tensor] = field(default_factory=dict)
    known: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x0.shape[0]

    def index(self, idx: torch.Tensor | slice) -> "Encoded":
        """Rows `idx` of every tensor."""
        pick = lambda t: None if t is None else t[idx]
        return Encoded(self.x0[idx], pick(self.mask), {k: v[idx] for k, v in self.cond.items()},
                       pick(self.known))

    def to(self, device: torch.device | str) -> "Encoded":
        """Every tensor moved to `device` (non-blocking)."""
        move = lambda t: None if t is None else t.to(device, non_blocking=True)
        return Encoded(move(self.x0), move(self.mask), {k: move(v) for k, v in self.cond.items()},
                       move(self.known))

    @staticmethod
    def concat(parts: Sequence["Encoded"]) -> "Encoded":
        """Batches joined along the first dim (all parts must have the same fields and cond keys)."""
        cat = lambda ts: None if ts[0] is None else torch.cat(ts)
        keys = parts[0].cond.keys()
        return Encoded(torch.cat([p.x0 for p in parts]), cat([p.mask for p in parts]),
                       {k: torch.cat([p.cond[k] for p in parts]) for k in keys},
                       cat([p.known for p in parts]))


class Modality:
    """Base class of modality plugins. Subclasses set `name` and `Config` (a dataclass).

    Required: `read`, `prepare`, `encode`, `decode`, `sample_shape`, `denoiser_net`, `write_samples`,
    `state`/`load_state` (what travels with a saved model), `units` (for likelihood reports).
    Optional hooks, used (by `DiffusionModel`, or `scoring` for `contrast`) only when the subclass defines them:
    `loss(net, batch, draws, diffusion)` (a custom objective), `make_denoiser(net, diffusion)`,
    `project(net, diffusion) -> callable | None` (sampler clamping), `nll(net, batch, draws, diffusion,
    method=)` (a custom likelihood), `null_cond()` (classifier-free guidance), `contrast(batch) -> Encoded` (a
    transform that keeps an item's content and breaks structure the model should have learnt, for the
    `contrast` anomaly score). `diffusion` is the model's DiffusionConfig as a dict.
    """

    name: ClassVar[str] = "base"

    @dataclass
    class Config:
        pass

    def __init__(self, config: "Modality.Config | None" = None):
        self.config = config if config is not None else self.Config()

    # --- data -------------------------------------------------------------------------------
    def read(self, path: str | Path) -> tuple[list[Any], list[tuple[str, str]]]:
        """Read items from a file or folder. Returns (items, skipped) where skipped lists
        (item identifier, reason) for items that could not be read."""
        raise NotImplementedError

    def prepare(self, items: Sequence[Any]) -> None:
        """Fit data-dependent state (statistics, tokenizer). Idempotent."""

    def encode(self, items: Sequence[Any]) -> Encoded:
        """Items -> an `Encoded` batch: x0 [B, ...] float, optional mask, cond and known."""
        raise NotImplementedError

    def decode(self, x0: torch.Tensor, encoded: Encoded | None = None, net: nn.Module | None = None) -> list[Any]:
        """Back from the diffused space: x0 [B, ...] -> B items. `net` is the model's network, for modalities
        whose decoding needs learned parameters (e.g. text's embedding table); others ignore it."""
        raise NotImplementedError

    def sample_shape(self, num: int, **cond: Any) -> tuple[tuple[int, ...], Encoded | None]:
        """Shape [num, ...] of x to generate, and optional conditioning/known context as Encoded."""
        raise NotImplementedError

    def write_samples(self, samples: list[Any], out: str | Path) -> list[Path]:
        """Write decoded samples to `out` (a file or folder). Returns the paths written."""
        raise NotImplementedError

    # --- model ------------------------------------------------------------------------------
    def denoiser_net(self, net_config: dict[str, Any]) -> nn.Module:
        """The default backbone: a module called as net(x_in [B, ...], c_noise [B], **cond)."""
        raise NotImplementedError

    def units(self) -> tuple[str, int]:
        """How likelihoods are normalised: ('dim', dims per item) or ('token', 0)."""
        return "dim", 0

    # --- persistence ------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON-able settings, tensors) that travel with a model. Tensors are saved as safetensors."""
        return {}, {}

    def load_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `state()` returned; called before `denoiser_net` when a model is loaded."""

    def config_dict(self) -> dict[str, Any]:
        """The options saved as `modality_options` in config.json (default: the Config dataclass as a dict)."""
        return dataclasses.asdict(self.config)


_REGISTRY: dict[str, type[Modality]] = {}
ENTRY_POINT_GROUP = "multidiff.modalities"


_BROKEN: dict[str, str] = {}  # entry-point name -> why it could not be loaded


def register(name: str, cls: type[Modality]) -> type[Modality]:
    """Register a modality class under `name` (overwrites a previous registration).

    `cls.name` must equal `name`: a saved model records the class's name and is loaded by it."""
    if getattr(cls, "name", name) != name:
        raise ConfigError(f"modality class {cls.__qualname__} has name = {cls.name!r} but is registered as "
                          f"{name!r}; set `name = {name!r}` on the class (saved models are loaded by that name)")
    _REGISTRY[name] = cls
    return cls


def _builtins() -> None:
    from . import vector  # noqa: F401  (registers itself)
    for mod in ("text", "audio"):
        try:
            __import__(f"{__package__}.{mod}")
        except ImportError:  # a modality with missing optional pieces must not break the others
            pass


def _entry_points() -> None:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            try:
                register(ep.name, ep.load())
            except Exception as e:  # noqa: BLE001  (one broken plugin must not break the others; get() reports it)
                _BROKEN[ep.name] = f"entry point {ep.value!r} could not be loaded ({type(e).__name__}: {e})"


def available() -> list[str]:
    """Sorted names of the built-in modalities and of every entry point that loads."""
    _builtins()
    _entry_points()
    return sorted(_REGISTRY)


def get(name: str) -> type[Modality]:
    """The modality class registered as `name` (built in or through the entry-point group)."""
    if name not in _REGISTRY:
        _builtins()
    if name not in _REGISTRY:
        _entry_points()
    if name not in _REGISTRY and name in _BROKEN:
        raise ConfigError(f"modality {name!r} is installed but its {_BROKEN[name]}; fix or reinstall the "
                          f"package that provides it")
    if name not in _REGISTRY:
        raise ConfigError(f"unknown modality {name!r}; available: {', '.join(available())}. "
                          f"Third-party modalities register under the entry-point group {ENTRY_POINT_GROUP!r}.")
    return _REGISTRY[name]
