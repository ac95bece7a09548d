"""The paper's recipes as config files shipped with discl: ``discl prepare RUN --recipe NAME``.

Each recipe is a YAML file of settings (applied over the defaults, under --config and --set);
beside it, ``NAME.reference.yaml`` says for every setting what the reference code uses and where
(docs/recipes.md is generated from both by scripts/recipe_card.py)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

REFERENCE_SUFFIX = ".reference.yaml"


def _folder():
    return resources.files(__package__)


def recipe_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in _folder().iterdir()
                  if p.name.endswith(".yaml") and not p.name.endswith(REFERENCE_SUFFIX))


def recipe_path(name: str) -> Path:
    """The shipped config file of recipe ``name``; a ValueError naming the recipes there are otherwise."""
    if name not in recipe_names():
        raise ValueError(f"unknown recipe {name!r}; known: {recipe_names()} (`discl recipes` lists them)")
    return Path(str(_folder().joinpath(f"{name}.yaml")))


def recipe_text(name: str) -> str:
    return recipe_path(name).read_text(encoding="utf-8")


def reference_notes(name: str) -> dict:
    """{dotted setting: {"reference": ..., "where": ..., "note": ...}} for recipe ``name``."""
    recipe_path(name)
    return yaml.safe_load(_folder().joinpath(f"{name}{REFERENCE_SUFFIX}").read_text(encoding="utf-8")) or {}


def flatten(values: dict, prefix: str = "") -> dict:
    """{"train": {"classifier": {"lr": 1e-3}}} -> {"train.classifier.lr": 1e-3}."""
    out: dict = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out
