"""`import discl`: the stages as Python functions, saving and restoring config.yaml exactly as the CLI does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import discl
from discl.cli import main
from discl.config import ConfigError

from .conftest import tree_state

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    match = re.search(r"<!-- test_api.py runs this block -->\n```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert match, "README.md has no block marked for test_api.py"
    return match[1]


def saved(root: Path) -> dict:
    return yaml.safe_load((root / "config.yaml").read_text())


def test_import_discl_is_light_and_names_every_stage():
    code = ("import sys, discl; heavy = [m for m in ('torch', 'pandas', 'discl.api', 'discl.stages') if m in sys.modules]; "
            "print(heavy, discl.__version__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, version = done.stdout.split("] ")
    assert heavy == "[" and version.strip()
    for name in discl.__all__:
        assert getattr(discl, name) is not None


def test_stage_names_that_are_also_submodules_stay_functions():
    import discl.prompts as prompts_module  # noqa: F401 - importing sets package attributes
    import discl.report.build  # noqa: F401

    assert callable(discl.report) and callable(discl.prompts)
    assert discl.report.__doc__.startswith("`discl report`")


def test_the_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), str(README), "exec"), namespace)
    root = tmp_path / "runs" / "notebook"
    assert saved(root)["generate"]["train_steps"] == 10  # every stage ran with prepare's settings
    assert set(namespace["table"]["method"]) == set(saved(root)["train"]["methods"])
    assert namespace["report"] == root / "report.html" and namespace["report"].exists()
    assert len(namespace["synthetic"]) == len(namespace["hard"]) * 2  # one seed, two strengths


def test_a_python_prepare_sets_what_the_next_cli_stage_runs_with(tmp_path, tiny_overrides):
    """Issue 12's try: a prepare from Python at image_size 32, then `discl mine RUN` trains at 32."""
    root = tmp_path / "run"
    table = discl.prepare(root, overrides=[*tiny_overrides, "data.image_size=32"], echo=lambda *_: None)
    assert saved(root)["data"]["image_size"] == 32 and {"train", "val", "test"} <= set(table["split"])
    result = CliRunner().invoke(main, ["mine", str(root), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((root / "models" / "base" / "trained_with.json").read_text())["image_size"] == 32
    assert saved(root)["data"]["image_size"] == 32


def test_a_given_config_is_used_as_is_and_saved(run_copy):
    run, cfg = run_copy
    cfg.eval.num_workers = 0
    metrics = discl.evaluate(run.root, cfg, echo=lambda *_: None)
    assert saved(run.root)["eval"]["num_workers"] == 0 and set(metrics["bucket"]) >= {"overall"}
    with pytest.raises(TypeError, match="either config="):
        discl.evaluate(run.root, cfg, recipe="imagenet-lt")


def test_a_bad_setting_fails_before_writing_anything(run_copy):
    run, _ = run_copy
    before = tree_state(run.root)
    with pytest.raises(ConfigError, match="mine.base.epochs = 0"):
        discl.mine(run.root, overrides=["mine.base.epochs=0"])
    with pytest.raises(TypeError, match="list of"):
        discl.mine(run.root, overrides="mine.base.epochs=2")
    assert tree_state(run.root) == before


def test_a_failed_stage_puts_config_yaml_back(run_copy, tmp_path):
    """As `discl mine --hard-csv bad.csv`: the stage fails after config.yaml was saved; it is restored."""
    run, _ = run_copy
    before = (run.root / "config.yaml").read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("what,ever\n1,2\n")
    with pytest.raises(ValueError, match="bad.csv"):
        discl.mine(run.root, hard_csv=bad, overrides=["generate.text_guidance=9"], echo=lambda *_: None, progress=False)
    assert (run.root / "config.yaml").read_bytes() == before


def test_no_stage_but_prepare_and_demo_creates_a_run_directory(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        discl.score(tmp_path / "missing")
    with pytest.raises(ConfigError, match="does not exist"):
        discl.report(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="not empty"):
        discl.demo(tmp_path / "full")
