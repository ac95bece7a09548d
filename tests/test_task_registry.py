"""Task models are registered components: train.task is checked against the registry, the worked example in
docs/extending.md trains by name and its model is evaluated like any classifier, and no module outside the
registry branches on the task's name."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

import discl
from discl.artefacts import model_kind, save_pretrained
from discl.config import ConfigError, load_config
from discl.registry import tasks
from discl.stages.evaluate import is_trained, load_task
from discl.training.task_registry import task_kinds

ROOT = Path(__file__).resolve().parents[1]


def _doc_example() -> str:
    doc = (ROOT / "docs" / "extending.md").read_text()
    block = re.search(r"<!-- example:smooth-ce -->\n```python\n(.*?)```\n<!-- /example -->", doc, re.S)
    assert block, "docs/extending.md lost its worked task type"
    return block.group(1)


@pytest.fixture
def smooth_ce(tmp_path):
    path = tmp_path / "my_tasks.py"
    path.write_text(_doc_example())
    spec = importlib.util.spec_from_file_location("my_tasks", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["my_tasks"] = module
    spec.loader.exec_module(module)
    yield module
    tasks.unregister("smooth-ce")
    sys.modules.pop("my_tasks", None)


def test_train_task_is_checked_against_the_registry(tiny_overrides):
    with pytest.raises(ConfigError, match=r"train.task = 'clasifier': must be one of: classifier, flyp"):
        load_config(None, None, [*tiny_overrides, "train.task=clasifier"])
    assert tasks.names()[:2] == ["classifier", "flyp"] and task_kinds()[:2] == ("classifier", "flyp")


def test_the_worked_task_type_in_the_docs_trains_by_name_and_evaluates(run_copy, smooth_ce):
    run, _ = run_copy
    from discl.training.methods import load_inputs, make_task

    cfg = load_config(run.root, None, ["train.task=smooth-ce", "train.methods=[real-only]"])
    task = make_task(run, cfg, load_inputs(run, cfg, ["real-only"], lambda *_: None))
    assert type(task).__name__ == "SmoothTask"  # the example's loss, not the classifier's
    log = discl.train(run.root, overrides=["train.task=smooth-ce", "train.methods=[real-only]"],
                      echo=lambda *_: None, progress=False)
    assert log["epoch"].tolist() == [0, 1, 2, 3]
    folder = run.method_dir("real-only")
    assert model_kind(folder) == "classifier" and is_trained(folder)
    saved = pd.read_parquet(folder / "log.parquet")
    assert saved["train_loss"].tolist() == log["train_loss"].tolist()
    assert type(load_task(folder)).__name__ == "ClassifierTask"  # evaluated as the classifier it saved
    metrics = discl.evaluate(run.root, echo=lambda *_: None)
    assert set(metrics["method"]) >= {"real-only"}


def test_a_saved_kind_no_task_type_loads_is_refused_by_eval(tmp_path):
    import torch

    save_pretrained(tmp_path / "m", "tiny-clip", {"w": torch.zeros(1)}, {})
    assert not is_trained(tmp_path / "m")
    with pytest.raises(ValueError, match="holds a tiny-clip model, which no registered task type"):
        load_task(tmp_path / "m")


def test_no_task_branches_outside_the_registry():
    src = ROOT / "src" / "discl"
    for name in ("training/methods.py", "stages/compare.py", "stages/evaluate.py", "training/loop.py", "artefacts.py"):
        text = (src / name).read_text()
        assert not re.search(r"task\s*==|==\s*\"flyp\"|hasattr\(self\.task", text), name
    assert "Literal[\"classifier\", \"flyp\"]" not in (src / "config.py").read_text()
