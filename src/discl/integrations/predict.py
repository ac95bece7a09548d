"""Your model's logits on the rows an adaptive curriculum asks about, as the trainers' adapters compute them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..training import ddp


def logits_of(outputs: Any) -> torch.Tensor:
    """A model's output as logits: a tensor, or an output object / dict with ``logits`` (Hugging Face)."""
    if torch.is_tensor(outputs):
        return outputs
    logits = outputs["logits"] if isinstance(outputs, dict) else getattr(outputs, "logits", None)
    if logits is None:
        raise TypeError(f"the model returned {type(outputs).__name__}: expected logits, or an output with `logits`")
    return logits


@torch.no_grad()
def predict_logits(model: torch.nn.Module, dataset: torch.utils.data.Dataset, batch_size: int,
                   forward: Callable[[torch.nn.Module, torch.Tensor], Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``model`` in evaluation mode on ``dataset`` of (image, label), batch by batch on the model's device:
    (logits, labels) on the CPU, the labels as the dataset gave them (-100: an image it could not read,
    which the curriculum leaves out). The model's training mode is put back."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        logits, labels = [], []
        for images, batch_labels in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
            images = images.to(device)
            logits.append(logits_of(forward(model, images) if forward else model(images)).float().cpu())
            labels.append(torch.as_tensor(batch_labels, dtype=torch.int64))
        if not logits:
            return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
        return torch.cat(logits), torch.cat(labels)
    finally:
        model.train(was_training)


def predict_shared(model: torch.nn.Module, dataset: torch.utils.data.Dataset, batch_size: int,
                   forward: Callable[[torch.nn.Module, torch.Tensor], Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row's (logits, labels) on every process, in the dataset's order: under DDP each process predicts
    its contiguous share (sizes differ by one at most) and the shares are gathered, so a look at the model
    costs each process 1/W of it, and every process gets the same logits and chooses the same next stage."""
    n, rank, world = len(dataset), ddp.rank(), ddp.world_size()  # type: ignore[arg-type]
    if world == 1 or n < world:
        return predict_logits(model, dataset, batch_size, forward)
    mine = torch.utils.data.Subset(dataset, range(rank * n // world, (rank + 1) * n // world))
    logits, labels = predict_logits(model, mine, batch_size, forward)
    device = next(model.parameters()).device  # NCCL gathers device tensors
    return ddp.gather_varying(logits.to(device)).cpu(), ddp.gather_varying(labels.to(device)).cpu()
