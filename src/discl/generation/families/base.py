"""What every family adapter shares: its declared capabilities (its discl.registry.families entry) and
how a level becomes the strength its pipeline is called with (generation/levels.py).

An adapter says, for its pipeline, which step a strength starts from (``start_index``), a strength that
starts from a given step (``strength_at``) and the noise at each start step (``start_sigmas``, from its
own scheduler at the working size); the rest is common."""

from __future__ import annotations

from collections.abc import Iterable

from ...registry import Entry
from ..levels import LEVEL_SCALES, nearest, reference_noise


class LevelsMixin:
    """Levels -> pipeline strengths, and the check that every level leaves a denoising step."""

    entry: Entry

    @property
    def steps(self) -> int:
        """generate.inference_steps."""
        raise NotImplementedError

    @property
    def level_scale(self) -> str:
        """generate.level_scale."""
        raise NotImplementedError

    # per family: the pipeline's own rules
    def start_index(self, strength: float) -> int:
        """The step of ``steps`` the pipeline starts denoising from at ``strength`` (0: pure noise)."""
        raise NotImplementedError

    def strength_at(self, index: int) -> float:
        """A strength the pipeline starts from step ``index`` at."""
        raise NotImplementedError

    def start_sigmas(self, size: tuple[int, int]) -> list[float]:
        """Noise (flow-matching sigma, levels.py) at each start step, at working size (height, width)."""
        raise NotImplementedError

    # common
    def pipeline_strength(self, level: float, size: tuple[int, int]) -> float:
        """The strength the pipeline is called with for ``level`` (generate.level_scale)."""
        if self.level_scale == "strength":
            return level
        return self.strength_at(nearest(self.start_sigmas(size), reference_noise(level)))

    def denoising_steps(self, level: float, size: tuple[int, int]) -> int:
        return self.steps - self.start_index(self.pipeline_strength(level, size))

    def check_levels(self, levels: Iterable[float], size: tuple[int, int]) -> None:
        """One ValueError naming the levels (strengths) the configured steps cannot reach, before any work."""
        if self.level_scale not in LEVEL_SCALES:
            raise ValueError(f"generate.level_scale must be one of {list(LEVEL_SCALES)}, got {self.level_scale!r}")
        if self.steps < self.entry.min_steps:
            raise ValueError(f"generate.inference_steps {self.steps}: the {self.entry.name} family needs at least {self.entry.min_steps}")
        levels = list(levels)
        if self.level_scale == "noise":
            for level in levels:
                reference_noise(level)  # each level must name a noise of the reference schedule
        dead = [level for level in levels if self.denoising_steps(level, size) < 1]
        if dead:
            raise ValueError(
                f"generate.strengths {dead} leave no denoising step at generate.inference_steps {self.steps} "
                f"(this model denoises int(steps x strength) steps); raise inference_steps to at least "
                f"{_steps_needed(min(dead))} or drop these strengths")


def _steps_needed(strength: float) -> int:
    steps = 1
    while int(steps * strength) < 1:
        steps += 1
    return steps
