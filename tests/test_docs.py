"""The reference docs stay true to the code."""

import re
from pathlib import Path

import pytest
import yaml

from discl.config import RunConfig, load_config
from discl.recipes import flatten, recipe_names, recipe_text, reference_notes
from discl.tables import SCHEMAS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_config_reference_lists_every_key_with_its_default():
    block = re.search(r"```yaml\n(.*?)```", (DOCS / "config.md").read_text(), re.S).group(1)
    assert yaml.safe_load(block) == RunConfig().to_dict()


def test_config_reference_is_generated_from_the_config_source():
    import subprocess
    import sys

    script = DOCS.parent / "scripts" / "config_doc.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_schema_reference_names_every_column_of_every_table():
    text = (DOCS / "schemas.md").read_text()
    for kind, schema in SCHEMAS.items():
        assert f"## {kind}" in text, kind
        for column in schema.names:
            assert re.search(rf"\b{column}\b", text), f"{kind}.{column} is not documented"


def test_recipe_card_is_generated_from_the_recipes():
    import subprocess
    import sys

    script = DOCS.parent / "scripts" / "recipe_card.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_loads_and_validates(name):
    cfg = load_config(None, None, [], recipe=name)  # unknown keys or bad values raise
    assert cfg.generate.backend == "diffusers" and cfg.generate.model == "sdxl-refiner"


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_setting_has_the_reference_value_and_place(name):
    notes = reference_notes(name)
    for key in flatten(yaml.safe_load(recipe_text(name))):
        entry = notes.get(key)
        assert entry, f"{name}: no reference entry for {key}"
        assert str(entry.get("reference") or "").strip(), f"{name}: {key} has no reference value"
        assert str(entry.get("where") or "").strip(), f"{name}: {key} has no place in the reference (or \"-\")"


@pytest.mark.parametrize("name", recipe_names())
def test_every_reference_entry_names_a_config_setting(name):
    defaults = flatten(RunConfig().to_dict())
    for key, entry in reference_notes(name).items():
        assert key in defaults, f"{name}.reference.yaml: {key} is not a config setting"
        assert isinstance(entry, dict), f"{name}: {key} must map to reference, where and note"
        assert set(entry) <= {"reference", "where", "note"}, f"{name}: {key} has unknown fields {sorted(entry)}"
