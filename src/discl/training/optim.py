"""Optimisers by name and the learning-rate schedule (linear warm-up, then cosine to zero)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

OPTIMIZERS = ("sgd", "adam", "adamw")


def create_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float,
                     momentum: float = 0.9) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; known: {list(OPTIMIZERS)}")


def cosine_lr(step: int, total: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# The schedule runs on fractional epochs (in 1/TICKS units), so it does not depend on how many
# images each curriculum stage holds, and a resumed run follows the same curve.
TICKS = 1000


def lr_at(epoch: int, batch: int, batches: int, total_epochs: int, base_lr: float, warmup_epochs: float) -> float:
    tick = epoch * TICKS + (batch * TICKS) // max(1, batches)
    return cosine_lr(tick, total_epochs * TICKS, base_lr, round(warmup_epochs * TICKS))
