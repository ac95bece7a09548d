"""The training loop: it asks a curriculum which data each stage uses, and logs every epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import ClassifierConfig
from ..curriculum import Curriculum, Stage
from .classifier import predict_proba, to_input


@dataclass
class StageData:
    images: torch.Tensor  # uint8 (N, 3, H, W)
    labels: torch.Tensor  # int64 (N,)
    n_real: int
    n_synthetic: int


def cosine_lr(step: int, total: int, base_lr: float, warmup: int) -> float:
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def random_shift(images: torch.Tensor, generator: torch.Generator, pad: int = 1) -> torch.Tensor:
    """Translate each image by up to ``pad`` pixels (zero fill): cheap augmentation that keeps the class."""
    n, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def train_with_curriculum(
    model: torch.nn.Module,
    cfg: ClassifierConfig,
    curriculum: Curriculum,
    data_for_level: Callable[[int | None], StageData],
    val: tuple[torch.Tensor, torch.Tensor],
    method: str,
    progress: bool = True,
) -> list[dict]:
    """Train ``model`` in place for ``cfg.epochs`` epochs; return one log row per epoch."""
    total_epochs = cfg.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    history: list[Stage] = []
    log: list[dict] = []
    epoch = 0
    step = 0
    bar = tqdm(total=total_epochs, desc=f"train {method}", disable=not progress, leave=False)
    while epoch < total_epochs:
        stage = curriculum.next_stage(history)
        if stage is None:
            break
        data = data_for_level(stage.level)
        if len(data.labels) == 0:
            raise ValueError(f"{method}: stage {len(history)} (level {stage.level}) has no training image")
        steps_per_epoch = math.ceil(len(data.labels) / cfg.batch_size)
        for _ in range(min(stage.epochs, total_epochs - epoch)):
            # The schedule is laid over an estimate of all steps, from the current stage's size.
            total_steps = step + steps_per_epoch * (total_epochs - epoch)
            start = time.perf_counter()
            model.train()
            order = torch.randperm(len(data.labels), generator=generator)
            loss_sum, correct = 0.0, 0
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                x = to_input(random_shift(data.images[idx], generator))
                y = data.labels[idx]
                lr = cosine_lr(step, total_steps, cfg.lr, warmup=steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(idx)
                correct += (logits.argmax(-1) == y).sum().item()
                step += 1
            val_acc = (predict_proba(model, val[0]).argmax(-1) == val[1]).float().mean().item() if len(val[1]) else float("nan")
            log.append(
                {
                    "method": method,
                    "epoch": epoch,
                    "stage": len(history),
                    "level": -1 if stage.level is None else stage.level,
                    "n_real": data.n_real,
                    "n_synthetic": data.n_synthetic,
                    "lr": lr,
                    "train_loss": loss_sum / len(order),
                    "train_acc": correct / len(order),
                    "val_acc": val_acc,
                    "seconds": time.perf_counter() - start,
                }
            )
            epoch += 1
            bar.update(1)
            bar.set_postfix(level=stage.level, val_acc=f"{val_acc:.3f}")
        history.append(stage)
    bar.close()
    return log
