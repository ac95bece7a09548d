"""Write the YAML block of docs/config.md from the configuration's own defaults and comments.

    python scripts/config_doc.py            # rewrite docs/config.md in place
    python scripts/config_doc.py --check    # exit 1 if docs/config.md is out of date

Each key is listed with its default, the comment lines written above its field in
src/discl/config.py, and the comment at the end of its line, preceded by what the field's type
allows (its choices, range and length, read from the same annotations that validate it; for a name
setting, the names registered in discl.registry). Below it, one table per registry.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import textwrap
import types
import typing
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from _doc_sync import sync  # noqa: E402  (scripts/ is on sys.path when a script runs)

from discl.config import DataConfig, GeneratorConfig, RunConfig, ScorerConfig, TrainConfig  # noqa: E402
from discl.registry import REGISTRIES, Registry, curricula, datasets, generators, scorers  # noqa: E402

DOC = ROOT / "docs" / "config.md"
WIDTH = 100
FIELD = re.compile(r"^    (\w+): ")


def _comments(cls: type) -> dict[str, tuple[list[str], str]]:
    """field name -> (comment lines above it, comment at the end of its line), for fields defined in ``cls``."""
    out: dict[str, tuple[list[str], str]] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped[1:].strip())
            continue
        match = FIELD.match(line)
        if match:
            trailing = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            out[match.group(1)] = (above, trailing)
        above = []
    return out


def _field_comments(cls: type) -> dict[str, tuple[list[str], str]]:
    merged: dict[str, tuple[list[str], str]] = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base):
            merged.update(_comments(base))
    return merged


def _bounds(meta: list) -> str:
    lo = next(((m.ge, "[") if hasattr(m, "ge") else (m.gt, "(") for m in meta if hasattr(m, "ge") or hasattr(m, "gt")), None)
    hi = next(((m.le, "]") if hasattr(m, "le") else (m.lt, ")") for m in meta if hasattr(m, "le") or hasattr(m, "lt")), None)
    if lo and hi:
        return f"in {lo[1]}{lo[0]}, {hi[0]}{hi[1]}"
    if lo:
        return (">= " if lo[1] == "[" else "> ") + str(lo[0])
    if hi:
        return ("<= " if hi[1] == "]" else "< ") + str(hi[0])
    return ""


def allowed(kind) -> str:
    """What a field's annotation accepts, in words ("" when any value of its plain type does)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = allowed(inner[0]) if len(inner) == 1 else ""
        return f"{text} or null" if text else ""
    if origin is typing.Literal:
        return " | ".join(map(str, args))
    if origin is list:
        inner = allowed(args[0])
        return f"list of values {inner}" if inner else ""
    if origin is not typing.Annotated:
        return ""
    base, extras = args[0], args[1:]
    meta = [m for e in extras for m in (getattr(e, "metadata", None) or [e])]
    rules = [m.func.allowed for m in meta if hasattr(getattr(m, "func", None), "allowed")]
    if typing.get_origin(base) is list:
        lengths = {type(m).__name__: getattr(m, "min_length", getattr(m, "max_length", None)) for m in meta}
        inner = allowed(typing.get_args(base)[0]) or "values"
        inner = inner if inner.startswith(("list", "values")) else f"values {inner}" if inner[0] in "<>i" else f"values ({inner})"
        if lengths.get("MinLen") and lengths.get("MinLen") == lengths.get("MaxLen"):
            text = f"{lengths['MinLen']} {inner}"
        else:
            text = ("non-empty list of " if lengths.get("MinLen") else "list of ") + inner
        return ", ".join([text, *rules])
    return ", ".join(w for w in (_bounds(meta), *rules) if w)


def _scalar(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text[:-4].strip() if text.endswith("\n...") or text.endswith("...") else text


#: Settings whose values are registered names (discl.registry): their choices come from the registry.
NAMED: dict[tuple[type, str], tuple[Registry, tuple[str, ...]]] = {
    (DataConfig, "name"): (datasets, ()), (GeneratorConfig, "backend"): (generators, ()),
    (ScorerConfig, "backend"): (scorers, ("auto",)), (TrainConfig, "methods"): (curricula, ()),
}


def _named(cls: type, name: str) -> str:
    if (cls, name) not in NAMED:
        return ""
    registry, also = NAMED[(cls, name)]
    names = [*also, *(e.name + (f" | {e.name}-<{e.parameter}>" if e.parameter else "") for e in registry.entries())]
    return ("list of " if name == "methods" else "") + " | ".join(names)


def _emit(obj, indent: int, lines: list[str]) -> None:
    cls = type(obj)
    notes = _field_comments(cls)
    hints = typing.get_type_hints(cls)
    kinds = typing.get_type_hints(cls, include_extras=True)
    pad = "  " * indent
    for f in dataclasses.fields(obj):
        above, trailing = notes.get(f.name, ([], ""))
        trailing = "; ".join(t for t in (_named(cls, f.name) or allowed(kinds[f.name]), trailing) if t)
        if above:
            lines += [pad + "# " + w for w in textwrap.wrap(" ".join(above), WIDTH, break_on_hyphens=False)]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            lines.append(f"{pad}{f.name}:" + (f"  # {trailing}" if trailing else ""))
            _emit(value, indent + 1, lines)
        else:
            lines.append(f"{pad}{f.name}: {_scalar(value)}" + (f"  # {trailing}" if trailing else ""))


def config_yaml() -> str:
    lines: list[str] = []
    _emit(RunConfig(), 0, lines)
    return "\n".join(lines) + "\n"


def registry_tables() -> str:
    """One table per registry: every registered name, what it is, what it needs and the settings it reads."""
    out = []
    for reg in REGISTRIES.values():
        out += [f"### {reg.kind} (`{reg.setting}`)", "", "| name | what it is | flags | settings it reads |", "|---|---|---|---|"]
        for e in reg.entries():
            shown = f"`{e.name}`" + (f", `{e.name}-<{e.parameter}>`" if e.parameter else "")
            flags = ", ".join(k for k, v in e.info.items() if v is True)
            settings = ", ".join(f"`{k}`" for k in e.info.get("settings", ()))
            out.append(f"| {shown} | {e.summary.replace('|', '/')} | {flags} | {settings} |")
        out.append("")
    return "\n".join(out)


def render(doc: str) -> str:
    doc = re.sub(r"```yaml\n.*?```", lambda _: "```yaml\n" + config_yaml() + "```", doc, count=1, flags=re.S)
    return re.sub(r"(<!-- registries:begin -->\n).*?(<!-- registries:end -->)",
                  lambda m: m.group(1) + registry_tables() + m.group(2), doc, count=1, flags=re.S)


def main(argv: list[str]) -> int:
    return sync(DOC, render, "config_doc.py", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
