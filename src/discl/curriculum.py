"""Curricula over image guidance: given the stages so far, which data the next stage trains on.

A stage trains on the real training data plus the kept synthetic images of
one image-guidance level (``level``, a percent: 0 = pure text-to-image,
100 = the real image). ``level=None`` means real data only. A curriculum
is a small object with one method, ``next_stage(history)``; the training loop
calls it until the epochs run out or it returns None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Stage:
    level: int | None  # image guidance of the synthetic data; None = real data only
    epochs: int


class Curriculum(Protocol):
    name: str

    def next_stage(self, history: Sequence[Stage]) -> Stage | None: ...


def split_epochs(total: int, parts: int) -> list[int]:
    """Even split of ``total`` epochs over ``parts`` stages, the remainder going to the earliest ones."""
    if parts < 1:
        raise ValueError("a curriculum needs at least one level")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@dataclass
class RealOnly:
    """The baseline: real data for every epoch."""

    total_epochs: int
    name: str = "real-only"

    def next_stage(self, history: Sequence[Stage]) -> Stage | None:
        return None if history else Stage(None, self.total_epochs)


@dataclass
class NonAdaptive:
    """Fixed synthetic-to-real schedule: ``levels`` in ascending order over the first
    ``curriculum_epochs`` epochs (evenly, remainder to the earliest levels), then real data only."""

    levels: Sequence[int]
    curriculum_epochs: int
    total_epochs: int
    name: str = "non-adaptive"

    def __post_init__(self) -> None:
        bad = [lv for lv in self.levels if not 0 <= lv <= 100]
        if bad:
            raise ValueError(f"image-guidance levels must lie in [0, 100], got {bad}")
        if not 0 <= self.curriculum_epochs <= self.total_epochs:
            raise ValueError(
                f"curriculum_epochs ({self.curriculum_epochs}) must lie between 0 and the total epochs ({self.total_epochs})"
            )
        if self.curriculum_epochs and self.curriculum_epochs < len(self.levels):
            raise ValueError(f"{self.curriculum_epochs} curriculum epochs cannot cover {len(self.levels)} levels")
        ordered = sorted(self.levels)
        lengths = split_epochs(self.curriculum_epochs, len(ordered)) if self.curriculum_epochs else []
        self._plan = [Stage(lv, n) for lv, n in zip(ordered, lengths)]
        if self.total_epochs > self.curriculum_epochs:
            self._plan.append(Stage(None, self.total_epochs - self.curriculum_epochs))

    def next_stage(self, history: Sequence[Stage]) -> Stage | None:
        return self._plan[len(history)] if len(history) < len(self._plan) else None


CURRICULA = ("real-only", "non-adaptive")


def create_curriculum(name: str, total_epochs: int, levels: Sequence[int], curriculum_epochs: int) -> Curriculum:
    if name == "real-only":
        return RealOnly(total_epochs)
    if name == "non-adaptive":
        return NonAdaptive(levels, curriculum_epochs, total_epochs)
    raise ValueError(f"unknown curriculum {name!r}; known: {list(CURRICULA)}")
