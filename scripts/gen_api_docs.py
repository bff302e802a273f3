"""Generate docs/api.md, the API reference, from the docstrings of multidiff's public modules.

    python scripts/gen_api_docs.py            # rewrite docs/api.md
    python scripts/gen_api_docs.py --check    # exit 1 if docs/api.md is out of date (what the tests check)
    python scripts/gen_api_docs.py --missing  # list public objects without a docstring

For each module: its docstring, then every public class and function (the module's `__all__`, else the
names it defines that do not start with `_`, in source order) with its signature and docstring; for classes,
their public methods and properties. Public constants of plain values are listed with their value.
The output depends only on the source (no memory addresses, no dates), so it is reproducible.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "api.md"
MODULES = [
    "multidiff.core.schedules",
    "multidiff.core.process",
    "multidiff.core.samplers",
    "multidiff.core.losses",
    "multidiff.core.likelihood",
    "multidiff.model",
    "multidiff.run",
    "multidiff.scoring",
    "multidiff.train",
    "multidiff.modalities.base",
]
HEADER = """# API reference

Generated from the docstrings by `python scripts/gen_api_docs.py`; do not edit by hand (the tests check that
this file is up to date). Tutorials: [quickstart.md](quickstart.md), [concepts.md](concepts.md),
[plugins.md](plugins.md).
"""
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_PLAIN = (str, int, float, bool, type(None))


def _clean(text: str) -> str:
    """Docstring text as Markdown. Paragraphs with indented lines (argument lists, aligned tables, formulas)
    go into plain fences so their layout survives; no ```python fence is emitted (the docs tests run those)."""
    text = text.replace("```python", "```text").strip()
    out = []
    for para in re.split(r"\n\s*\n", text):
        lines = para.splitlines()
        if "```" not in para and any(line[:1].isspace() for line in lines):
            out.append("\n".join(["```", *lines, "```"]))
        else:
            out.append(para)
    return "\n\n".join(out)


class _Annotation:
    """Shows a string annotation (``from __future__ import annotations``) without quotes."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature(obj: Any, drop_self: bool = False) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name in ("self", "cls"):
        params = params[1:]
    unquote = lambda a: _Annotation(a) if isinstance(a, str) else a
    params = [q.replace(annotation=unquote(q.annotation)) for q in params]
    sig = sig.replace(parameters=params, return_annotation=unquote(sig.return_annotation))
    return _ADDRESS.sub("", str(sig))


def _defined_here(obj: Any, module: Any) -> bool:
    return getattr(obj, "__module__", None) == module.__name__


def _source_line(obj: Any) -> int:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return 1 << 30


def public_members(module: Any) -> list[tuple[str, Any]]:
    """(name, object) of the module's public API, in `__all__` order or else source order."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return [(n, getattr(module, n)) for n in names]
    found = [(n, o) for n, o in vars(module).items()
             if not n.startswith("_") and (inspect.isclass(o) or inspect.isfunction(o)) and _defined_here(o, module)]
    return sorted(found, key=lambda item: (_source_line(item[1]), item[0]))


def constants(module: Any) -> list[tuple[str, Any]]:
    """Public UPPER_CASE constants holding plain values (strings, numbers, tuples/lists of them)."""
    out = []
    for n, v in vars(module).items():
        if n.isupper() and not n.startswith("_"):
            plain = isinstance(v, _PLAIN) or (isinstance(v, (tuple, list)) and all(isinstance(x, _PLAIN) for x in v))
            if plain:
                out.append((n, v))
    return out


def _doc(obj: Any) -> str:
    doc = inspect.getdoc(obj)
    return _clean(doc) if doc else "*(no docstring)*"


def _class_members(cls: type) -> list[tuple[str, str, Any]]:
    """(kind, name, object) of the public methods and properties defined in the class body, in source order."""
    items = []
    for n, raw in vars(cls).items():
        if n.startswith("_") and n != "__call__":
            continue
        if isinstance(raw, property):
            items.append(("property", n, raw))
        elif isinstance(raw, (classmethod, staticmethod)):
            items.append(("classmethod" if isinstance(raw, classmethod) else "staticmethod", n, raw.__func__))
        elif inspect.isfunction(raw):
            items.append(("method", n, raw))
    return sorted(items, key=lambda it: _source_line(it[2].fget if it[0] == "property" else it[2]))


def _render_class(name: str, cls: type, lines: list[str]) -> None:
    kind = "dataclass" if dataclasses.is_dataclass(cls) else "class"
    sig = _signature(cls)
    sig = sig[:-len(" -> None")] if sig.endswith(" -> None") else sig
    lines += [f"### {name}", "", "```", f"{kind} {name}{sig}", "```", "", _doc(cls), ""]
    for mkind, mname, obj in _class_members(cls):
        if mkind == "property":
            head = f"{name}.{mname}  (property)"
            doc = _clean(inspect.getdoc(obj) or "") or "*(no docstring)*"
        else:
            prefix = {"classmethod": "@classmethod ", "staticmethod": "@staticmethod "}.get(mkind, "")
            head = f"{prefix}{name}.{mname}{_signature(obj, drop_self=mkind != 'staticmethod')}"
            doc = _doc(obj)
        lines += [f"#### {name}.{mname}", "", "```", head, "```", "", doc, ""]


def render_module(modname: str) -> str:
    module = importlib.import_module(modname)
    lines = [f"## {modname}", "", _doc(module), ""]
    consts = constants(module)
    if consts:
        lines += ["Constants:", "", "```"] + [f"{n} = {v!r}" for n, v in consts] + ["```", ""]
    for name, obj in public_members(module):
        if inspect.isclass(obj):
            _render_class(name, obj, lines)
        elif callable(obj):
            lines += [f"### {name}", "", "```", f"def {name}{_signature(obj)}", "```", "", _doc(obj), ""]
    return "\n".join(lines)


def render() -> str:
    """The whole reference as one Markdown string."""
    toc = [f"- [{m}](#{m.replace('.', '')})" for m in MODULES]
    body = [render_module(m) for m in MODULES]
    return "\n".join([HEADER, *toc, "", *body]).rstrip() + "\n"


def missing_docstrings() -> list[str]:
    """Qualified names of public modules, classes, functions and methods without a docstring."""
    out = []
    for modname in MODULES:
        module = importlib.import_module(modname)
        if not inspect.getdoc(module):
            out.append(modname)
        for name, obj in public_members(module):
            if not inspect.getdoc(obj) or (inspect.isclass(obj) and obj.__doc__ is None):
                out.append(f"{modname}.{name}")
            if inspect.isclass(obj):
                for kind, mname, member in _class_members(obj):
                    if not (inspect.getdoc(member) if kind != "property" else member.__doc__):
                        out.append(f"{modname}.{name}.{mname}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the file is out of date; write nothing")
    ap.add_argument("--missing", action="store_true", help="list public objects without a docstring")
    ap.add_argument("--out", type=Path, default=OUTPUT)
    a = ap.parse_args(argv)
    if a.missing:
        print("\n".join(missing_docstrings()))
        return 0
    text = render()
    if a.check:
        current = a.out.read_text(encoding="utf-8") if a.out.is_file() else ""
        if current != text:
            print(f"{a.out} is out of date; run: python scripts/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    a.out.write_text(text, encoding="utf-8")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
