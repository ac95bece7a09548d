"""Curricula over image guidance, selectable by name (see docs/curricula.md).

Each curriculum registers its name with ``@curricula.register`` (discl.registry) beside its class;
``create_curriculum`` builds one by name. Importing this package needs no PyTorch (CUDA's
augmentations import it when images are decoded)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..registry import curricula
from . import schedules  # noqa: F401  (registers; import order = the order names are listed in)
from .adaptive import Adaptive, CurriculumValidation, PerClassAdaptive, best_level, iqr_mean, level_scores
from .base import NOT_OBSERVED, Augment, Curriculum, CurriculumBase, CurriculumSpec, Evaluate, Stage, split_epochs
from .cuda import CudaCurriculum
from .schedules import AllSynthetic, FixedLevel, NonAdaptive, RandomLevel, RealOnly


def uses_validation(name: str) -> bool:
    """Whether the curriculum needs the curriculum validation set (whose sources leave training)."""
    return bool(curricula.get(name).validation)


def uses_synthetic(name: str) -> bool:
    return bool(curricula.get(name).synthetic)


def create_curriculum(
    name: str,
    total_epochs: int,
    levels: Sequence[int],
    curriculum_epochs: int,
    options=None,
    *,
    validation: CurriculumValidation | None = None,
    num_classes: int = 0,
    train_rows: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
) -> Curriculum:
    """Build a curriculum by name. ``options`` is a CurriculumConfig (defaults when None); ``train_rows``
    (positions, labels) are the real training rows, for CUDA's probe sets."""
    from ..config import CurriculumConfig

    entry = curricula.get(name)
    spec = CurriculumSpec(name, total_epochs, tuple(levels), curriculum_epochs, options or CurriculumConfig(),
                          curricula.parameter_of(name), validation, num_classes, train_rows, seed)
    return entry.target(spec)


def __getattr__(name: str) -> Any:
    if name == "augment_image":  # PyTorch only when asked for
        from .augment import augment_image

        return augment_image
    raise AttributeError(name)


__all__ = [
    "Adaptive", "AllSynthetic", "Augment", "CudaCurriculum", "Curriculum", "CurriculumBase", "CurriculumSpec",
    "CurriculumValidation", "FixedLevel", "NOT_OBSERVED",
    "Evaluate", "NonAdaptive", "PerClassAdaptive", "RandomLevel", "RealOnly", "Stage",
    "augment_image", "best_level", "create_curriculum", "curricula", "iqr_mean", "level_scores", "split_epochs",
    "uses_synthetic", "uses_validation",
]
