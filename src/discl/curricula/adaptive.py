"""Adaptive curricula: the next level is the one the model is learning from fastest.

The *curriculum validation set* holds one synthetic image per (source, level)
for sources whose full spectrum survived filtering; those sources are left out
of training (the stage builder removes them). At the start of training and at
every stage end the model's probability of the true class is measured on it.
For each level, per-image progress = p_true now - p_true at the last
evaluation; values beyond 1.5 IQR of that level's progress are dropped as
outliers; the level's score is the mean of the rest (optionally smoothed across
stages as an exponential moving average). The next stage uses the level with
the best score (ties go to the lower, more synthetic level). After the
curriculum period, training continues on real data only.

Unlike the reference code, the chosen level is what the next stage trains on,
on every dataset, and the choice is logged with the scores that made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..registry import curricula
from .base import CurriculumBase, CurriculumSpec, Evaluate, Stage, check_levels, check_period


@dataclass
class CurriculumValidation:
    """One image per (source, level): the positions of its rows among the run's image rows, their
    true labels and levels."""

    positions: np.ndarray
    labels: np.ndarray
    levels: np.ndarray
    source_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, dtype=np.int64)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.levels = np.asarray(self.levels, dtype=np.int64)
        n = len(self.labels)
        if len(self.positions) != n or len(self.levels) != n:
            raise ValueError(f"curriculum validation set: {len(self.positions)} rows, {n} labels, {len(self.levels)} levels")

    def p_true(self, evaluate: Evaluate) -> np.ndarray:
        """p(true class) of each image; NaN for an image that could not be read."""
        if not len(self.labels):
            return np.zeros(0)
        return np.asarray(evaluate(self.positions).p_true, dtype=np.float64)


def iqr_mean(values: np.ndarray, k: float = 1.5) -> tuple[float, int]:
    """Mean of ``values`` after dropping those beyond ``k`` IQR outside the quartiles; (mean, n dropped).
    NaN values (images that could not be read) are left out first."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), 0
    q1, q3 = np.percentile(values, [25, 75])
    spread = q3 - q1
    keep = (values >= q1 - k * spread) & (values <= q3 + k * spread)
    return float(values[keep].mean()), int((~keep).sum())


def level_scores(progress: np.ndarray, levels: np.ndarray, candidates: Sequence[int]) -> dict[int, tuple[float, int, int]]:
    """level -> (mean progress without outliers, n images, n outliers dropped)."""
    out = {}
    for level in candidates:
        values = progress[levels == level]
        mean, dropped = iqr_mean(values)
        out[int(level)] = (mean, int(len(values)), dropped)
    return out


def best_level(scores: dict[int, float]) -> int | None:
    """Highest score; ties (and NaN-free ordering) favour the lower level."""
    finite = {lv: s for lv, s in scores.items() if np.isfinite(s)}
    if not finite:
        return None
    return max(sorted(finite), key=lambda lv: finite[lv])


@dataclass
class Adaptive(CurriculumBase):
    """DisCL's adaptive curriculum over ``levels`` (only those >= ``min_level``).

    stage_length: epochs per stage (1 = re-evaluate each time the stage's data has been seen once);
    warmup: start with a warm-up stage instead of the lowest level: with ``warmup_data`` "levels" a
    uniform mix of all candidate levels, with "real" ``warmup_rows`` real rows drawn at random (the
    reference's uniform set); smoothing: weight of the previous smoothed score (0 = use this stage's
    progress alone); progress_start: "measured" (the first choice scores the gain in p(true) since
    before training) or "zero" (the reference: from an empty last performance, so the first choice
    ranks levels by p(true) itself; a warm-up stage always measures its baseline)."""

    levels: Sequence[int]
    curriculum_epochs: int
    total_epochs: int
    validation: CurriculumValidation
    stage_length: int = 1
    warmup: bool = False
    min_level: int = 0
    smoothing: float = 0.0
    warmup_data: str = "levels"
    warmup_rows: int = 30000
    progress_start: str = "measured"
    name: str = "adaptive"
    evaluates: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_levels(self.levels)
        check_period(self.curriculum_epochs, self.total_epochs)
        self.candidates = sorted({int(lv) for lv in self.levels if lv >= self.min_level})
        if not self.candidates:
            raise ValueError(f"no level in {list(self.levels)} is >= min_level {self.min_level}")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing must lie in [0, 1), got {self.smoothing}")
        if self.stage_length < 1:
            raise ValueError(f"stage_length must be >= 1, got {self.stage_length}")
        if self.warmup_data not in ("levels", "real") or self.warmup_rows < 1:
            raise ValueError(f"warmup_data must be 'levels' or 'real' and warmup_rows >= 1, got {self.warmup_data!r}, {self.warmup_rows}")
        if self.progress_start not in ("measured", "zero"):
            raise ValueError(f"progress_start must be 'measured' or 'zero', got {self.progress_start!r}")
        present = set(self.validation.levels.tolist())
        missing = [lv for lv in self.candidates if lv not in present]
        if missing:
            raise ValueError(f"the curriculum validation set has no image at levels {missing}")
        self.last_p: list[float] | None = None
        self.smoothed: dict[str, float] = {}
        self.choice: int | None = None

    # -- what the loop tells it
    def observe(self, evaluate: Evaluate) -> list[dict]:
        if self.last_p is None and self.progress_start == "zero" and not self.warmup:
            # Before training: the reference's last performance starts empty (zeros); nothing to measure.
            self.last_p = [0.0] * len(self.validation.labels)
            return []
        p_now = self.validation.p_true(evaluate)
        records: list[dict] = []
        if self.last_p is not None:
            records = self._update(p_now - np.asarray(self.last_p))
        self.last_p = p_now.tolist()
        return records

    def _smooth(self, key: str, value: float) -> float:
        prev = self.smoothed.get(key)
        new = value if prev is None or not np.isfinite(prev) else self.smoothing * prev + (1 - self.smoothing) * value
        self.smoothed[key] = new
        return new

    def _update(self, progress: np.ndarray) -> list[dict]:
        levels = self.validation.levels
        scores = level_scores(progress, levels, self.candidates)
        smoothed = {lv: self._smooth(str(lv), s) for lv, (s, _, _) in scores.items()}
        self.choice = best_level(smoothed)
        return [
            {"class_label": -1, "level": lv, "progress": s, "smoothed": smoothed[lv], "n_images": n, "n_outliers": d,
             "chosen": lv == self.choice}
            for lv, (s, n, d) in scores.items()
        ]

    # -- what it answers
    def _epochs_used(self, history: Sequence[Stage]) -> int:
        return sum(s.epochs for s in history)

    def next_stage(self, history: Sequence[Stage]) -> Stage | None:
        used = self._epochs_used(history)
        if used >= self.total_epochs:
            return None
        if used >= self.curriculum_epochs:
            return Stage(None, self.total_epochs - used)
        n = min(self.stage_length, self.curriculum_epochs - used)
        if not history and self.warmup:
            if self.warmup_data == "real":
                return Stage(None, n, real_sample=self.warmup_rows)
            return Stage(None, n, levels=tuple(self.candidates))
        return self._stage(n)

    def _stage(self, epochs: int) -> Stage:
        return Stage(self.choice if self.choice is not None else self.candidates[0], epochs)

    def state_dict(self) -> dict:
        return {"last_p": self.last_p, "smoothed": self.smoothed, "choice": self.choice}

    def load_state_dict(self, state: dict) -> None:
        self.last_p, self.smoothed, self.choice = state["last_p"], dict(state["smoothed"]), state["choice"]


@dataclass
class PerClassAdaptive(Adaptive):
    """Each class picks its own level by the progress of its own validation images; classes with no
    validation image follow the overall choice."""

    num_classes: int = 0
    name: str = "adaptive-per-class"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes < 1:
            raise ValueError("the per-class adaptive curriculum needs num_classes")
        self.class_choice: dict[str, int] = {}

    def _update(self, progress: np.ndarray) -> list[dict]:
        records = super()._update(progress)
        levels, labels = self.validation.levels, self.validation.labels
        for c in sorted(set(labels.tolist())):
            mask = labels == c
            scores = level_scores(progress[mask], levels[mask], self.candidates)
            smoothed = {lv: self._smooth(f"{c}:{lv}", s) for lv, (s, _, _) in scores.items()}
            choice = best_level(smoothed)
            if choice is not None:
                self.class_choice[str(c)] = choice
            records += [
                {"class_label": int(c), "level": lv, "progress": s, "smoothed": smoothed[lv], "n_images": n,
                 "n_outliers": d, "chosen": lv == choice}
                for lv, (s, n, d) in scores.items()
            ]
        return records

    def _stage(self, epochs: int) -> Stage:
        default = self.choice if self.choice is not None else self.candidates[0]
        pairs = tuple((c, self.class_choice.get(str(c), default)) for c in range(self.num_classes))
        return Stage(None, epochs, class_levels=pairs)

    def state_dict(self) -> dict:
        return super().state_dict() | {"class_choice": self.class_choice}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.class_choice = dict(state["class_choice"])


_ADAPTIVE_SETTINGS = ("stage_length", "warmup", "warmup_data", "warmup_rows", "min_level", "smoothing",
                      "progress_start", "val_sources", "val_image")


def _adaptive_options(spec: CurriculumSpec, warmup: bool = False) -> dict:
    o = spec.options
    return dict(stage_length=o.stage_length, warmup=o.warmup or warmup, min_level=o.min_level,
                smoothing=o.smoothing, warmup_data=o.warmup_data, warmup_rows=o.warmup_rows,
                progress_start=o.progress_start, name=spec.name)


@curricula.register("adaptive", validation=True, settings=_ADAPTIVE_SETTINGS)
def build_adaptive(spec: CurriculumSpec) -> Adaptive:
    """DisCL's adaptive curriculum: each stage, the level whose images the model learns fastest from."""
    return Adaptive(spec.levels, spec.curriculum_epochs, spec.total_epochs, spec.require_validation(), **_adaptive_options(spec))


@curricula.register("adaptive-warmup", validation=True, settings=_ADAPTIVE_SETTINGS)
def build_adaptive_warmup(spec: CurriculumSpec) -> Adaptive:
    """The adaptive curriculum after a first stage on a uniform mix of all levels."""
    return Adaptive(spec.levels, spec.curriculum_epochs, spec.total_epochs, spec.require_validation(),
                    **_adaptive_options(spec, warmup=True))


@curricula.register("adaptive-per-class", validation=True, settings=_ADAPTIVE_SETTINGS)
def build_adaptive_per_class(spec: CurriculumSpec) -> PerClassAdaptive:
    """The adaptive choice made per class."""
    return PerClassAdaptive(spec.levels, spec.curriculum_epochs, spec.total_epochs, spec.require_validation(),
                            num_classes=spec.num_classes, **_adaptive_options(spec))
