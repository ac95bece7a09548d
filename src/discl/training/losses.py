"""Training losses: cross-entropy and Balanced Softmax (Ren et al., NeurIPS 2020).

Balanced Softmax adds the log of the class prior (training counts / total) to the
logits before the softmax cross-entropy, in training only; predictions use the
plain logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ce", "bs")


def log_prior(class_counts: torch.Tensor) -> torch.Tensor:
    counts = torch.as_tensor(class_counts, dtype=torch.float32)
    if (counts <= 0).any():
        empty = torch.nonzero(counts <= 0).flatten().tolist()
        raise ValueError(f"Balanced Softmax needs at least one training image per class; classes {empty} have none")
    return (counts / counts.sum()).log()


def balanced_softmax_loss(logits: torch.Tensor, labels: torch.Tensor, prior_log: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits + prior_log.to(logits.dtype), labels)


def training_loss(name: str, logits: torch.Tensor, labels: torch.Tensor, prior_log: torch.Tensor | None = None) -> torch.Tensor:
    if name == "ce":
        return F.cross_entropy(logits, labels)
    if name == "bs":
        if prior_log is None:
            raise ValueError("Balanced Softmax needs the training class counts")
        return balanced_softmax_loss(logits, labels, prior_log)
    raise ValueError(f"unknown loss {name!r}; known: {list(LOSSES)}")
