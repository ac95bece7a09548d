"""Curricula fixed in advance: the non-adaptive DisCL schedule and the paper's baselines."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..registry import curricula
from ..seeding import stable_seed
from .base import CurriculumBase, CurriculumSpec, Stage, check_levels, check_period, split_epochs


class _Planned(CurriculumBase):
    """A curriculum that is a list of stages laid out at construction."""

    _plan: list[Stage]

    def next_stage(self, history: Sequence[Stage]) -> Stage | None:
        return self._plan[len(history)] if len(history) < len(self._plan) else None

    def plan(self) -> list[Stage]:
        return list(self._plan)


def _then_real(plan: list[Stage], curriculum_epochs: int, total_epochs: int) -> list[Stage]:
    if total_epochs > curriculum_epochs:
        plan.append(Stage(None, total_epochs - curriculum_epochs))
    return plan


def _lengths(levels: Sequence[int], curriculum_epochs: int, stage_epochs: Sequence[int] | None) -> list[int]:
    if stage_epochs:
        if len(stage_epochs) != len(levels):
            raise ValueError(f"stage_epochs {list(stage_epochs)} must give one length per level {list(levels)}")
        if sum(stage_epochs) != curriculum_epochs or min(stage_epochs) < 1:
            raise ValueError(f"stage_epochs {list(stage_epochs)} must be >= 1 each and sum to curriculum_epochs ({curriculum_epochs})")
        return list(stage_epochs)
    if curriculum_epochs and curriculum_epochs < len(levels):
        raise ValueError(f"{curriculum_epochs} curriculum epochs cannot cover {len(levels)} levels")
    return split_epochs(curriculum_epochs, len(levels)) if curriculum_epochs else []


@dataclass
class RealOnly(_Planned):
    """The baseline: real data for every epoch."""

    total_epochs: int
    name: str = "real-only"

    def __post_init__(self) -> None:
        self._plan = [Stage(None, self.total_epochs)]


@dataclass
class NonAdaptive(_Planned):
    """Fixed synthetic-to-real schedule: ``levels`` ascending (descending with ``reverse``) over the first
    ``curriculum_epochs`` epochs, evenly with the remainder to the earliest stages, or as ``stage_epochs``
    says; then real data only."""

    levels: Sequence[int]
    curriculum_epochs: int
    total_epochs: int
    stage_epochs: Sequence[int] | None = None
    reverse: bool = False
    name: str = "non-adaptive"

    def __post_init__(self) -> None:
        check_levels(self.levels)
        check_period(self.curriculum_epochs, self.total_epochs)
        ordered = sorted(self.levels, reverse=self.reverse)
        lengths = _lengths(ordered, self.curriculum_epochs, self.stage_epochs)
        self._plan = _then_real([Stage(lv, n) for lv, n in zip(ordered, lengths)], self.curriculum_epochs, self.total_epochs)


@dataclass
class AllSynthetic(_Planned):
    """No curriculum: the real data plus the synthetic images of every level at once, for the whole
    curriculum period (all epochs by default), then real data only."""

    levels: Sequence[int]
    curriculum_epochs: int
    total_epochs: int
    name: str = "all-synthetic"

    def __post_init__(self) -> None:
        check_levels(self.levels)
        check_period(self.curriculum_epochs, self.total_epochs)
        plan = [Stage(None, self.curriculum_epochs, levels=tuple(sorted(set(self.levels))))] if self.curriculum_epochs else []
        self._plan = _then_real(plan, self.curriculum_epochs, self.total_epochs)


@dataclass
class FixedLevel(_Planned):
    """One synthetic level for the whole curriculum period, then real data only."""

    level: int
    curriculum_epochs: int
    total_epochs: int
    name: str = "fixed"

    def __post_init__(self) -> None:
        check_levels([self.level])
        check_period(self.curriculum_epochs, self.total_epochs)
        plan = [Stage(self.level, self.curriculum_epochs)] if self.curriculum_epochs else []
        self._plan = _then_real(plan, self.curriculum_epochs, self.total_epochs)


@dataclass
class RandomLevel(_Planned):
    """A level drawn at random for each stage (seeded: the same seed gives the same draws in every
    process), stages of ``stage_length`` epochs over the curriculum period, then real data only."""

    levels: Sequence[int]
    curriculum_epochs: int
    total_epochs: int
    seed: int = 0
    stage_length: int = 1
    name: str = "random"

    def __post_init__(self) -> None:
        check_levels(self.levels)
        check_period(self.curriculum_epochs, self.total_epochs)
        if self.stage_length < 1:
            raise ValueError(f"stage_length must be >= 1, got {self.stage_length}")
        rng = random.Random(stable_seed("random-level", self.seed))
        plan, left = [], self.curriculum_epochs
        while left > 0:
            n = min(self.stage_length, left)
            plan.append(Stage(rng.choice(sorted(self.levels)), n))
            left -= n
        self._plan = _then_real(plan, self.curriculum_epochs, self.total_epochs)


# -- the names train.methods takes (discl.registry.curricula), in the order docs list them
@curricula.register("real-only", synthetic=False)
def build_real_only(spec: CurriculumSpec) -> RealOnly:
    """Real data only: the baseline every curriculum is compared with."""
    return RealOnly(spec.total_epochs)


@curricula.register("all-synthetic", settings=())
def build_all_synthetic(spec: CurriculumSpec) -> AllSynthetic:
    """Every level's synthetic images at once for the curriculum period, then real data (a baseline)."""
    return AllSynthetic(spec.levels, spec.curriculum_epochs, spec.total_epochs)


@curricula.register("non-adaptive", settings=("stage_epochs",))
def build_non_adaptive(spec: CurriculumSpec) -> NonAdaptive:
    """DisCL's fixed schedule: the levels from synthetic (low) to real (high), then real data."""
    return NonAdaptive(spec.levels, spec.curriculum_epochs, spec.total_epochs, spec.options.stage_epochs or None)


@curricula.register("reverse", settings=("stage_epochs",))
def build_reverse(spec: CurriculumSpec) -> NonAdaptive:
    """The fixed schedule backwards, real-like to synthetic (an ablation)."""
    return NonAdaptive(spec.levels, spec.curriculum_epochs, spec.total_epochs, spec.options.stage_epochs or None,
                       reverse=True, name="reverse")


def _level_problem(parameter: str) -> str | None:
    return None if parameter.isdigit() and int(parameter) <= 100 else "expected fixed-<level 0..100>, e.g. fixed-50"


@curricula.register("fixed", parameter="level", settings=("fixed_level",), check=_level_problem)
def build_fixed(spec: CurriculumSpec) -> FixedLevel:
    """One level for the whole curriculum period: fixed-<level> (e.g. fixed-50), or train.curriculum.fixed_level."""
    if spec.parameter is None:
        level = spec.options.fixed_level
    elif (problem := _level_problem(spec.parameter)) is None:
        level = int(spec.parameter)
    else:
        raise ValueError(f"curriculum {spec.name!r}: {problem}")
    return FixedLevel(level, spec.curriculum_epochs, spec.total_epochs, name=spec.name)


@curricula.register("random", settings=("min_level", "stage_length"))
def build_random(spec: CurriculumSpec) -> RandomLevel:
    """A random level each stage (an ablation of the adaptive choice)."""
    # Like the adaptive curricula, the random variant draws only among levels >= min_level.
    candidates = [lv for lv in spec.levels if lv >= spec.options.min_level]
    if not candidates:
        raise ValueError(f"no level in {list(spec.levels)} is >= min_level {spec.options.min_level}")
    return RandomLevel(candidates, spec.curriculum_epochs, spec.total_epochs, seed=spec.seed, stage_length=spec.options.stage_length)
