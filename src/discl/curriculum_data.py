"""A method's curriculum in any PyTorch training loop (docs/training-loops.md).

``discl.CurriculumData(run_dir, method)`` reads a run directory (after `discl score`) and gives, epoch by
epoch, the data `discl train` would train that method on: the stage's real and synthetic rows, tail
sampling as configured, in the same order, each image with the same random-transform seed, and this
process's slice of every global batch under DDP. It is built from the same pieces as discl's own
trainer (training/methods.py's plan, training/pool.py, training/sampling.py, curricula/, training/
dataset.py), so the stages and rows of every epoch are those of `discl train` on the same run.
Curricula that adapt to the model look at it through a function you pass: it gets a torch Dataset
of the rows to predict and returns your model's logits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import RunConfig, load_config, with_overrides
from .curricula import Stage
from .model_cache import changed_keys, describe_changes
from .rundir import RunDir
from .training.dataset import ImageDataset
from .training.loop import StageRows
from .training.sampling import Keys, epoch_keys, rank_positions
from .training.stream import Predictions

#: Your model on a dataset of (image, label) items -> logits (N, classes), as a tensor or an array; or
#: (logits, labels) with the labels the dataset gave, so that images it could not read (label -100) are left
#: out of the curriculum's scores, as discl's trainer leaves them out.
Predict = Callable[[torch.utils.data.Dataset], Any]


class _Transforms:
    """The train/eval pair ImageDataset applies (training/transforms.py's fields it reads)."""

    def __init__(self, train: Callable, eval: Callable, input_size: int):
        self.train, self.eval, self.input_size = train, eval, input_size


def default_transform(size: int) -> Callable:
    """Resize to ``size`` x ``size`` and scale to float in [0, 1]."""
    from torchvision.transforms import v2

    return v2.Compose([v2.ToImage(), v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True)])


#: The label of an image that cannot be read: the ignore_index of torch's cross_entropy (and of Hugging
#: Face's losses), so such an image adds nothing to the loss while every process keeps its batch size.
UNREADABLE = -100


class KeyedImages(torch.utils.data.Dataset):
    """Item ``i``: (image, label) of the ``i``-th key, decoded and transformed as discl's loader does (the
    training transform for training keys, seeded by the key). A file that cannot be read (missing,
    truncated) comes back as zeros with label ``UNREADABLE`` (-100): discl's trainer leaves such images out
    of the loss and counts them; ``(labels == -100).sum()`` counts them here."""

    def __init__(self, images: ImageDataset, keys: Keys):
        self.images, self.keys = images, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int):
        x, label, _row, decoded, *_ = self.images[self.keys.key(int(i))]
        return x, (label if decoded else UNREADABLE)


@dataclass
class Epoch:
    """One epoch's training data. ``index``: the epoch (from 0); ``stage_index``: its stage (from 0);
    ``level``: the stage's image-guidance level (-1: real data only or several levels, see ``levels``);
    ``keys``: the epoch's global order (rows, transform seeds, augmentation strengths, variants);
    ``dataset``: (image, label) in that order; ``ends_stage``: the stage ends with this epoch."""

    index: int
    stage_index: int
    stage: Stage
    rows: StageRows
    keys: Keys
    dataset: KeyedImages
    ends_stage: bool
    _paths: Callable[[np.ndarray], list[str]]
    _labels: np.ndarray

    @property
    def level(self) -> int:
        return -1 if self.stage.level is None else int(self.stage.level)

    @property
    def levels(self) -> str:
        """The stage as the epoch table writes it ("real", "50", "10+30+50", "per-class:...")."""
        return self.stage.describe()

    @property
    def n_real(self) -> int:
        return self.rows.n_real

    @property
    def n_synthetic(self) -> int:
        return self.rows.n_synthetic

    @property
    def paths(self) -> list[str]:
        """The image files in the epoch's order."""
        return self._paths(self.keys.rows)

    @property
    def labels(self) -> np.ndarray:
        return self._labels[self.keys.rows]

    def batches(self, batch_size: int, rank: int | None = None, world_size: int | None = None) -> list[list[int]]:
        """This process's dataset indices of each global batch of ``batch_size`` (positions rank, rank + W, ...
        of every global batch, as discl's trainer reads them); a batch sampler for a DataLoader. ``rank`` and
        ``world_size`` default to torch.distributed's (0 and 1 without it). A process left without an item
        of a last batch smaller than the world gets that batch's first item, so every process steps: give it
        zero weight where that matters."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rank, world_size = _rank_world(rank, world_size)
        out = []
        for lo in range(0, len(self.keys), batch_size):
            mine = rank_positions(lo, min(lo + batch_size, len(self.keys)), rank, world_size)
            out.append(mine or [lo])
        return out

    def loader(self, batch_size: int, rank: int | None = None, world_size: int | None = None, **options):
        """A DataLoader over this process's batches (``options``: num_workers, pin_memory, ...)."""
        return torch.utils.data.DataLoader(self.dataset, batch_sampler=self.batches(batch_size, rank, world_size), **options)


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    from .training import ddp

    rank = ddp.rank() if rank is None else rank
    world_size = ddp.world_size() if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size), got rank {rank} of {world_size}")
    return rank, world_size


class CurriculumData:
    """The curriculum of ``method`` on the run directory ``run_dir``, epoch by epoch (see the module).

    Settings as `discl train` reads them: ``RUN/config.yaml`` with ``overrides`` (``["section.key=value"]``),
    or ``config``. ``transform`` / ``eval_transform``: PIL image -> tensor (default: resize to
    data.image_size, scale to [0, 1]); random transforms draw from torch / random / numpy seeded per item.

    >>> data = CurriculumData("runs/demo", "non-adaptive")
    >>> for epoch in data.epochs(predict):          # predict: only curricula that adapt call it
    ...     for images, labels in epoch.loader(64):
    ...         ...                                  # your training step
    """

    def __init__(self, run_dir: str | Path, method: str, *, config: RunConfig | None = None, overrides: Sequence[str] = (),
                 transform: Callable | None = None, eval_transform: Callable | None = None, echo=print):
        from .training.methods import load_inputs, plan_method, plan_settings

        self.run = RunDir(Path(run_dir))
        if not self.run.dataset.exists():
            raise FileNotFoundError(f"{self.run.root} holds no prepared run (no {self.run.dataset.name}): run `discl prepare` first")
        cfg = load_config(self.run.root, None, list(overrides)) if config is None else with_overrides(config, list(overrides))
        self.config, self.method = cfg, method
        inputs = load_inputs(self.run, cfg, [method], echo)
        self.plan = plan_method(self.run, cfg, method, inputs)
        # What decides this curriculum's epochs, as for discl's checkpoints: a saved state is refused after a change.
        self.settings = plan_settings(cfg, method, inputs, self.plan)
        self.class_names = list(inputs.classes.sort_values("label")["class_name"])
        size = cfg.data.image_size
        train = transform or default_transform(size)
        pair = _Transforms(train, eval_transform or transform or default_transform(size), size)
        self.images = ImageDataset(self.plan.pool.rows, pair, self.plan.curriculum.augment)  # type: ignore[arg-type]
        self.epochs_total = cfg.train.classifier.epochs
        self.epoch, self.done_in_stage, self.started = 0, 0, False
        self.history: list[Stage] = []
        self.current: Stage | None = None
        self.handed_out = False  # an epoch was handed out and not yet counted as trained
        self.unobserved = False  # a stage ended and the curriculum has not looked at the model since
        self.curriculum_log: list[dict] = []

    # -- what the curriculum is
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def evaluates(self) -> bool:
        """Whether the curriculum looks at the model (then :meth:`epochs` needs ``predict``)."""
        return bool(self.plan.curriculum.evaluates)

    def schedule(self) -> list[Stage] | None:
        """Every stage in advance, for a curriculum fixed in advance; None for one that adapts to the model."""
        if self.evaluates:
            return None
        curriculum, stages = copy.deepcopy(self.plan.curriculum), list(self.history)
        while sum(s.epochs for s in stages) < self.epochs_total and (stage := curriculum.next_stage(stages)) is not None:
            stages.append(stage)
        return stages

    def validation_dataset(self) -> KeyedImages:
        """The curriculum-validation rows (adaptive curricula), as (image, label) with the evaluation transform."""
        validation = getattr(self.plan.curriculum, "validation", None)
        positions = validation.positions if validation is not None else np.zeros(0, dtype=np.int64)
        return KeyedImages(self.images, Keys.make(positions))

    # -- the epochs
    def epochs(self, predict: Predict | None = None) -> Iterator[Epoch]:
        """Every epoch still to train, in order. Train on each before asking for the next: when a stage ends,
        a curriculum that adapts calls ``predict`` (your model, in evaluation mode, on the rows it asks
        about) to choose the next stage, as discl's trainer evaluates its own model there."""
        if self.evaluates and predict is None:
            raise ValueError(f"the {self.method} curriculum looks at the model at every stage end: "
                             "pass predict (a dataset of (image, label) -> your model's logits)")
        curriculum = self.plan.curriculum
        if self.evaluates and not self.started:
            self._record(curriculum.observe(self._evaluate(predict)), -1, "start")
        self.started = True
        while True:
            self._settle(predict)
            if self.epoch >= self.epochs_total:
                return
            if self.current is None:
                self.current, self.done_in_stage = curriculum.next_stage(self.history), 0
                if self.current is None:
                    return
            stage = self.current
            rows = self.plan.pool(stage)
            if len(rows.positions) == 0:
                raise ValueError(f"{self.method}: stage {len(self.history)} ({stage.describe()}) has no training image")
            keys = epoch_keys(stage, rows, self.config.train.classifier.seed, self.epoch, self.plan.sampling,
                              self.plan.variants_per_row, self.plan.pool.rows.labels, self.num_classes, self.plan.epoch_entries)
            ends = self.done_in_stage + 1 >= stage.epochs or self.epoch + 1 >= self.epochs_total
            self.handed_out = True
            yield Epoch(self.epoch, len(self.history), stage, rows, keys, KeyedImages(self.images, keys), ends,
                        self.plan.pool.rows.paths, self.plan.pool.rows.labels)

    def finish(self, predict: Predict | None = None) -> None:
        """After the last epoch trained: counts it as trained and, for a curriculum that adapts, takes the
        look at the model that ends its last stage. It chooses nothing, but logs the last stage's scores in
        ``curriculum_log``, as `discl train` does. Asking :meth:`epochs` for an epoch past the last does the
        same; this is for loops that stop without asking (the adapters call it when training ends)."""
        self._settle(predict)

    def _settle(self, predict: Predict | None) -> None:
        if self.handed_out:  # asked for what comes next: the epoch handed out last is trained
            self._apply(self._after_epoch())
        if self.unobserved:  # a stage ended: the curriculum looks at the model as it is now
            if self.evaluates:
                self._record(self.plan.curriculum.observe(self._evaluate(predict)), len(self.history) - 1,
                             self.history[-1].describe())
            self.unobserved = False

    def _position(self) -> dict:
        return {"epoch": self.epoch, "done_in_stage": self.done_in_stage, "current": self.current,
                "history": list(self.history), "unobserved": self.unobserved, "handed_out": self.handed_out}

    def _after_epoch(self) -> dict:
        """Where the curriculum stands once the epoch handed out last is trained."""
        position = self._position()
        if not self.handed_out:
            return position
        position |= {"epoch": self.epoch + 1, "done_in_stage": self.done_in_stage + 1, "handed_out": False}
        stage = self.current
        if stage is not None and (position["done_in_stage"] >= stage.epochs or position["epoch"] >= self.epochs_total):
            position |= {"history": [*self.history, stage], "current": None, "unobserved": True}
        return position

    def _apply(self, position: dict) -> None:
        self.epoch, self.done_in_stage, self.current = position["epoch"], position["done_in_stage"], position["current"]
        self.history, self.unobserved, self.handed_out = position["history"], position["unobserved"], position["handed_out"]

    def _evaluate(self, predict: Predict | None):
        def evaluate(positions: np.ndarray, strengths: np.ndarray | None = None, draw_seed: int = 0) -> Predictions:
            if predict is None:
                raise ValueError(f"the {self.method} curriculum looks at the model at every stage end: pass predict")
            positions = np.asarray(positions, dtype=np.int64)
            keys = Keys.make(positions, np.full(len(positions), draw_seed, dtype=np.int64), strengths)
            out = predict(KeyedImages(self.images, keys))
            given, returned = out if isinstance(out, tuple) else (out, None)
            logits = torch.as_tensor(_to_numpy(given), dtype=torch.float64)
            if logits.shape != (len(positions), self.num_classes):
                raise ValueError(f"predict returned shape {tuple(logits.shape)}; expected ({len(positions)}, {self.num_classes}) logits")
            read = np.ones(len(positions), dtype=bool)
            if returned is not None:
                returned = _to_numpy(returned).reshape(-1)
                if len(returned) != len(positions):
                    raise ValueError(f"predict returned {len(returned)} labels for {len(positions)} images")
                read = returned != UNREADABLE
            probs = logits.softmax(-1)
            labels = torch.as_tensor(self.plan.pool.rows.labels[positions])
            pred = np.where(read, probs.argmax(-1).numpy(), -1).astype(np.int64)
            p_true = np.where(read, probs.gather(1, labels[:, None]).squeeze(1).numpy(), np.nan).astype(np.float32)
            return Predictions(pred, p_true, read)

        return evaluate

    def _record(self, rows: list[dict], stage_index: int, used: str) -> None:
        self.curriculum_log += [{"method": self.method, "stage": stage_index, "epoch": self.epoch, "used": used, **r} for r in rows]

    # -- your checkpoint
    def state_dict(self, epoch_done: bool = True) -> dict:
        """Where the curriculum stands (plain JSON): save it with your checkpoint to resume the same epochs.

        ``epoch_done`` (default): the epoch handed out last counts as trained (a checkpoint saved after
        training it); a resumed :meth:`epochs` starts with the next one, after the stage-end look at the
        restored model that an adaptive curriculum takes there. ``epoch_done=False``: a checkpoint saved
        while that epoch is still being trained; :meth:`epochs` then hands it out again."""
        position = self._after_epoch() if epoch_done else self._position() | {"handed_out": False}
        current = position["current"]
        return {"epoch": position["epoch"], "history": [s.to_json() for s in position["history"]], "started": self.started,
                "current": None if current is None else current.to_json(), "done_in_stage": position["done_in_stage"],
                "unobserved": position["unobserved"], "curriculum": copy.deepcopy(self.plan.curriculum.state_dict()),
                "curriculum_log": list(self.curriculum_log), "settings": self.settings}

    def load_state_dict(self, state: dict) -> None:
        """Refuses, with one line naming what changed, a state saved for other settings or inputs (the kept
        synthetic images, the hard samples, the training split): its epochs would not be this curriculum's."""
        changed = changed_keys(state["settings"], self.settings) if "settings" in state else []
        if changed:
            raise ValueError(f"this curriculum state of {self.method} was saved for other inputs or settings than the run's "
                             f"(changed: {describe_changes(changed[:5])}); start the training over")
        self.epoch, self.done_in_stage, self.started = state["epoch"], state["done_in_stage"], state["started"]
        self.history = [Stage.from_json(s) for s in state["history"]]
        self.current = None if state["current"] is None else Stage.from_json(state["current"])
        self.unobserved, self.handed_out = bool(state.get("unobserved", False)), False
        self.curriculum_log = list(state.get("curriculum_log", []))
        if state.get("curriculum") is not None:
            self.plan.curriculum.load_state_dict(state["curriculum"])


def _to_numpy(values: Any) -> np.ndarray:
    if torch.is_tensor(values):
        return values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64)
