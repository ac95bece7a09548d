"""discl's curriculum in PyTorch Lightning: a LightningDataModule whose training data is the curriculum's
epoch by epoch (docs/training-loops.md).

    data = discl.CurriculumData("runs/a", "adaptive")
    trainer = lightning.Trainer(max_epochs=data.epochs_total, reload_dataloaders_every_n_epochs=1)
    trainer.fit(model, datamodule=CurriculumDataModule(data))

Lightning asks for the training loader at the start of every epoch (``reload_dataloaders_every_n_epochs=1``);
each time, the data module hands out the curriculum's next epoch. An adaptive curriculum looks at the
LightningModule (``model(images)`` -> logits, in evaluation mode) when a stage ends, and when fit ends (its
last stage's scores, logged as `discl train` logs them). The curriculum's place is saved in Lightning's
checkpoints and restored with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError as missing:  # an optional extra
    raise ImportError("discl.integrations.lightning needs PyTorch Lightning: pip install 'discl[lightning]'") from missing

from ..curriculum_data import CurriculumData, Epoch
from .predict import predict_shared


class _CountedBatches:
    """One epoch's DataLoader that counts the batches taken from it, so a checkpoint knows whether the epoch
    was trained to its end. Not a DataLoader itself: Lightning leaves its per-process batches as they are."""

    def __init__(self, loader: Any):  # a DataLoader, or [] once the curriculum has no epoch left
        self.loader, self.taken = loader, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        for batch in self.loader:
            self.taken += 1
            yield batch


class _FinalLook(pl.Callback):
    """When fit ends after a whole epoch: the look at the model that ends the curriculum's last stage
    (CurriculumData.finish). Lightning asks for no loader after the last epoch, so nothing else takes it."""

    def __init__(self, datamodule: CurriculumDataModule):
        self.datamodule = datamodule

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.datamodule.finish()


class CurriculumDataModule(pl.LightningDataModule):
    """``curriculum``: a ``discl.CurriculumData``. ``batch_size``: the global batch (all processes together, as
    discl's ``train.classifier.batch_size``, its default); each process reads its slice of every global batch.
    ``predict_batch_size``: batches of the adaptive curriculum's looks at the model; ``forward(module, images)``
    -> logits replaces ``module(images)`` there. ``loader_options``: DataLoader options (num_workers, ...).

    ``self.epoch`` is the epoch being trained (its ``level``, ``levels``, ``n_real``, ``n_synthetic``), for
    your module's logging: ``self.trainer.datamodule.epoch.level``."""

    def __init__(self, curriculum: CurriculumData, batch_size: int | None = None, *, predict_batch_size: int = 256,
                 forward: Callable[[torch.nn.Module, torch.Tensor], Any] | None = None, **loader_options):
        super().__init__()
        self.curriculum = curriculum
        self.batch_size = batch_size or curriculum.config.train.classifier.batch_size
        self.predict_batch_size, self.forward, self.loader_options = predict_batch_size, forward, loader_options
        self.epoch: Epoch | None = None
        self._epochs: Iterator[Epoch] | None = None
        self._batches: _CountedBatches | None = None

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        if stage != "fit" or trainer is None:
            return
        total = self.curriculum.epochs_total
        reload = getattr(trainer, "reload_dataloaders_every_n_epochs", None)
        if reload != 1:
            raise ValueError("the curriculum's data changes every epoch: build the Trainer with reload_dataloaders_every_n_epochs=1 "
                             f"(it has {reload})")
        if trainer.max_epochs is None or trainer.max_epochs < 0 or trainer.max_epochs > total:
            raise ValueError(f"the {self.curriculum.method} curriculum has {total} epochs (train.classifier.epochs): "
                             f"build the Trainer with max_epochs={total} or fewer (it has {trainer.max_epochs})")
        callbacks: list = trainer.callbacks  # type: ignore[attr-defined]  # set by Lightning's callback connector
        if not any(isinstance(c, _FinalLook) and c.datamodule is self for c in callbacks):
            callbacks.append(_FinalLook(self))

    def train_dataloader(self) -> _CountedBatches:
        if self._batches is not None and self._batches.taken == 0 and len(self._batches):
            return self._batches  # asked again before a batch was taken (a resumed fit asks twice): the same epoch
        if self._epochs is None:
            self._epochs = self.curriculum.epochs(self._predict if self.curriculum.evaluates else None)
        epoch = next(self._epochs, None)
        if epoch is None:  # asked once more after the last epoch: nothing is left to train
            self._batches = _CountedBatches([])
            return self._batches
        self.epoch = epoch
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (None, None)
        self._batches = _CountedBatches(epoch.loader(self.batch_size, rank, world, **self.loader_options))
        return self._batches

    def finish(self) -> None:
        """The curriculum's last look, once its last epoch handed out was trained to its end (called when fit ends)."""
        if self._batches is not None and self._batches.taken >= len(self._batches) > 0:
            self.curriculum.finish(self._predict if self.curriculum.evaluates else None)

    def _predict(self, dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.trainer is not None  # the curriculum asks only during fit
        return predict_shared(self.trainer.lightning_module, dataset, self.predict_batch_size, self.forward)

    def state_dict(self) -> dict[str, Any]:
        """The curriculum's place: after the epoch when its batches were all taken (Lightning's epoch-end
        checkpoints), else before it (a checkpoint within an epoch: that epoch is trained again)."""
        done = self._batches is not None and self._batches.taken >= len(self._batches)
        return {"curriculum": self.curriculum.state_dict(epoch_done=done)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curriculum.load_state_dict(state_dict["curriculum"])
        self._epochs, self._batches = None, None
