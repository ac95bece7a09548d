"""What the training loop trains: a task wraps a model with its transforms, its training loss and
its evaluation-mode logits (the protocol: training/task_registry.py's ``Task``; task types are
registered by name there).

The loop needs ``module`` (the parameters to optimise and to checkpoint), ``net`` (what the
training forward pass goes through: the loop swaps in a DistributedDataParallel wrapper or a
compiled module), ``transforms`` (training/transforms.py), ``to(device)``,
``loss(images, labels, variants) -> (loss, logits)`` on normalised float images,
``set_stage_counts(counts)``, ``set_epoch_counts(counts)``, ``before_eval()`` and ``logits(images)``.
``loss_is_global`` says the loss couples the images of a batch (a contrastive loss), so it is
computed once over the whole batch rather than averaged over its parts; such a task also gives
``encode``, ``global_loss`` and ``train_logits`` (training/microbatch.py). A task with a per-image
loss runs on an empty batch where a process holds no image of a micro-batch (timm's CNNs do)."""

from __future__ import annotations

import torch

from .losses import LOSSES, log_prior, training_loss
from .transforms import Transforms

BS_PRIORS = ("real", "stage", "epoch")


class ClassifierTask:
    loss_is_global = False

    def __init__(self, model: torch.nn.Module, transforms: Transforms, loss: str = "ce",
                 class_counts: torch.Tensor | None = None, bs_prior: str = "real"):
        if bs_prior not in BS_PRIORS:
            raise ValueError(f"unknown Balanced Softmax prior {bs_prior!r}; known: {list(BS_PRIORS)}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {list(LOSSES)}")
        if loss == "bs" and class_counts is None:  # was a TypeError inside log_prior
            raise ValueError("the Balanced Softmax loss needs class_counts")
        self.module = model
        self.net = model
        self.transforms = transforms
        self.loss_name = loss
        self.bs_prior = bs_prior
        self.device = torch.device("cpu")
        self.prior_log = log_prior(class_counts) if class_counts is not None and loss == "bs" else None

    def to(self, device: torch.device) -> ClassifierTask:
        self.device = device
        self.module.to(device)
        if self.prior_log is not None:
            self.prior_log = self.prior_log.to(device)
        return self

    def set_stage_counts(self, counts: torch.Tensor) -> None:
        """With bs_prior="stage", the prior is the class distribution of the stage's training data
        (real + synthetic) instead of the real training split's."""
        if self.loss_name == "bs" and self.bs_prior == "stage":
            self.prior_log = log_prior(counts).to(self.device)

    def set_epoch_counts(self, counts: torch.Tensor) -> None:
        """With bs_prior="epoch", the prior is the class distribution of the rows this epoch trains on
        (after tail sampling); a class absent from the epoch counts as one row."""
        if self.loss_name == "bs" and self.bs_prior == "epoch":
            self.prior_log = log_prior(torch.as_tensor(counts).clamp(min=1)).to(self.device)

    def loss(self, images: torch.Tensor, labels: torch.Tensor, variants: torch.Tensor | None = None):
        logits = self.net(images)
        return training_loss(self.loss_name, logits, labels, self.prior_log), logits

    def before_eval(self) -> None:
        self.module.eval()

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Plain logits (Balanced Softmax's prior is a training-time adjustment only)."""
        return self.module(images)
