"""Curricula over image guidance, selectable by name (see docs/curricula.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .adaptive import Adaptive, CurriculumValidation, PerClassAdaptive, best_level, iqr_mean, level_scores
from .base import NOT_OBSERVED, Augment, Curriculum, CurriculumBase, Evaluate, Stage, split_epochs
from .cuda import CudaCurriculum, augment_image
from .schedules import AllSynthetic, FixedLevel, NonAdaptive, RandomLevel, RealOnly

# "fixed-<level>" (e.g. fixed-50) is accepted too.
CURRICULA = ("real-only", "all-synthetic", "non-adaptive", "reverse", "fixed", "random", "adaptive",
             "adaptive-warmup", "adaptive-per-class", "cuda")
ADAPTIVE = ("adaptive", "adaptive-warmup", "adaptive-per-class")


def uses_validation(name: str) -> bool:
    """Whether the curriculum needs the curriculum validation set (whose sources leave training)."""
    return name in ADAPTIVE


def uses_synthetic(name: str) -> bool:
    return name not in ("real-only", "cuda")


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

    o = options or CurriculumConfig()
    if name == "real-only":
        return RealOnly(total_epochs)
    if name == "non-adaptive":
        return NonAdaptive(levels, curriculum_epochs, total_epochs, o.stage_epochs or None)
    if name == "reverse":
        return NonAdaptive(levels, curriculum_epochs, total_epochs, o.stage_epochs or None, reverse=True, name="reverse")
    if name == "all-synthetic":
        return AllSynthetic(levels, curriculum_epochs, total_epochs)
    if name == "fixed" or name.startswith("fixed-"):
        level = o.fixed_level if name == "fixed" else _level_in(name)
        return FixedLevel(level, curriculum_epochs, total_epochs, name=name)
    if name == "random":
        # Like the adaptive curricula, the random variant draws only among levels >= min_level.
        candidates = [lv for lv in levels if lv >= o.min_level]
        if not candidates:
            raise ValueError(f"no level in {list(levels)} is >= min_level {o.min_level}")
        return RandomLevel(candidates, curriculum_epochs, total_epochs, seed=seed, stage_length=o.stage_length)
    if name in ADAPTIVE:
        if validation is None:
            raise ValueError(f"curriculum {name!r} needs a curriculum validation set")
        kwargs: dict[str, Any] = dict(stage_length=o.stage_length, warmup=o.warmup or name == "adaptive-warmup",
                      min_level=o.min_level, smoothing=o.smoothing, name=name)
        if name == "adaptive-per-class":
            return PerClassAdaptive(levels, curriculum_epochs, total_epochs, validation, num_classes=num_classes, **kwargs)
        return Adaptive(levels, curriculum_epochs, total_epochs, validation, **kwargs)
    if name == "cuda":
        if train_rows is None:
            raise ValueError("curriculum 'cuda' needs the real training rows")
        return CudaCurriculum(total_epochs, train_rows[0], train_rows[1], num_classes, o.cuda_threshold,
                              o.cuda_max_strength, o.cuda_probe_per_class, seed)
    raise ValueError(f"unknown curriculum {name!r}; known: {list(CURRICULA)} (and fixed-<level>)")


def _level_in(name: str) -> int:
    try:
        return int(name.split("-", 1)[1])
    except ValueError:
        raise ValueError(f"curriculum {name!r}: expected fixed-<level>, e.g. fixed-50") from None


__all__ = [
    "Adaptive", "AllSynthetic", "Augment", "CURRICULA", "CudaCurriculum", "Curriculum", "CurriculumBase",
    "CurriculumValidation", "FixedLevel", "NOT_OBSERVED",
    "Evaluate", "NonAdaptive", "PerClassAdaptive", "RandomLevel", "RealOnly", "Stage",
    "augment_image", "best_level", "create_curriculum", "iqr_mean", "level_scores", "split_epochs",
    "uses_synthetic", "uses_validation",
]
