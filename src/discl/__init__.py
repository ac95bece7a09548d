"""DisCL: synthetic-to-real curricula from image-guided diffusion.

From Python, each stage is a function doing what its `discl` command does, settings saved to
``RUN/config.yaml`` included (see discl.api)::

    import discl

    discl.prepare("runs/a", overrides=["data.image_size=32"])
    discl.mine("runs/a")  # runs with the settings prepare saved

A method's curriculum in your own PyTorch training loop (docs/training-loops.md)::

    data = discl.CurriculumData("runs/a", "non-adaptive")
    for epoch in data.epochs(predict):   # the stage's real and synthetic images, as `discl train` sees them
        for images, labels in epoch.loader(64):
            ...

Names are imported on first use, so ``import discl`` loads neither torch nor the stages.
"""

from __future__ import annotations

import sys
from importlib import import_module, metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

try:
    __version__ = metadata.version("discl")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

STAGES = ("prepare", "mine", "prompts", "generate", "score", "train", "evaluate", "compare", "report", "demo", "export")

# public name -> the module that defines it
_WHERE = {"load_config": "discl.config", "RunConfig": "discl.config", "ConfigError": "discl.config",
          "RunDir": "discl.rundir", "CurriculumData": "discl.curriculum_data", "Callback": "discl.training.callbacks",
          **{name: "discl.api" for name in STAGES}}

__all__ = [
    "__version__", "load_config", "RunConfig", "ConfigError", "RunDir", "CurriculumData", "Callback",
    "prepare", "mine", "prompts", "generate", "score", "train", "evaluate", "compare", "report", "demo", "export",
]

if TYPE_CHECKING:
    from .api import compare, demo, evaluate, export, generate, mine, prepare, prompts, report, score, train
    from .config import ConfigError, RunConfig, load_config
    from .curriculum_data import CurriculumData
    from .rundir import RunDir
    from .training.callbacks import Callback


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'discl' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(ModuleType):
    """discl.prompts and discl.report are stage functions and also the names of submodules (prompts.py,
    report/). Importing a submodule sets it as an attribute of its package; this keeps the function there
    (the submodules stay importable by name: ``from discl.report.build import build_report``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in STAGES and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
