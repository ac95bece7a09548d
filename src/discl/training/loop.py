"""The training loop: it asks a curriculum which data each stage uses, lets adaptive curricula
evaluate the model at every stage end, logs every epoch, and checkpoints so a run can resume."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import ClassifierConfig
from ..curricula import Curriculum, Stage, augment_batch
from . import ddp
from .checkpoint import load_checkpoint, restore, save_checkpoint
from .optim import cosine_lr, create_optimizer, lr_at  # noqa: F401  (cosine_lr is part of this module's API)
from .tasks import as_task

CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"
CURRICULUM_LOG = "curriculum_log.parquet"


@dataclass
class StageData:
    images: torch.Tensor  # uint8 (N, 3, H, W)
    labels: torch.Tensor  # int64 (N,)
    n_real: int
    n_synthetic: int
    tail: torch.Tensor | None = None  # bool (N,): tail images (few-bucket real + synthetic), for tail sampling


@dataclass(frozen=True)
class TailSampling:
    """ImageNet-LT recipe: each epoch keeps ``non_tail_ratio`` of the non-tail images (drawn without
    replacement) and draws tail images (with replacement) so that they are ``tail_fraction`` of the epoch."""

    non_tail_ratio: float = 0.3
    tail_fraction: float = 0.136

    def __post_init__(self) -> None:
        if not 0 < self.non_tail_ratio <= 1 or not 0 < self.tail_fraction < 1:
            raise ValueError(f"tail sampling needs 0 < non_tail_ratio <= 1 and 0 < tail_fraction < 1, got {self}")

    def order(self, tail: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        tail_idx = torch.nonzero(tail).flatten()
        rest = torch.nonzero(~tail).flatten()
        keep = rest[torch.randperm(len(rest), generator=generator)[: max(1, round(self.non_tail_ratio * len(rest)))]] if len(rest) else rest
        if not len(tail_idx):
            chosen = keep
        else:
            n_tail = max(1, round(self.tail_fraction / (1 - self.tail_fraction) * len(keep))) if len(keep) else len(tail_idx)
            chosen = torch.cat([keep, tail_idx[torch.randint(len(tail_idx), (n_tail,), generator=generator)]])
        return chosen[torch.randperm(len(chosen), generator=generator)]


def random_shift(images: torch.Tensor, generator: torch.Generator, pad: int = 1) -> torch.Tensor:
    """Translate each image by up to ``pad`` pixels (zero fill): cheap augmentation that keeps the class."""
    n, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def _write_json_lines(rows: list[dict], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


class _Run:
    """Everything a checkpoint must restore, besides model, optimiser and RNG tensors."""

    def __init__(self):
        self.epoch = 0
        self.history: list[Stage] = []
        self.current: Stage | None = None  # the stage in progress
        self.done_in_stage = 0
        self.started = False  # the curriculum has seen the model before training
        self.log: list[dict] = []
        self.curriculum_log: list[dict] = []

    def to_json(self) -> dict:
        return {"epoch": self.epoch, "history": [s.to_json() for s in self.history],
                "current": None if self.current is None else self.current.to_json(), "done_in_stage": self.done_in_stage,
                "started": self.started, "log": self.log, "curriculum_log": self.curriculum_log}

    def load(self, d: dict) -> None:
        self.epoch, self.done_in_stage, self.started = d["epoch"], d["done_in_stage"], d["started"]
        self.history = [Stage.from_json(s) for s in d["history"]]
        self.current = None if d["current"] is None else Stage.from_json(d["current"])
        self.log, self.curriculum_log = d["log"], d["curriculum_log"]


def train_with_curriculum(
    model,
    cfg: ClassifierConfig,
    curriculum: Curriculum,
    data_for_stage: Callable[[Stage], StageData],
    val: tuple[torch.Tensor, torch.Tensor],
    method: str,
    progress: bool = True,
    *,
    sampling: TailSampling | None = None,
    out_dir: Path | None = None,
    settings: dict | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    echo=None,
) -> list[dict]:
    """Train ``model`` (an nn.Module, trained with cross-entropy, or a task from training.tasks) in place
    for ``cfg.epochs`` epochs; return one log row per epoch.

    With ``out_dir``: checkpoint.safetensors and metrics.jsonl are written after every epoch and
    curriculum_log.parquet after every stage; a checkpoint whose ``settings`` match is resumed from.
    ``stop_after`` ends this call after that many epochs (the checkpoint lets a later call go on).
    ``echo`` (optional) is told when a checkpoint is resumed from or set aside."""
    task = as_task(model)
    task.net = ddp.wrap(task.module)
    total_epochs = cfg.epochs
    optimizer = create_optimizer(cfg.optimizer, task.module.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum)
    generator = torch.Generator().manual_seed(cfg.seed)
    observe = getattr(curriculum, "observe", None)
    state = _Run()
    settings = json.loads(json.dumps(settings or {}, default=str))
    checkpoint = Path(out_dir) / CHECKPOINT if out_dir is not None else None
    if checkpoint is not None and resume and checkpoint.exists():
        tensors, meta = load_checkpoint(checkpoint)
        if meta.get("settings") == settings:
            restore(tensors, meta, task.module, optimizer, generator)
            state.load(meta["run"])
            if meta.get("curriculum") is not None:
                curriculum.load_state_dict(meta["curriculum"])
            if echo is not None and 0 < state.epoch < total_epochs:
                echo(f"{method}: resuming after epoch {state.epoch} of {total_epochs} ({checkpoint})")
        elif echo is not None:
            echo(f"{method}: the settings changed since {checkpoint} was written; training from the start")

    def record_curriculum(rows: list[dict], stage_index: int, used: str) -> None:
        state.curriculum_log += [{"method": method, "stage": stage_index, "epoch": state.epoch, "used": used, **r} for r in rows]

    def save() -> None:
        if checkpoint is None or not ddp.is_main():
            return
        cur = curriculum.state_dict() if hasattr(curriculum, "state_dict") else None
        save_checkpoint(checkpoint, task.module, optimizer, generator,
                        {"settings": settings, "run": state.to_json(), "curriculum": cur})
        _write_json_lines(state.log, Path(out_dir) / METRICS)
        write_curriculum_log(state.curriculum_log, Path(out_dir) / CURRICULUM_LOG)

    if observe is not None and not state.started:
        record_curriculum(observe(task.predict_proba), -1, "start")
    state.started = True
    bar = tqdm(total=total_epochs, initial=state.epoch, desc=f"train {method}", disable=not progress or not ddp.is_main(), leave=False)
    epochs_this_call = 0
    lr = cfg.lr
    while state.epoch < total_epochs and (stop_after is None or epochs_this_call < stop_after):
        if state.current is None:
            state.current = curriculum.next_stage(state.history)
            state.done_in_stage = 0
            if state.current is None:
                break
        stage = state.current
        data = data_for_stage(stage)
        if len(data.labels) == 0:
            raise ValueError(f"{method}: stage {len(state.history)} ({stage.describe()}) has no training image")
        if hasattr(task, "set_stage_counts"):
            task.set_stage_counts(torch.bincount(data.labels, minlength=int(data.labels.max()) + 1))
        strengths = dict(stage.augment)
        start = time.perf_counter()
        task.module.train()
        if sampling is not None and data.tail is not None:
            order = sampling.order(data.tail, generator)
        else:
            order = torch.randperm(len(data.labels), generator=generator)
        batches = math.ceil(len(order) / cfg.batch_size)
        loss_sum, correct, seen = 0.0, 0, 0
        for b, i in enumerate(range(0, len(order), cfg.batch_size)):
            idx = order[i : i + cfg.batch_size]
            images, y = data.images[idx], data.labels[idx]
            if strengths:
                images = augment_batch(images, y, strengths, getattr(curriculum, "max_strength", 10), generator)
            # Augment the whole batch, then take this process's slice: the random draws, and so the
            # result, do not depend on the number of processes.
            x, y = ddp.shard(random_shift(images, generator)), ddp.shard(y)
            lr = lr_at(state.epoch, b, batches, total_epochs, cfg.lr, cfg.warmup_epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, logits = task.loss(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(-1) == y).sum().item()
            seen += len(y)
        ddp.sync_buffers(task.module)
        loss_sum, correct, seen = ddp.sum_across([loss_sum, correct, seen])
        seconds = time.perf_counter() - start
        val_acc = (task.predict_proba(val[0]).argmax(-1) == val[1]).float().mean().item() if len(val[1]) else float("nan")
        state.log.append(
            {
                "method": method, "epoch": state.epoch, "stage": len(state.history),
                "level": -1 if stage.level is None else stage.level, "levels": stage.describe(),
                "n_real": data.n_real, "n_synthetic": data.n_synthetic, "n_seen": int(seen), "lr": lr,
                "train_loss": loss_sum / max(1, seen), "train_acc": correct / max(1, seen), "val_acc": val_acc,
                "seconds": seconds, "eval_seconds": 0.0,
            }
        )
        state.epoch += 1
        state.done_in_stage += 1
        epochs_this_call += 1
        bar.update(1)
        bar.set_postfix(stage=stage.describe()[:20], val_acc=f"{val_acc:.3f}")
        if state.done_in_stage >= stage.epochs or state.epoch >= total_epochs:
            t0 = time.perf_counter()
            rows = observe(task.predict_proba) if observe is not None else [
                {"class_label": -1, "level": -1, "progress": float("nan"), "smoothed": float("nan"),
                 "n_images": 0, "n_outliers": 0, "chosen": False}]
            state.log[-1]["eval_seconds"] = time.perf_counter() - t0
            record_curriculum(rows, len(state.history), stage.describe())
            state.history.append(stage)
            state.current = None
        save()
    bar.close()
    return state.log


def write_curriculum_log(rows: list[dict], path: Path) -> None:
    from ..tables import write_table

    frame = pd.DataFrame(rows, columns=["method", "stage", "epoch", "used", "class_label", "level", "progress",
                                        "smoothed", "n_images", "n_outliers", "chosen"])
    write_table(frame, path, "curriculum_log")
