"""The `multidiff` command: train, sample, nll, score, info, fetch.

Errors a user can cause print one line ("multidiff: error: ...") and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from .config import apply_overrides, load_yaml
from .errors import ConfigError, DataError, MultidiffError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="multidiff", description="Diffusion models for text, audio and vectors.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config", help="YAML file (see recipes/configs/)")
    t.add_argument("--out", default="runs/train", help="run folder (checkpoint and model in OUT/model)")
    t.add_argument("--max-steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set data.path=x.npy --set train.lr=1e-3")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="generate items from a trained model")
    s.add_argument("run_dir")
    s.add_argument("--num", type=int, help="how many items (default 8; with --source one per MR)")
    s.add_argument("--steps", type=int)
    s.add_argument("--method", help="sampler: euler, euler_ancestral, ddim, ddpm, heun, dpmpp_2m, dpmpp_2m_sde")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--guidance", type=float, help="classifier-free guidance scale (1 = none)")
    s.add_argument("--out", help="output file or folder (format chosen by the modality)")
    s.add_argument("--cond", action="append", default=[], metavar="KEY=VALUE",
                   help="conditioning, e.g. --cond label=7")
    s.add_argument("--source", metavar="FILE",
                   help="data-to-text models: meaning representations, one per line ('slot : value | ...', or "
                        "'MR||sentence' lines); one output per MR, in order")

    n = sub.add_parser("nll", help="negative log-likelihood of data under a trained model")
    n.add_argument("run_dir")
    n.add_argument("--data", required=True)
    n.add_argument("--method", default="elbo", choices=["elbo", "ode"])
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--batch-size", type=int, default=256)
    n.add_argument("--json", action="store_true", help="print mean and per-item values as JSON")

    c = sub.add_parser("score", help="per-item anomaly scores (higher = more anomalous) as CSV")
    c.add_argument("run_dir")
    c.add_argument("--data", required=True, help="file or folder of items to score")
    c.add_argument("--out", required=True, help="CSV to write")
    c.add_argument("--method", default="elbo", choices=["elbo", "ode", "denoise", "contrast"])
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--batch-size", type=int, default=64)
    c.add_argument("--labels", choices=["given", "null", "best"],
                   help="class-conditional models: 'null' (default) scores p(x) with the null label; 'best' takes "
                        "the lowest score over all class labels (C times the cost); 'given' uses labels read "
                        "from the items' names. Unconditional models: 'given' (the default)")
    c.add_argument("--sigmas", help="noise levels of --method denoise and contrast, comma-separated, in the "
                                    "model's data units (default: 0.05,0.1,0.2,0.5,1 for denoise, 0.5,1,2,4 for contrast)")
    c.add_argument("--contrast-weight", type=float,
                   help="--method contrast: weight of log e(x) - log e(T x) beside log e(x) (default 4)")
    c.add_argument("--calibrate", metavar="VALIDATION_PATH",
                   help="normal validation data: fit a threshold and add an 'anomalous' column")
    c.add_argument("--fpr", type=float, default=0.01, help="false-positive rate of the calibrated threshold")

    i = sub.add_parser("info", help="describe a saved model")
    i.add_argument("run_dir")

    f = sub.add_parser("fetch", help="download a public dataset (only when asked) and convert it")
    f.add_argument("dataset", choices=["e2e"], help="e2e: the E2E NLG release -> e2e_nlg_{train,valid,test}.txt")
    f.add_argument("--out", required=True, help="folder for the download and the converted files")
    f.add_argument("--sha256", help="expected SHA-256 of the download (printed by every fetch; pin it)")
    f.add_argument("--url", help="another address of the same release (a mirror, or a file:// path)")
    return p


def _cmd_train(a: argparse.Namespace) -> int:
    from .run import parse_run_config, train_run

    data = load_yaml(a.config)
    flags = {"train.max_steps": a.max_steps, "train.batch_size": a.batch_size,
             "train.checkpoint_every": a.checkpoint_every, "train.seed": a.seed}
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None] + list(a.set)
    if a.quiet:
        overrides.append("train.quiet=true")
    cfg = parse_run_config(apply_overrides(data, overrides))
    _, metrics = train_run(cfg, a.out, resume=a.resume)
    print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}, indent=None))
    print(f"model saved in {Path(a.out) / 'model'}")
    return 0


def _parse_cond(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--cond {item!r}: expected key=value, e.g. --cond label=7")
        k, v = item.split("=", 1)
        out[k] = _number(v)
    return out


def _number(text: str) -> Any:
    """`text` as an int or a float when it is one (label=7, length_quantile=0.5), else the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_sources(path: str) -> list[str]:
    """The non-empty lines of a UTF-8 file of meaning representations; DataError when there are none."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8-sig").splitlines()]
    except OSError as e:
        raise DataError(f"--source {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"--source {path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    lines = [ln for ln in lines if ln]
    if not lines:
        raise DataError(f"--source {path} holds no meaning representations; give one per line, e.g. "
                        "'name : The Eagle | food : French'")
    return lines


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers, e.g. {flag} 1,2") from None


def _cmd_sample(a: argparse.Namespace) -> int:
    from .run import load

    model = load(a.run_dir)
    cond = _parse_cond(a.cond)
    if a.source:
        cond["source"] = _read_sources(a.source)
        if a.num not in (None, len(cond["source"])):
            raise ConfigError(f"--num {a.num} with --source {a.source} ({len(cond['source'])} MRs): one output is "
                              "made per MR; leave out --num")
    num = len(cond["source"]) if a.source else 8 if a.num is None else a.num
    samples = model.sample(num, steps=a.steps, method=a.method, seed=a.seed, guidance=a.guidance, **cond)
    if a.out:
        for path in model.modality.write_samples(samples, a.out):
            print(path)
    else:
        for s in samples:
            print(s.tolist() if hasattr(s, "tolist") and not isinstance(s, str) else s)
    return 0


def _cmd_nll(a: argparse.Namespace) -> int:
    from .run import load

    model = load(a.run_dir)
    items, skipped = model.modality.read(a.data)
    unit, _ = model.modality.units()
    nats, units = [], []
    for start in range(0, len(items), a.batch_size):
        batch = model.modality.encode(items[start:start + a.batch_size])
        nats.append(model.nll(batch, method=a.method, seed=a.seed + start).cpu())
        units.append(model.units_per_item(batch))
    nats_t, units_t = torch.cat(nats), torch.cat(units)
    ln2 = torch.log(torch.tensor(2.0))
    per_unit = (nats_t / units_t / ln2).tolist()
    per_item = nats_t.tolist()
    mean = float(nats_t.sum() / units_t.sum() / ln2)  # total bits over total units (per-token convention)
    counts = _input_counts(model.modality)
    result = {"method": a.method, "units": f"bits/{unit}", "mean": mean, "items": len(per_unit),
              "skipped": [{"item": str(w), "reason": r} for w, r in skipped], **counts}
    if a.json:
        result["per_item"] = per_unit
        result["per_item_nats"] = per_item
        print(json.dumps(result))
    else:
        print(f"{a.method} NLL: {mean:.4f} bits/{unit} over {len(per_unit)} items"
              + (f" ({len(skipped)} skipped)" if skipped else ""))
        _print_input_counts(counts)
    return 0


def _input_counts(modality) -> dict:
    """{"input_counts": ...} for a modality that counts what it altered while reading and encoding (text:
    replaced bytes, cut lines, UNK tokens), else {}."""
    report = getattr(modality, "report", None)
    return {"input_counts": report()} if callable(report) else {}


def _print_input_counts(counts: dict) -> None:
    c = counts.get("input_counts", {})
    altered = {k: c[k] for k in ("bad_utf8_replaced", "truncated_chars", "truncated_lines", "unk_tokens")
               if c.get(k)}
    if altered:
        print("input kept but altered: " + ", ".join(f"{k} {v}" for k, v in altered.items())
              + (f" of {c['tokens']} tokens" if "unk_tokens" in altered else ""), file=sys.stderr)


def _cmd_score(a: argparse.Namespace) -> int:
    import csv

    from . import scoring
    from .modalities.base import item_names
    from .run import load

    model = load(a.run_dir)
    items, skipped = model.modality.read(a.data)
    names = item_names(items)
    labels = a.labels or scoring.default_label_mode(model)
    sigmas = _floats(a.sigmas, "--sigmas") if a.sigmas else scoring.default_sigmas(a.method)
    weight = scoring.CONTRAST_WEIGHT if a.contrast_weight is None else a.contrast_weight
    options = {"labels": labels, "sigmas": sigmas, "contrast_weight": weight}
    scores = scoring.score_items(model, items, a.method, a.seed, a.batch_size, progress=sys.stderr.isatty(),
                                 **options)
    counts = _input_counts(model.modality)  # of --data only: taken before the calibration file is read
    threshold = None
    if a.calibrate:
        normal, _ = model.modality.read(a.calibrate)
        threshold = scoring.threshold_at_fpr(
            scoring.score_items(model, normal, a.method, a.seed, a.batch_size, **options), a.fpr)
    unit = scoring.units(model, a.method)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item", "score", "method", "units"] + (["anomalous"] if threshold is not None else [])
                   + ["error"])
        for name, sc in zip(names, scores):
            w.writerow([name, f"{sc:.6g}", a.method, unit] + ([int(sc > threshold)] if threshold is not None
                                                              else []) + [""])
        for name, reason in skipped:
            w.writerow([name, "", a.method, unit] + ([""] if threshold is not None else []) + [reason])
    if threshold is not None:
        (out.with_suffix(".threshold.json")).write_text(json.dumps(
            {"threshold": threshold, "fpr": a.fpr, "method": a.method, "labels": labels,
             **({"sigmas": list(sigmas)} if a.method in ("denoise", "contrast") else {}),
             **({"contrast_weight": weight} if a.method == "contrast" else {}), "units": unit,
             "calibration_data": str(a.calibrate)}, indent=2))
    print(f"scored {len(scores)} items ({len(skipped)} unreadable, listed with the reason) -> {out}"
          + (f"; threshold {threshold:.4g} {unit} at FPR {a.fpr}" if threshold is not None else ""))
    _print_input_counts(counts)
    return 0


def _cmd_info(a: argparse.Namespace) -> int:
    from .model import resolve_model_dir
    from .run import load

    root = resolve_model_dir(a.run_dir)
    model = load(root)
    params = sum(p.numel() for p in model.net.parameters())
    info = {"folder": str(root), "modality": model.modality.name, "parameters": params,
            "diffusion": model.diffusion_dict(), "net": model.net_config}
    state = root / "trainer_state.json"
    if state.is_file():
        ts = json.loads(state.read_text())
        info["step"] = ts.get("step")
    print(json.dumps(info, indent=2, default=str))
    return 0


def _cmd_fetch(a: argparse.Namespace) -> int:
    from .modalities.text.e2e import E2E_URL, fetch_e2e

    result = fetch_e2e(a.out, url=a.url or E2E_URL, sha256=a.sha256)
    for split, path in result["files"].items():
        print(f"{split}: {path} ({result['lines'][split]:,} lines)")
    print(f"sha256 of the download: {result['sha256']}" + ("" if a.sha256 else " (not checked: pass --sha256 "
                                                           "to verify later fetches against it)"))
    return 0


COMMANDS = {"train": _cmd_train, "sample": _cmd_sample, "nll": _cmd_nll, "score": _cmd_score,
            "info": _cmd_info, "fetch": _cmd_fetch}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except MultidiffError as e:
        print(f"multidiff: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
