"""The reference docs stay true to the code."""

import re
from pathlib import Path

import yaml

from discl.config import RunConfig
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


def test_recipe_configs_are_valid(tmp_path):
    from discl.config import load_config

    blocks = re.findall(r"```yaml\n(.*?)```", (DOCS / "recipes.md").read_text(), re.S)
    assert len(blocks) == 2
    for i, block in enumerate(blocks):
        path = tmp_path / f"recipe{i}.yaml"
        path.write_text(block)
        cfg = load_config(None, path)  # unknown keys or bad values raise
        assert cfg.generate.backend == "diffusers" and cfg.generate.model == "sdxl-refiner"
