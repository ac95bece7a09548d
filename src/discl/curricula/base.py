"""What a curriculum answers and what it is told.

A stage trains on the real training data plus synthetic images chosen by
image-guidance level (a percent: 0 = pure text-to-image, 100 = the real image).
A curriculum is a small object with one job: ``next_stage(history)`` says which
data the next stage trains on, given the stages so far. The training loop calls
``observe(evaluate)`` at the end of every stage (and, for curricula that adapt,
``evaluates``, also before the first stage) with a function that predicts, with the
current model, the image rows at given positions (optionally augmented at given
strengths), so the curriculum can measure progress. Curricula never hold images:
they hold row positions, and the loop streams the files.
Their state is plain JSON (``state_dict`` / ``load_state_dict``), saved in
checkpoints so a resumed run takes the same decisions. :class:`CurriculumBase`
gives the defaults of a curriculum that never looks at the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

if TYPE_CHECKING:  # for annotations only: the rest of this module needs no PyTorch
    import torch

#: CUDA's per-class augmentation, applied where images are decoded: uint8 (3, H, W), strength, rng -> uint8.
Augment = Callable[["torch.Tensor", int, "torch.Generator"], "torch.Tensor"]


class Evaluate(Protocol):
    """positions of image rows (and per-row augmentation strengths) -> predictions with ``pred``,
    ``p_true`` (NaN where a file could not be read) and ``decoded`` arrays, in the order asked."""

    def __call__(self, positions: np.ndarray, strengths: np.ndarray | None = None, draw_seed: int = 0): ...


@dataclass(frozen=True)
class Stage:
    """The data of one stage.

    level: the one synthetic level used (None = real data only, unless ``levels`` or
    ``class_levels`` say otherwise); levels: several levels at once (all-synthetic,
    warm-up mix); class_levels: per-class levels as (label, level) pairs (per-class
    adaptive; classes not listed use real data only); augment: per-class augmentation
    strengths as (label, strength) pairs (CUDA); real_sample: > 0, real data only, that many real
    rows drawn at random (the reference's warm-up stage), 0 = every real row the stage allows."""

    level: int | None
    epochs: int
    levels: tuple[int, ...] = ()
    class_levels: tuple[tuple[int, int], ...] = ()
    augment: tuple[tuple[int, int], ...] = ()
    real_sample: int = 0

    def synthetic_levels(self) -> tuple[int, ...]:
        """Every level whose synthetic images this stage may use."""
        if self.levels:
            return tuple(sorted(set(self.levels)))
        if self.class_levels:
            return tuple(sorted({lv for _, lv in self.class_levels}))
        return () if self.level is None else (self.level,)

    def describe(self) -> str:
        """Short text for logs: "real", "50", "10+30+50", "per-class", "cuda"."""
        if self.class_levels:
            return "per-class:" + ",".join(f"{c}={lv}" for c, lv in self.class_levels)
        if self.augment:
            return "cuda:" + ",".join(f"{c}={s}" for c, s in self.augment)
        if self.levels:
            return "+".join(map(str, sorted(set(self.levels))))
        if self.real_sample:
            return f"real:{self.real_sample}"
        return "real" if self.level is None else str(self.level)

    def to_json(self) -> dict:
        return {"level": self.level, "epochs": self.epochs, "levels": list(self.levels),
                "class_levels": [list(p) for p in self.class_levels], "augment": [list(p) for p in self.augment]} | ({"real_sample": self.real_sample} if self.real_sample else {})

    @classmethod
    def from_json(cls, d: dict) -> Stage:
        return cls(d["level"], d["epochs"], tuple(d.get("levels", ())),
                   tuple(tuple(p) for p in d.get("class_levels", ())), tuple(tuple(p) for p in d.get("augment", ())), int(d.get("real_sample", 0)))


class Curriculum(Protocol):
    """Everything the training loop asks of a curriculum."""

    name: str
    #: Whether ``observe`` looks at the model: then the loop also calls it once before the first stage.
    evaluates: ClassVar[bool]

    @property
    def augment(self) -> Augment | None:
        """Per-row augmentation for the data loader (CUDA), or None."""
        ...

    def next_stage(self, history: Sequence[Stage]) -> Stage | None: ...

    def observe(self, evaluate: Evaluate) -> list[dict]:
        """Rows for the curriculum log, after it has (possibly) looked at the model through ``evaluate``."""
        ...

    def state_dict(self) -> dict | None: ...

    def load_state_dict(self, state: dict) -> None: ...


#: The curriculum log's row at a stage end for a curriculum that does not evaluate the model.
NOT_OBSERVED = {"class_label": -1, "level": -1, "progress": float("nan"), "smoothed": float("nan"),
                "n_images": 0, "n_outliers": 0, "chosen": False}


class CurriculumBase:
    """Defaults for :class:`Curriculum`: a curriculum fixed in advance, which never looks at the model
    and has no state of its own to checkpoint (it is rebuilt from the settings)."""

    evaluates: ClassVar[bool] = False
    augment: Augment | None = None

    def observe(self, evaluate: Evaluate) -> list[dict]:
        return [dict(NOT_OBSERVED)]  # one row per stage end all the same, so the log lists every stage

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict) -> None:
        pass


def split_epochs(total: int, parts: int) -> list[int]:
    """Even split of ``total`` epochs over ``parts`` stages, the remainder going to the earliest ones."""
    if parts < 1:
        raise ValueError("a curriculum needs at least one level")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def check_levels(levels: Sequence[int]) -> None:
    if not len(levels):
        raise ValueError("a curriculum needs at least one image-guidance level")
    bad = [lv for lv in levels if not 0 <= lv <= 100]
    if bad:
        raise ValueError(f"image-guidance levels must lie in [0, 100], got {bad}")


def check_period(curriculum_epochs: int, total_epochs: int) -> None:
    if not 0 <= curriculum_epochs <= total_epochs:
        raise ValueError(
            f"curriculum_epochs ({curriculum_epochs}) must lie between 0 and the total epochs ({total_epochs})"
        )


@dataclass(frozen=True)
class CurriculumSpec:
    """What the training run tells a curriculum's builder (``@curricula.register``, discl.registry).

    ``name``: the method as written in train.methods (``fixed-50``), ``parameter`` what follows the
    registered name's dash (``"50"``), else None; ``options``: train.curriculum (a CurriculumConfig);
    ``validation``: the curriculum validation set, for curricula registered with ``validation=True``;
    ``train_rows``: (positions, labels) of the real training rows, for ``augmentation=True`` ones."""

    name: str
    total_epochs: int
    levels: tuple[int, ...]
    curriculum_epochs: int
    options: Any
    parameter: str | None = None
    validation: Any = None
    num_classes: int = 0
    train_rows: tuple[np.ndarray, np.ndarray] | None = None
    seed: int = 0

    def require_validation(self):
        if self.validation is None:
            raise ValueError(f"curriculum {self.name!r} needs a curriculum validation set")
        return self.validation

    def require_train_rows(self) -> tuple[np.ndarray, np.ndarray]:
        if self.train_rows is None:
            raise ValueError(f"curriculum {self.name!r} needs the real training rows")
        return self.train_rows
