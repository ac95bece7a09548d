"""How one optimiser step splits its global batch into micro-batches and processes, and the step of a
loss over the whole batch (FLYP's contrastive loss) with gradient caching.

The split is a function of the global batch only: the readable images of the batch, in its global
order, are cut into ``accumulate`` near-equal runs, and each process takes its own images of each
run. So 1 process and N processes build the same micro-batches (BatchNorm statistics included,
with SyncBatchNorm), and every process runs the same number of forward passes (a process with no
image in a micro-batch runs an empty one), which SyncBatchNorm's collectives and DDP need.

A global loss (``task.loss_is_global``) is computed once per step on the features of the whole
batch, gathered from every process whatever their sizes. With ``accumulate`` > 1 it uses gradient
caching (Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup",
2021): features of every micro-batch without graph, the loss and its gradient with respect to the
features, then each micro-batch again with graph, backpropagating the cached feature gradients. The
gradient is the whole batch's, equal to one pass on the whole batch up to float rounding.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from . import ddp
from .device import autocast, rng_states, set_rng_states


@dataclass
class StepPlan:
    micro: list[torch.Tensor]  # this process's rows (indices into its slice) per micro-batch
    counts: np.ndarray  # (processes, micro-batches): readable images of each
    n_images: int  # readable images in the global batch
    world: int

    @property
    def n_local(self) -> int:
        return int(sum(len(m) for m in self.micro))


def step_plan(valid: torch.Tensor, n_global: int, rank: int, world: int, accumulate: int,
              min_images: int = 1, min_per_process: int = 1) -> StepPlan | None:
    """The micro-batches of a global batch of ``n_global`` positions, of which this process holds positions
    rank, rank + world, ... (``valid``: which of them are readable training images). None when the whole
    batch has fewer than ``min_images`` readable images (every process gets the same answer). A process
    holding fewer than ``min_per_process`` images of a micro-batch (BatchNorm per process) leaves them out."""
    width = -(-n_global // world)  # the most positions a process holds
    flags = np.zeros(width, dtype=np.int64)
    mine = np.asarray(valid, dtype=bool)[:width]  # a process with no position holds one padding item
    flags[: len(mine)] = mine
    every = ddp.all_gather_host(flags) if world > 1 else flags[None]
    readable = np.zeros(n_global, dtype=bool)
    for r in range(world):
        readable[r::world] = every[r, : len(range(r, n_global, world))]
    offsets = np.flatnonzero(readable)
    if len(offsets) < min_images:
        return None
    runs = np.array_split(offsets, max(1, min(accumulate, len(offsets) // min_images)))
    counts = np.array([[int(((g - r) % world == 0).sum()) for g in runs] for r in range(world)], dtype=np.int64)
    counts[counts < min_per_process] = 0
    if counts.sum() < min_images:
        return None
    micro = [torch.from_numpy((g[(g - rank) % world == 0] - rank) // world if counts[rank, j] else g[:0])
             for j, g in enumerate(runs)]
    return StepPlan(micro, counts, int(counts.sum()), world)


def take(batch: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``batch[rows]``; the batch itself (no copy) when ``rows`` (ascending, distinct) are all of it."""
    return batch if len(rows) == len(batch) else batch[rows]


def no_sync(net: torch.nn.Module, skip: bool):
    """DDP's no_sync() for a micro-batch whose gradients are reduced with a later one."""
    from torch.nn.parallel import DistributedDataParallel

    return net.no_sync() if skip and isinstance(net, DistributedDataParallel) else contextlib.nullcontext()


def global_loss_step(task, net, plan: StepPlan, x, y, variants, precision: str, scaler, sums: torch.Tensor) -> None:
    """Backward of ``task.global_loss`` over the whole global batch (every process calls this together).

    The task gives ``encode(images, labels, variants) -> (image features, text features, scale)``,
    ``global_loss(image features, text features, scale)`` and ``train_logits(image features, scale)``.
    Each process's loss is the whole batch's (features gathered with their gradient), so DDP's average of
    the gradients is that loss's gradient."""
    device = x.device
    per_process = plan.counts.sum(1)

    def encode(rows: torch.Tensor):
        # A model may refuse an empty batch (open_clip's ViT does): encode one image and use none of it.
        pick = rows if len(rows) else torch.zeros(1, dtype=torch.int64)
        image, text, scale = task.encode(take(x, pick), take(y, pick), take(variants, pick))
        return image[: len(rows)], text[: len(rows)], scale

    def loss_of(image, text, scale):
        return task.global_loss(ddp.gather_rows_with_grad(image, per_process),
                                ddp.gather_rows_with_grad(text, per_process), scale)

    if len(plan.micro) == 1:
        with autocast(device, precision):
            image, text, scale = encode(plan.micro[0])
            loss = loss_of(image, text, scale)
        scaler.scale(loss).backward()
    else:
        states, images, texts = [], [], []
        with torch.no_grad():
            for rows in plan.micro:
                states.append(rng_states(device))
                with autocast(device, precision):
                    image, text, scale = encode(rows)
                images.append(image)
                texts.append(text)
        image = torch.cat(images).detach().requires_grad_()
        text = torch.cat(texts).detach().requires_grad_()
        scale_leaf = scale.detach().requires_grad_()
        with autocast(device, precision):
            loss = loss_of(image, text, scale_leaf)
        g_image, g_text, g_scale = torch.autograd.grad(scaler.scale(loss), [image, text, scale_leaf])
        at = 0
        for i, rows in enumerate(plan.micro):
            with no_sync(net, i < len(plan.micro) - 1):
                set_rng_states(states[i], device)  # the same dropout as in the pass without graph
                with autocast(device, precision):
                    im, tx, sc = encode(rows)
                n = len(rows)
                surrogate = (im.float() * g_image[at: at + n].float()).sum() + (tx.float() * g_text[at: at + n].float()).sum()
                if i == len(plan.micro) - 1:  # the scale is one parameter: once, in the pass DDP reduces
                    surrogate = surrogate + (sc.float() * g_scale.float()).sum()
                surrogate.backward()
            at += n
        image = image.detach()
    if plan.n_local:
        logits = task.train_logits(image.detach(), scale.detach())
        labels = y[torch.cat(plan.micro)]
        sums[0] += loss.detach().float() * plan.n_local
        sums[1] += (logits.argmax(-1) == labels).sum()
