"""Callbacks: code told of a training run's events, as Keras, Lightning and Hugging Face Trainer callbacks are.

The training loop (training/loop.py) calls every callback on every process; a callback that writes
somewhere checks ``discl.training.ddp.is_main()`` (the loggers of train.loggers are only made on rank 0).
A callback observes: nothing it does changes which rows are trained on or the weights, so adding one
changes no result and a run resumes from its checkpoint with or without it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..curricula import Stage


@dataclass(frozen=True)
class RunInfo:
    """What a callback is told at the start: the method, its epochs, the settings that decide its weights,
    the epoch it starts at (> 0 after a resume) and the folder it writes to (None: nothing is written)."""

    method: str
    epochs: int
    settings: dict = field(default_factory=dict)
    start_epoch: int = 0
    out_dir: Path | None = None


class Callback:
    """Every event, doing nothing; subclass and override the ones you need."""

    def on_train_start(self, info: RunInfo) -> None:
        """Before the first epoch this call trains (after a resume: the first one not yet done)."""

    def on_stage_start(self, index: int, stage: Stage, epoch: int) -> None:
        """A new curriculum stage (``index`` from 0) begins at ``epoch`` (from 0)."""

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        """An epoch ended; ``row`` is its line of the epoch table (metrics.jsonl / log.parquet)."""

    def on_stage_end(self, index: int, stage: Stage | None, records: list[dict[str, Any]]) -> None:
        """A stage ended; ``records`` are the curriculum log's rows of its end (an adaptive curriculum's
        score per level, and the level it chose). Index -1 (stage None): an adaptive curriculum's look at
        the model before the first stage."""

    def on_checkpoint(self, path: Path, epoch: int, batch: int) -> None:
        """A checkpoint was written after ``epoch`` epochs and ``batch`` further steps."""

    def on_train_end(self, log: list[dict[str, Any]]) -> None:
        """Every epoch is trained (the selected epoch's weights are in place); ``log`` is the epoch table."""

    def close(self) -> None:
        """The call ends, finished or not (stopped after some epochs, or failed): release what is held."""


class CallbackList(Callback):
    """Several callbacks as one, called in order."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)

    def on_train_start(self, info: RunInfo) -> None:
        for c in self.callbacks:
            c.on_train_start(info)

    def on_stage_start(self, index: int, stage: Stage, epoch: int) -> None:
        for c in self.callbacks:
            c.on_stage_start(index, stage, epoch)

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.on_epoch_end(row)

    def on_stage_end(self, index: int, stage: Stage | None, records: list[dict[str, Any]]) -> None:
        for c in self.callbacks:
            c.on_stage_end(index, stage, records)

    def on_checkpoint(self, path: Path, epoch: int, batch: int) -> None:
        for c in self.callbacks:
            c.on_checkpoint(path, epoch, batch)

    def on_train_end(self, log: list[dict[str, Any]]) -> None:
        for c in self.callbacks:
            c.on_train_end(log)

    def close(self) -> None:
        for c in self.callbacks:
            c.close()
