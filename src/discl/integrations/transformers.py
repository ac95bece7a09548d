"""discl's curriculum in the Hugging Face Trainer (docs/training-loops.md).

    data = discl.CurriculumData("runs/a", "non-adaptive")
    trainer = CurriculumTrainer(model=model, args=TrainingArguments(...), curriculum=data)
    trainer.train()

The Trainer reads one DataLoader for its whole run, while a curriculum's epochs differ in size and in
images. So CurriculumTrainer hands it all of the curriculum's epochs as one pass (the Trainer's
``num_train_epochs`` is ignored: the curriculum has ``train.classifier.epochs``), every epoch's batches
as ``CurriculumData`` gives them (this process's slice under DDP). The learning rate follows the
curriculum's epochs, as `discl train`'s does (a linear warm-up over the share ``warmup_steps`` of them,
then cosine to zero), unless you pass your own scheduler. An adaptive curriculum looks at the model at each stage end
and when training ends.
Checkpoints hold the curriculum's place (``discl_curriculum.json``); ``train(resume_from_checkpoint=...)``
goes on from there without decoding the skipped images.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

try:
    from transformers import Trainer
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
except ImportError as missing:  # transformers is a dependency; its Trainer also needs accelerate
    raise ImportError("discl.integrations.transformers needs the Hugging Face Trainer: pip install 'discl[hf-trainer]'") from missing

from ..atomic import atomic_write_json
from ..curriculum_data import CurriculumData, Epoch
from ..training.optim import lr_at
from ..training.sampling import epoch_keys
from .predict import predict_shared

#: The file in each checkpoint folder that holds the curriculum's place.
STATE_FILE = "discl_curriculum.json"


class CurriculumBatches:
    """Every epoch of a curriculum, one after the other, as batches of ``{image_key: images, "labels": labels}``.
    ``batch_size``: the global batch; each process reads its slice. ``len()``: batches per process over the
    whole run, exact for a curriculum fixed in advance; for one that adapts, an upper bound (each epoch
    counted at its largest possible stage)."""

    def __init__(self, curriculum: CurriculumData, batch_size: int, rank: int, world_size: int, predict,
                 image_key: str = "pixel_values", **loader_options):
        self.curriculum, self.batch_size, self.rank, self.world_size = curriculum, batch_size, rank, world_size
        self.predict, self.image_key, self.loader_options = predict, image_key, loader_options
        self.epoch: Epoch | None = None
        self.batch = 0  # batches of the current epoch taken so far
        self.batches_in_epoch = 1
        self.taken = 0  # batches taken in this run, from its start (a resumed run counts those before it)
        self._epoch_start: dict | None = None  # the curriculum's place at the start of the current epoch
        self._skip = 0
        self._length = self._count()

    # -- the Trainer's view
    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for epoch in self.curriculum.epochs(self.predict if self.curriculum.evaluates else None):
            self.epoch, self._epoch_start = epoch, self.curriculum.state_dict(epoch_done=False)
            mine = epoch.batches(self.batch_size, self.rank, self.world_size)
            self.batches_in_epoch, self.batch = len(mine), self._skip
            loader = torch.utils.data.DataLoader(epoch.dataset, batch_sampler=mine[self._skip:], **self.loader_options)
            self._skip = 0
            for images, labels in loader:
                self.batch += 1
                self.taken += 1
                yield {self.image_key: images, "labels": labels}

    # -- checkpoints
    def place(self) -> dict:
        """Where the run stands: the curriculum's place at the start of the current epoch and the batches
        taken in it (JSON)."""
        start = self._epoch_start if self._epoch_start is not None else self.curriculum.state_dict()
        return {"curriculum": start, "batch": self.batch, "taken": self.taken}

    def resume(self, place: dict) -> None:
        self.curriculum.load_state_dict(place["curriculum"])
        self._skip, self.taken = int(place["batch"]), int(place["taken"])

    # -- length
    def _count(self) -> int:
        """Batches per process: every epoch's global batches (each process gets one slice of each)."""
        data, total = self.curriculum, 0
        schedule = data.schedule()
        stages = [s for s in schedule for _ in range(s.epochs)] if schedule is not None else None
        candidates = None if stages is not None else self._largest_stages()
        for index in range(data.epochs_total):
            if stages is not None and index >= len(stages):
                break  # a schedule that ends before train.classifier.epochs: so does the curriculum
            options = [stages[index]] if stages is not None else candidates
            sizes = [self._epoch_size(stage, index) for stage in (options or [])]
            total += math.ceil(max(sizes, default=0) / self.batch_size)
        return total

    def _largest_stages(self) -> list:
        """Every stage an adaptive curriculum may choose: each level alone, all levels at once, real data."""
        from ..curricula import Stage

        levels = sorted({int(level) for level in self.curriculum.plan.pool.syn_levels})
        return [Stage(None, 1), *(Stage(level, 1) for level in levels), *([Stage(None, 1, levels=tuple(levels))] if levels else [])]

    def _epoch_size(self, stage, index: int) -> int:
        plan, cfg = self.curriculum.plan, self.curriculum.config
        rows = plan.pool(stage)
        if not len(rows.positions):
            return 0
        return len(epoch_keys(stage, rows, cfg.train.classifier.seed, index, plan.sampling, plan.variants_per_row,
                              plan.pool.rows.labels, self.curriculum.num_classes, plan.epoch_entries))


class CurriculumTrainer(Trainer):
    """A ``transformers.Trainer`` that trains on ``curriculum`` (a ``discl.CurriculumData``) instead of a
    ``train_dataset``. The model gets ``model(**{image_key: images, "labels": labels})`` and returns a loss
    (or use the Trainer's ``compute_loss_func``); adaptive curricula read its logits (``outputs.logits``, or
    the output itself when it is a tensor) from ``model(**{image_key: images})``. The global batch is
    ``per_device_train_batch_size`` x the number of processes."""

    def __init__(self, *args, curriculum: CurriculumData, image_key: str = "pixel_values", predict_batch_size: int = 256,
                 **kwargs):
        if kwargs.get("train_dataset") is not None:
            raise ValueError("CurriculumTrainer trains on the curriculum's data: pass curriculum=, not train_dataset=")
        super().__init__(*args, **kwargs)
        if curriculum.evaluates and self.args.gradient_accumulation_steps != 1:
            # The Trainer takes an accumulation step's batches before training any: the curriculum would look
            # at the model before the stage's last batches are trained.
            raise ValueError(f"the {curriculum.method} curriculum looks at the model at every stage end: use "
                             f"gradient_accumulation_steps=1 (it has {self.args.gradient_accumulation_steps}), or a larger "
                             "per_device_train_batch_size")
        self.args.num_train_epochs = 1  # one pass over CurriculumBatches is the curriculum's every epoch
        self.curriculum, self.image_key, self.predict_batch_size = curriculum, image_key, predict_batch_size
        self.curriculum_batches: CurriculumBatches | None = None
        self._resume_from: Path | None = None

    # -- data
    def get_train_dataloader(self) -> CurriculumBatches:  # type: ignore[override]
        world = max(1, self.args.world_size)
        options = {"num_workers": self.args.dataloader_num_workers, "pin_memory": self.args.dataloader_pin_memory}
        batches = CurriculumBatches(self.curriculum, self.args.per_device_train_batch_size * world, self.args.process_index,
                                    world, self._predict, self.image_key, **options)
        if self._resume_from is not None:
            batches.resume(_read_place(self._resume_from))
        self.curriculum_batches = batches
        return batches

    def get_resumed_dataloader(self, dataloader, num_batches: int):
        """The curriculum's batches already start where the checkpoint stopped (see ``train``)."""
        if isinstance(dataloader, CurriculumBatches) and dataloader.taken != num_batches:
            raise ValueError(f"{self._resume_from} holds the curriculum after {dataloader.taken} batches, "
                             f"and the Trainer's state after {num_batches}: they were not saved together")
        return dataloader

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"no checkpoint to resume from in {self.args.output_dir}")
        self._resume_from = Path(str(resume_from_checkpoint)) if resume_from_checkpoint else None
        if self._resume_from is not None:
            _read_place(self._resume_from)  # checked before any work
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        batches = self.curriculum_batches
        if batches is not None and batches.batch >= batches.batches_in_epoch:
            # The Trainer stops at its step count without asking for more: the look that ends the last stage
            # (its scores, logged as `discl train` logs them) is taken here.
            self.curriculum.finish(self._predict if self.curriculum.evaluates else None)
        return output

    def _predict(self, dataset) -> tuple[torch.Tensor, torch.Tensor]:
        def forward(model, images):
            return model(**{self.image_key: images})

        assert self.model is not None  # the Trainer was built with a model
        return predict_shared(self.model, dataset, self.predict_batch_size, forward)

    # -- the learning rate follows the curriculum's epochs
    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            optimizer = optimizer if optimizer is not None else self.optimizer
            epochs = self.curriculum.epochs_total
            # warmup_steps: a share of the run, or steps counted as one
            share = self.args.warmup_steps if self.args.warmup_steps < 1 else self.args.warmup_steps / max(1, num_training_steps)

            def factor(_step: int) -> float:
                batches = self.curriculum_batches
                if batches is None or batches.epoch is None:
                    return lr_at(self.curriculum.epoch, 0, 1, epochs, 1.0, share * epochs)
                return lr_at(batches.epoch.index, batches.batch, batches.batches_in_epoch, epochs, 1.0, share * epochs)

            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    # -- checkpoints hold the curriculum's place
    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save and self.curriculum_batches is not None:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            atomic_write_json(folder / STATE_FILE, self.curriculum_batches.place())


def _read_place(folder: Path) -> dict[str, Any]:
    path = Path(folder) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{folder} has no {STATE_FILE}: it was not saved by discl's CurriculumTrainer") from None
    except ValueError as bad:
        raise ValueError(f"{path} cannot be read ({bad}): resume from another checkpoint") from None
