"""Shared fixtures: tiny, fast settings, and one small run directory built once per session."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from discl.config import load_config
from discl.rundir import RunDir

torch.set_num_threads(min(2, os.cpu_count() or 1))
warnings.filterwarnings("ignore", message="No pretrained weights loaded")

# Small enough for seconds on 2 CPU cores, large enough that every stage does real work.
TINY = [
    "data.max_per_class=20",
    "data.imbalance_ratio=20",
    "data.val_per_class=5",
    "data.test_per_class=10",
    "data.many_above=10",
    "data.few_below=3",
    "mine.base.epochs=3",
    "mine.rules=[few_shot]",
    "generate.seeds=[10,20]",
    "generate.strengths=[0.2,0.5,1.0]",
    "generate.train_steps=40",
    "generate.inference_steps=10",
    "score.train_steps=30",
    "score.text_threshold=-1",
    "train.classifier.epochs=4",
    "train.curriculum_epochs=3",
    "train.levels=[0,50,100]",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture
def tiny_config():
    return load_config(None, None, TINY)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory through every stage at tiny settings (built once, read-only for tests)."""
    from discl.stages.demo import run_demo

    run = RunDir(tmp_path_factory.mktemp("tiny") / "run")
    result = run_demo(run, load_config(None, None, TINY), echo=lambda *_: None, progress=False)
    return run, result


@pytest.fixture
def run_copy(tiny_run, tmp_path, tiny_overrides):
    """A writable copy of the tiny run, with the TINY settings."""
    import shutil

    run, _ = tiny_run
    shutil.copytree(run.root, tmp_path / "run")
    copy = RunDir(tmp_path / "run")
    return copy, load_config(copy.root, None, tiny_overrides)


def tree_state(root) -> dict[str, str]:
    """Every file under ``root``: relative path -> digest of its bytes. Equal before and after a command
    means the command changed nothing there."""
    import hashlib
    from pathlib import Path

    root = Path(root)
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}
