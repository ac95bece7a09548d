"""What the training loop trains: a task wraps a model with its training loss and its prediction.

The loop only needs ``module`` (the parameters to optimise and to checkpoint),
``loss(images, labels) -> (loss, logits)`` on uint8 images, and
``predict_proba(images)``. ``net`` is what the forward pass goes through (the
loop swaps in a DistributedDataParallel wrapper on several processes).
"""

from __future__ import annotations

import torch

from .classifier import predict_proba, to_input
from .losses import log_prior, training_loss


class ClassifierTask:
    def __init__(self, model: torch.nn.Module, loss: str = "ce", class_counts: torch.Tensor | None = None,
                 bs_prior: str = "real"):
        if bs_prior not in ("real", "stage"):
            raise ValueError(f"unknown Balanced Softmax prior {bs_prior!r}; known: ['real', 'stage']")
        self.module = model
        self.net = model
        self.loss_name = loss
        self.bs_prior = bs_prior
        self.prior_log = log_prior(class_counts) if loss == "bs" else None
        if loss not in ("ce", "bs"):
            training_loss(loss, torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))  # raises the clear error

    def set_stage_counts(self, counts: torch.Tensor) -> None:
        """With bs_prior="stage", the prior is the class distribution of the stage's training data
        (real + synthetic) instead of the real training split's."""
        if self.loss_name == "bs" and self.bs_prior == "stage":
            self.prior_log = log_prior(counts)

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(to_input(images))
        return training_loss(self.loss_name, logits, labels, self.prior_log), logits

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        return predict_proba(self.module, images)


def as_task(model) -> "ClassifierTask":
    return model if hasattr(model, "predict_proba") and hasattr(model, "module") else ClassifierTask(model)
