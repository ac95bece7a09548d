"""Write the YAML block of docs/config.md from the configuration's own defaults and comments.

    python scripts/config_doc.py            # rewrite docs/config.md in place
    python scripts/config_doc.py --check    # exit 1 if docs/config.md is out of date

Each key is listed with its default, the comment lines written above its field in
src/discl/config.py, and the comment at the end of its line.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import textwrap
import typing
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from discl.config import RunConfig  # noqa: E402

DOC = ROOT / "docs" / "config.md"
WIDTH = 100
FIELD = re.compile(r"^    (\w+): [^=]+?(?: = (.*))?$")


def _comments(cls: type) -> dict[str, tuple[list[str], str]]:
    """field name -> (comment lines above it, comment at the end of its line), for fields defined in ``cls``."""
    out: dict[str, tuple[list[str], str]] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped[1:].strip())
            continue
        match = FIELD.match(line.split("  # ")[0].rstrip())
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


def _scalar(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text[:-4].strip() if text.endswith("\n...") or text.endswith("...") else text


def _emit(obj, indent: int, lines: list[str]) -> None:
    cls = type(obj)
    notes = _field_comments(cls)
    hints = typing.get_type_hints(cls)
    pad = "  " * indent
    for f in dataclasses.fields(obj):
        above, trailing = notes.get(f.name, ([], ""))
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


def render(doc: str) -> str:
    return re.sub(r"```yaml\n.*?```", lambda _: "```yaml\n" + config_yaml() + "```", doc, count=1, flags=re.S)


def main(argv: list[str]) -> int:
    current = DOC.read_text()
    wanted = render(current)
    if "--check" in argv:
        if current != wanted:
            print(f"{DOC} is out of date: run python scripts/config_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
