"""Write the recipe card of docs/recipes.md from the shipped recipes and their reference notes.

    python scripts/recipe_card.py            # rewrite the card in docs/recipes.md in place
    python scripts/recipe_card.py --check    # exit 1 if the card is out of date

For each recipe (src/discl/recipes/NAME.yaml) a table gives every setting in the order of the
file, then the extra entries of NAME.reference.yaml: discl's value (the recipe applied over the
defaults), the reference code's value, where the reference sets it, and a note.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from _doc_sync import sync  # noqa: E402  (scripts/ is on sys.path when a script runs)

from discl.config import load_config  # noqa: E402
from discl.recipes import flatten, recipe_names, recipe_text, reference_notes  # noqa: E402

DOC = ROOT / "docs" / "recipes.md"
BEGIN, END = "<!-- recipe-card:begin -->", "<!-- recipe-card:end -->"
REGION = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)


def compact(value, inside: bool = False) -> str:
    """A value in YAML flow style: strings as written (quoted inside lists), floats as Python prints them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value) if inside or not value else value
    if isinstance(value, list):
        return "[" + ", ".join(compact(v, True) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {compact(v, True)}" for k, v in value.items()) + "}"
    return repr(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    # Inline code cannot hold a backtick of its own length; none of the values has one.
    return f"`{_cell(text)}`"


def _value_at(values: dict, dotted: str):
    for part in dotted.split("."):
        values = values[part]
    return values


def recipe_table(name: str) -> str:
    settings = list(flatten(yaml.safe_load(recipe_text(name))))
    notes = reference_notes(name)
    missing = [key for key in settings if key not in notes]
    if missing:
        raise SystemExit(f"src/discl/recipes/{name}.reference.yaml has no entry for {missing}")
    values = load_config(None, None, [], recipe=name).to_dict()
    rows = ["| setting | discl | reference | where | note |", "|---|---|---|---|---|"]
    for key in settings + [k for k in notes if k not in settings]:
        entry = notes[key]
        rows.append(f"| `{key}` | {_code(compact(_value_at(values, key)))} | {_cell(str(entry['reference']))} "
                    f"| {_cell(str(entry['where']))} | {_cell(str(entry.get('note') or ''))} |")
    return "\n".join(rows)


def card() -> str:
    parts = [BEGIN]
    for name in recipe_names():
        title = recipe_text(name).splitlines()[0].lstrip("# ").strip()
        parts += [f"### {name}", "", title, "", recipe_table(name), ""]
    return "\n".join(parts + [END])


def render(doc: str) -> str:
    if not REGION.search(doc):
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} region for the recipe card")
    return REGION.sub(lambda _: card(), doc, count=1)


def main(argv: list[str]) -> int:
    return sync(DOC, render, "recipe_card.py", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
