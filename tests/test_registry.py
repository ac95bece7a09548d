"""Registries: a name registered anywhere works everywhere a setting names one (config check, training,
--help), discl's own are listed in a stable order, and plugins load from DISCL_PLUGINS."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import discl
from discl.config import ConfigError, load_config
from discl.curricula import CurriculumBase, CurriculumSpec, Stage, create_curriculum
from discl.registry import Registry, UnknownName, curricula, datasets, filters, generators, scorers

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class _EveryOther(CurriculumBase):
    """Throwaway: one epoch per stage, alternating the lowest and the highest level, then real data."""

    levels: tuple[int, ...]
    curriculum_epochs: int
    total_epochs: int
    name: str = "every-other"

    def next_stage(self, history):
        epoch = sum(stage.epochs for stage in history)
        if epoch >= self.total_epochs:
            return None
        if epoch >= self.curriculum_epochs:
            return Stage(None, self.total_epochs - epoch)
        return Stage(min(self.levels) if epoch % 2 == 0 else max(self.levels), 1)


@pytest.fixture
def every_other():
    @curricula.register("every-other-test")
    def build(spec: CurriculumSpec) -> _EveryOther:
        return _EveryOther(spec.levels, spec.curriculum_epochs, spec.total_epochs, name=spec.name)

    yield build
    curricula.unregister("every-other-test")


def test_a_curriculum_registered_here_is_checked_and_trained_by_name(run_copy, every_other):
    run, _ = run_copy
    with pytest.raises(ConfigError, match="every-other-tset"):  # a typo is still caught, listing the new name too
        load_config(run.root, None, ["train.methods=[every-other-tset]"])
    with pytest.raises(ConfigError, match="must be one of: .*every-other-test"):
        load_config(run.root, None, ["train.methods=[every-other-tset]"])
    log = discl.train(run.root, overrides=["train.methods=[every-other-test]"], echo=lambda *_: None, progress=False)
    # TINY: levels [0, 50, 100], 3 curriculum epochs of 4
    assert log["method"].unique().tolist() == ["every-other-test"]
    assert log["level"].tolist() == [0, 100, 0, -1]
    assert "every-other-test" in pd.read_parquet(run.method_dir("every-other-test") / "log.parquet")["method"].tolist()


def _doc_example() -> str:
    doc = (ROOT / "docs" / "extending.md").read_text()
    block = re.search(r"<!-- example:two-ends -->\n```python\n(.*?)```\n<!-- /example -->", doc, re.S)
    assert block, "docs/extending.md lost its worked example"
    return block.group(1)


def test_the_worked_example_in_the_docs_trains_from_the_command_line_as_a_plugin(run_copy, tmp_path):
    run, _ = run_copy
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "my_curricula.py").write_text(_doc_example())
    assert len(_doc_example().strip().splitlines()) <= 32  # "a new curriculum in about 30 lines"
    env = dict(os.environ, DISCL_PLUGINS="my_curricula",
               PYTHONPATH=os.pathsep.join([str(plugins), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "discl.cli", "train", str(run.root), "--no-progress", "--set", "train.methods=[two-ends]"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    log = pd.read_parquet(run.method_dir("two-ends") / "log.parquet")
    assert log["level"].tolist() == [0, 100, 100, -1]  # 3 curriculum epochs: 1 at the lowest level, 2 at the highest
    # without the plugin the name is unknown, in one line naming the setting
    env.pop("DISCL_PLUGINS")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "train.methods = 'two-ends': must be one of:" in done.stderr


def test_a_plugin_that_cannot_be_imported_is_named(monkeypatch):
    from discl import registry

    monkeypatch.setenv("DISCL_PLUGINS", "no_such_discl_plugin")
    monkeypatch.setattr(registry, "_plugins_loaded", set())
    with pytest.raises(ImportError, match="DISCL_PLUGINS names 'no_such_discl_plugin'"):
        registry.load_plugins()


def test_discl_own_names_in_a_stable_order():
    assert curricula.names() == ["real-only", "all-synthetic", "non-adaptive", "reverse", "fixed", "random", "adaptive",
                                 "adaptive-warmup", "adaptive-per-class", "cuda"]
    assert datasets.names() == ["digits-lt", "image-folder", "imagenet-lt", "iwildcam", "csv", "hf"]
    assert generators.names() == ["pixel-diffusion", "diffusers"]
    assert scorers.names() == ["tiny-clip", "transformers", "open_clip"]
    assert filters.names() == ["text-similarity", "image-similarity", "base-confidence", "class-cap"]
    # what each declares is what the training run prepares for it
    assert [e.name for e in curricula if not e.synthetic] == ["real-only", "cuda"]
    assert [e.name for e in curricula if e.validation] == ["adaptive", "adaptive-warmup", "adaptive-per-class"]
    assert [e.name for e in curricula if e.augmentation] == ["cuda"]


def test_registering_mistakes_are_refused_with_the_reason():
    reg = Registry("thing", "x.thing", [], defaults={"fast": False})
    reg.register("a")(len)
    with pytest.raises(ValueError, match="'a' is registered twice"):
        reg.register("a")(max)
    with pytest.raises(TypeError, match=r"unknown declaration\(s\) \['quick'\]; known: \['fast'\]"):
        reg.register("b", quick=True)
    with pytest.raises(UnknownName, match=r"unknown thing 'c' \(x.thing\); known: a"):
        reg.get("c")
    reg.register("p", parameter="n")(min)
    assert reg.get("p-7").target is min and reg.parameter_of("p-7") == "7" and reg.parameter_of("p") is None
    assert reg.find("p-") is None and reg.describe_names() == "a, p, p-<n>"


def test_fixed_level_parameter_reaches_the_builder():
    assert create_curriculum("fixed-70", 4, [10], 2).plan()[0] == Stage(70, 2)
    with pytest.raises(ValueError, match="expected fixed-<level 0..100>"):
        create_curriculum("fixed-170", 4, [10], 2)


def test_help_lists_the_registered_names_without_importing_them():
    out = subprocess.run([sys.executable, "-m", "discl.cli", "train", "--help"], capture_output=True, text=True, check=True).stdout
    assert "Registered (train.methods)" in out and "adaptive-per-class" in out and "fixed-<level>" in out
    code = "import sys; import discl.cli; print(sorted(m for m in ('torch', 'numpy', 'discl.curricula') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    listing = subprocess.run([sys.executable, "-m", "discl.cli", "registry", "scorer"], capture_output=True, text=True, check=True).stdout
    assert listing.splitlines()[0] == "scorer backend (score.backend):" and "  open_clip:" in listing
