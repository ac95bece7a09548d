"""Training loggers by name (``train.loggers``): TensorBoard, Weights & Biases, MLflow.

A logger receives what a run logs through :class:`LoggingCallback` (a trainer callback,
training/callbacks.py): the run's settings, every epoch's line of the epoch table (losses,
accuracies, the learning rate, the stage and its level, image counts, timings), an adaptive
curriculum's score of every level at each stage end and the level it chose, and, at the end, the
report's spectrum grids as images (report/grids.py). Loggers are made on rank 0 only and never enter
the settings that decide whether a checkpoint or model is still valid (model_cache.RESULT_NEUTRAL).

Each logger's package is an optional extra; a missing one is reported before any work
(:func:`check_installed`). This module registers names only: each backend's package is imported when
its logger is made.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ...registry import loggers
from ..callbacks import Callback, RunInfo

if TYPE_CHECKING:
    from PIL import Image

    from ...config import RunConfig
    from ...curricula import Stage
    from ...rundir import RunDir


class Logger(Protocol):
    """What a logger backend does; metrics are numbers by name at a step (the epoch)."""

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_image(self, key: str, image: Image.Image, step: int) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class LoggerSpec:
    """What a logger's builder receives. ``name``: the training run's name, unique in the run directory
    (``train/real-only``, ``compare/classifier/ce/seed0/real-only``); ``directory``: the run's logs folder."""

    name: str
    method: str
    directory: Path
    run_root: Path


class MissingLoggerPackage(ValueError):
    pass


def check_installed(names) -> None:
    """One error naming the extra to install, for the first logger in ``names`` whose package is missing."""
    for name in names:
        entry = loggers.get(name)
        if entry.package and importlib.util.find_spec(entry.package) is None:
            raise MissingLoggerPackage(f"train.loggers names {name!r}, whose package {entry.package!r} is not installed: "
                                       f"pip install 'discl[{entry.extra}]'")


def flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}; lists as text."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, int | float | str | bool) or value is None else str(value)
    return out


#: Columns of the epoch table logged as metrics (the rest are text: the method, the stage's levels).
EPOCH_METRICS = ("train_loss", "train_acc", "val_acc", "select_acc", "lr", "stage", "level", "n_real", "n_synthetic",
                 "n_seen", "n_skipped", "seconds", "eval_seconds")


def curriculum_metrics(records: list[dict[str, Any]]) -> dict[str, float]:
    """An adaptive curriculum's scores at a stage end: each level's progress (and smoothed progress), per
    class for the per-class curriculum, and the level chosen; nothing for a curriculum that does not look."""
    out: dict[str, float] = {}
    for r in records:
        level = int(r.get("level", -1))
        if level < 0 or not math.isfinite(float(r.get("progress", math.nan))):
            continue
        where = "curriculum" if int(r.get("class_label", -1)) < 0 else f"curriculum/class_{int(r['class_label'])}"
        out[f"{where}/progress/level_{level}"] = float(r["progress"])
        out[f"{where}/smoothed/level_{level}"] = float(r["smoothed"])
        if r.get("chosen"):
            out[f"{where}/chosen_level"] = float(level)
    return out


class LoggingCallback(Callback):
    """Hands a training run's events to loggers (rank 0 only: :func:`create_loggers` makes none elsewhere)."""

    def __init__(self, backends: list[Logger], run: RunDir | None = None, grids: int = 0):
        self.backends, self.run, self.grids = backends, run, grids
        self.epochs = 0

    def _metrics(self, metrics: dict[str, float], step: int) -> None:
        finite = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
        if finite:
            for b in self.backends:
                b.log_metrics(finite, step)

    def on_train_start(self, info: RunInfo) -> None:
        self.epochs = info.epochs
        params = flatten({"method": info.method, "epochs": info.epochs} | info.settings)
        for b in self.backends:
            b.log_params(params)

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        self._metrics({k: row[k] for k in EPOCH_METRICS if k in row and row[k] is not None}, int(row["epoch"]))

    def on_stage_end(self, index: int, stage: Stage | None, records: list[dict[str, Any]]) -> None:
        if records:
            self._metrics(curriculum_metrics(records), int(records[0]["epoch"]))

    def on_train_end(self, log: list[dict[str, Any]]) -> None:
        if self.run is None or not self.grids:
            return
        from ...report.grids import spectrum_grids

        for name, image in spectrum_grids(self.run, self.grids):
            for b in self.backends:
                b.log_image(f"spectrum/{name}", image, self.epochs)

    def close(self) -> None:
        for b in self.backends:
            b.close()


def create_loggers(cfg: RunConfig, run: RunDir, method: str, out_dir: Path) -> list[Callback]:
    """The callback logging to train.loggers (none when none are set, and none on ranks other than 0).
    Spectrum grids go to the runs of methods that train on synthetic images."""
    from .. import ddp

    names = cfg.train.loggers
    if not names or not ddp.is_main():
        return []
    check_installed(names)
    from ...curricula import uses_synthetic

    out = Path(out_dir).resolve()
    root = Path(run.root).resolve()
    name = out.relative_to(root).as_posix() if out.is_relative_to(root) else out.name
    spec = LoggerSpec(name, method, run.logs, root)
    backends = [loggers.get(n).target(spec) for n in names]
    return [LoggingCallback(backends, run, GRIDS if uses_synthetic(method) else 0)]


GRIDS = 8  # spectrum grids logged per run (a stable sample, as the report's)


@loggers.register("tensorboard", package="tensorboard", extra="tensorboard")
def tensorboard(spec: LoggerSpec) -> Logger:
    """TensorBoard event files under RUN/logs/tensorboard/<run name> (`tensorboard --logdir RUN/logs/tensorboard`)."""
    from .backends import TensorBoardLogger

    return TensorBoardLogger(spec.directory / "tensorboard" / spec.name)


@loggers.register("wandb", package="wandb", extra="wandb")
def wandb(spec: LoggerSpec) -> Logger:
    """Weights & Biases: one W&B run per trained method, folders under RUN/logs/wandb; WANDB_MODE=offline
    logs offline (`wandb sync` uploads later); WANDB_PROJECT (default "discl"), WANDB_ENTITY, WANDB_DIR apply."""
    from .backends import WandbLogger

    return WandbLogger(spec)


@loggers.register("mlflow", package="mlflow", extra="mlflow")
def mlflow(spec: LoggerSpec) -> Logger:
    """MLflow: one MLflow run per trained method, in MLFLOW_TRACKING_URI, by default a local store in
    RUN/logs/mlruns; MLFLOW_EXPERIMENT_NAME (default "discl") names the experiment."""
    from .backends import MlflowLogger

    return MlflowLogger(spec)
