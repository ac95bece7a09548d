"""Curricula fixed in advance: the non-adaptive DisCL schedule and the paper's baselines."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..seeding import stable_seed
from .base import CurriculumBase, Stage, check_levels, check_period, split_epochs


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
