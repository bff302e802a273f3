"""`DiffusionModel`: a modality + a network + the diffusion settings, and the saved-model folder format.

A saved model is a folder (see DESIGN.md "Runs on disk"):
  config.json          {"format", "modality", "modality_options", "net", "diffusion"}
  model.safetensors    network weights          ema.safetensors   EMA weights (written by the Trainer)
  modality/            meta.json (+ tensors.safetensors): tokenizer, mel preset, statistics
  trainer_state.json   step, RNG states, ... (written by the Trainer)
Loading reads only JSON and safetensors: nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import modalities
from .config import from_dict
from .core import likelihood, losses, process, samplers, schedules
from .core.draws import Draws
from .errors import CheckpointError, ConfigError
from .modalities.base import Encoded, Modality

FORMAT = "multidiff-model/1"


@dataclass
class DiffusionConfig:
    """How the modality's data is diffused, trained and sampled (all sigmas in the core's VE units)."""

    parameterization: str = "edm"      # eps | x0 | v | edm
    sigma_data: float = 0.5
    input_scaling: str | None = None   # vp | edm | none (default per parameterization)
    weighting: str = "edm"             # eps | x0 | v | min_snr | edm | sigmoid | elbo
    time_sampler: str = "lognormal"    # uniform | stratified | lognormal
    schedule: str = "edm"              # schedule for uniform/stratified times and the "schedule" grid
    p_mean: float = -1.2
    p_std: float = 1.2
    min_snr_gamma: float = 5.0
    sigmoid_bias: float = -3.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    cond_dropout: float = 0.1          # classifier-free guidance: probability of the null condition
    sampler: str = "dpmpp_2m"
    steps: int = 20
    grid: str = "karras"               # karras | exponential | schedule
    guidance: float = 1.0

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid setting and the valid choices."""
        process.coefficients(torch.ones(1), self.parameterization, self.sigma_data, self.input_scaling)
        for name, value, valid in [("weighting", self.weighting, losses.WEIGHTINGS),
                                   ("time_sampler", self.time_sampler, losses.TIME_SAMPLERS),
                                   ("sampler", self.sampler, tuple(samplers.SAMPLERS)),
                                   ("grid", self.grid, ("karras", "exponential", "schedule")),
                                   ("schedule", self.schedule, tuple(schedules.names()))]:
            if value not in valid:
                raise ConfigError(f"diffusion.{name}: {value!r} is not valid; choose one of {', '.join(valid)}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ConfigError(f"diffusion: need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.steps < 1:
            raise ConfigError(f"diffusion.steps must be >= 1, got {self.steps}")
        if not 0 <= self.cond_dropout < 1:
            raise ConfigError(f"diffusion.cond_dropout must be in [0, 1), got {self.cond_dropout}")


def build_modality(name: str, options: dict[str, Any] | None) -> Modality:
    """Instantiate the registered modality `name` with its validated options."""
    cls = modalities.get(name)
    cfg_cls = getattr(cls, "Config", None)
    if cfg_cls is not None and dataclasses.is_dataclass(cfg_cls):
        return cls(from_dict(cfg_cls, options or {}, "modality_options"))
    return cls(options or {})


class DiffusionModel(nn.Module):
    """modality + network + diffusion settings.

    forward(batch, draws) -> scalar training loss (what the Trainer and DDP call).
    """

    def __init__(self, modality: Modality, net_config: dict[str, Any] | None = None,
                 diffusion: DiffusionConfig | None = None):
        super().__init__()
        self.modality = modality
        self.net_config = dict(net_config or {})
        self.diffusion = diffusion or DiffusionConfig()
        self.net = modality.denoiser_net(self.net_config)
        self.schedule = schedules.get(self.diffusion.schedule)

    # ------------------------------------------------------------------------------------- training
    def denoiser(self, net: nn.Module | None = None):
        """D(x, sigma, **cond) -> x0_hat for `net` (default: this model's network)."""
        net = net if net is not None else self.net
        make = getattr(self.modality, "make_denoiser", None)
        if make is not None:
            return make(net, self.diffusion_dict())
        d = self.diffusion
        return process.Denoiser(net, d.parameterization, d.sigma_data, d.input_scaling)

    def diffusion_dict(self) -> dict[str, Any]:
        """The DiffusionConfig as a plain dict (what modality hooks receive)."""
        return dataclasses.asdict(self.diffusion)

    def forward(self, batch: Encoded, draws: Draws) -> torch.Tensor:
        custom = getattr(self.modality, "loss", None)
        if custom is not None:
            return custom(self.net, batch, draws, self.diffusion_dict())
        d = self.diffusion
        cond = self._drop_cond(batch.cond, draws)
        per_example = losses.denoising_loss(
            self.denoiser(), batch.x0, draws, weighting=d.weighting, time_sampler=d.time_sampler,
            schedule=self.schedule, mask=batch.mask, sigma_data=d.sigma_data, gamma=d.min_snr_gamma,
            bias=d.sigmoid_bias, p_mean=d.p_mean, p_std=d.p_std, cond=cond)
        return per_example.mean()

    def _drop_cond(self, cond: dict[str, torch.Tensor], draws: Draws) -> dict[str, torch.Tensor]:
        """Classifier-free guidance training: replace each condition by its null value with prob. cond_dropout."""
        null = self.null_cond()
        if not null or self.diffusion.cond_dropout <= 0:
            return cond
        drop = draws.rand() < self.diffusion.cond_dropout
        return {k: (torch.where(drop.reshape(-1, *[1] * (v.ndim - 1)), torch.full_like(v, null[k]), v)
                    if k in null else v) for k, v in cond.items()}

    def null_cond(self) -> dict[str, Any]:
        """The modality's "no condition" values for classifier-free guidance ({} when unconditional)."""
        fn = getattr(self.modality, "null_cond", None)
        return fn() if fn is not None else {}

    # ------------------------------------------------------------------------------------- sampling
    def sigmas(self, steps: int | None = None, grid: str | None = None) -> torch.Tensor:
        """Sampling grid [steps + 1] (decreasing, ending with 0) from the diffusion settings."""
        d = self.diffusion
        steps, grid = steps or d.steps, grid or d.grid
        if grid == "karras":
            return samplers.karras_sigmas(steps, d.sigma_min, d.sigma_max)
        if grid == "exponential":
            return samplers.exponential_sigmas(steps, d.sigma_min, d.sigma_max)
        if grid == "schedule":
            return self.schedule.sigmas(steps)
        raise ConfigError(f"unknown grid {grid!r}; choose karras, exponential or schedule")

    @torch.no_grad()
    def sample_x0(self, num: int, *, steps: int | None = None, method: str | None = None, seed: int = 0,
                  guidance: float | None = None, net: nn.Module | None = None, callback=None,
                  **cond: Any) -> tuple[torch.Tensor, Encoded | None]:
        """Generate `num` items in the diffused space. Returns (x0 [num, ...], the context used)."""
        if guidance is not None and guidance != 1.0 and not self.null_cond():
            raise ConfigError(f"guidance {guidance} needs a class-conditional model (one with a null label); this "
                              f"{type(self.modality).__name__} model has none. Text data-to-text models set "
                              "their guidance in the config (modality_options: {guidance: W})")
        net = net if net is not None else self.net
        was_training = net.training
        net.eval()
        try:
            if "seed" in inspect.signature(self.modality.sample_shape).parameters:
                cond = {"seed": seed, **cond}  # e.g. text draws lengths per seed
            shape, ctx = self.modality.sample_shape(num, **cond)
            device = next(net.parameters()).device
            own_grid = getattr(self.modality, "sigmas", None)  # e.g. text's grid fitted to its loss
            sig = (own_grid(net, steps or self.diffusion.steps) if own_grid is not None
                   else self.sigmas(steps)).to(device)
            g = torch.Generator().manual_seed(int(seed))
            x = torch.randn(shape, generator=g).to(device) * sig[0]
            D = self.denoiser(net)
            scale = self.diffusion.guidance if guidance is None else guidance
            if scale != 1.0 and self.null_cond():
                D = samplers.cfg(D, scale, self.null_cond())
            options: dict[str, Any] = {"cond": {k: v.to(device) for k, v in (ctx.cond if ctx else {}).items()}}
            if ctx is not None and ctx.known is not None:
                options["known"] = (ctx.x0.to(device), ctx.known.to(device))
            project = getattr(self.modality, "project", None)
            if project is not None:
                options["project"] = project(net, self.diffusion_dict())
            x0 = samplers.sample(D, x, sig, method or self.diffusion.sampler, generator=g, callback=callback,
                                 **options)
        finally:
            net.train(was_training)
        return x0, ctx

    def sample(self, num: int, **kw: Any) -> list[Any]:
        """Generate and decode `num` items (strings, waveforms, vectors: whatever the modality decodes to)."""
        x0, ctx = self.sample_x0(num, **kw)
        return self._decode(x0, ctx, kw.get("net"))

    def _decode(self, x0: torch.Tensor, ctx: Encoded | None, net: nn.Module | None) -> list[Any]:
        return self.modality.decode(x0, ctx, net=net if net is not None else self.net)

    # ------------------------------------------------------------------------------------- likelihood
    @torch.no_grad()
    def nll(self, batch: Encoded, *, method: str = "elbo", seed: int = 0, net: nn.Module | None = None,
            ode_steps: int | None = None, elbo_samples: int = 16) -> torch.Tensor:
        """Negative log-likelihood [B] in nats per item: the variational bound ("elbo") or the
        probability-flow ODE ("ode", RK4 with `ode_steps` steps; None: the modality's default, else 32).
        Divide by `units()` counts for bits per dimension / token."""
        net = net if net is not None else self.net
        custom = getattr(self.modality, "nll", None)
        g = torch.Generator().manual_seed(int(seed))
        if custom is not None:
            steps = {} if ode_steps is None else {"ode_steps": ode_steps}
            return custom(net, batch, Draws(g, len(batch)), self.diffusion_dict(), method=method, **steps)
        ode_steps = 32 if ode_steps is None else ode_steps
        d = self.diffusion
        D = self.denoiser(net)
        x0 = batch.x0.to(next(net.parameters()).device)
        cond = {k: v.to(x0.device) for k, v in batch.cond.items()}
        if method == "ode":
            return likelihood.ode_nll(D, x0, sigma_min=d.sigma_min, sigma_max=d.sigma_max, generator=g,
                                      steps=ode_steps, cond=cond)
        if method == "elbo":
            return likelihood.elbo(D, x0, logsnr_min=-2 * float(torch.tensor(d.sigma_max).log()),
                                   logsnr_max=-2 * float(torch.tensor(d.sigma_min).log()), samples=elbo_samples,
                                   generator=g, cond=cond)
        raise ConfigError(f"unknown likelihood method {method!r}; choose elbo or ode")

    def units_per_item(self, batch: Encoded) -> torch.Tensor:
        """What `nll` is normalised by, [B]: the modality's own count (e.g. words + EOS for text) when it
        defines `num_units`, else the number of diffused dimensions (nll sums over all of them)."""
        count = getattr(self.modality, "num_units", None)
        if count is not None:
            return count(batch).float().cpu()
        return torch.full((len(batch),), float(batch.x0[0].numel()))

    # ------------------------------------------------------------------------------------- persistence
    def config_dict(self) -> dict[str, Any]:
        """What config.json holds: format, modality name and options, net settings, diffusion settings."""
        return {"format": FORMAT, "modality": self.modality.name,
                "modality_options": self.modality.config_dict(), "net": self.net_config,
                "diffusion": self.diffusion_dict()}

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json, model.safetensors and modality/ into `directory` (plain writes; the Trainer
        makes checkpoint folders atomic)."""
        out = Path(directory)
        (out / "modality").mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(self.config_dict(), indent=2))
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                  str(out / "model.safetensors"))
        meta, tensors = self.modality.state()
        (out / "modality" / "meta.json").write_text(json.dumps(meta, indent=2))
        if tensors:
            save_file({k: v.contiguous().cpu() for k, v in tensors.items()},
                      str(out / "modality" / "tensors.safetensors"))

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, ema: bool = True,
                        map_location: str | torch.device = "cpu") -> "DiffusionModel":
        """Load a saved model (a model folder, or a run folder holding `model/`). EMA weights when present."""
        root = resolve_model_dir(directory)
        try:
            cfg = json.loads((root / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{root / 'config.json'} is unreadable ({e}); the folder is not a saved model")
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise CheckpointError(f"{root}: config.json is not a {FORMAT} model config "
                                  f"(format={cfg.get('format') if isinstance(cfg, dict) else None!r})")
        missing = {"modality", "net", "diffusion"} - set(cfg)
        if missing:
            raise CheckpointError(f"{root}/config.json lacks {', '.join(sorted(missing))}")
        modality = build_modality(cfg["modality"], cfg.get("modality_options"))
        meta_path = root / "modality" / "meta.json"
        if not meta_path.is_file():
            raise CheckpointError(f"{root}: modality/meta.json is missing; the model's {cfg['modality']} "
                                  f"settings (tokenizer, statistics) did not travel with it")
        tensors_path = root / "modality" / "tensors.safetensors"
        modality.load_state(json.loads(meta_path.read_text()),
                            load_file(str(tensors_path)) if tensors_path.is_file() else {})
        model = cls(modality, cfg["net"], from_dict(DiffusionConfig, cfg["diffusion"], "diffusion"))
        weights = root / ("ema.safetensors" if ema and (root / "ema.safetensors").is_file() else "model.safetensors")
        if not weights.is_file():
            raise CheckpointError(f"{root}: no model.safetensors; the folder holds no trained weights")
        state = load_file(str(weights), device=str(map_location))
        own = model.state_dict()
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            bad = sorted(set(state) ^ set(own)) or [k for k in own if state[k].shape != own[k].shape]
            raise CheckpointError(f"{weights} does not match the network built from config.json "
                                  f"(first mismatching tensor: {bad[0]})")
        model.load_state_dict(state)
        return model.to(map_location)


def resolve_model_dir(directory: str | Path) -> Path:
    """A model folder, or a run/recipe folder that holds one in `model/`."""
    p = Path(directory)
    for cand in (p, p / "model"):
        if (cand / "config.json").is_file():
            return cand
    raise CheckpointError(f"{p} holds no saved model (no config.json here or in {p / 'model'}); "
                          f"pass the folder a training run wrote")
