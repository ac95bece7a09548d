"""The rows one training run reads, in one table, and which of them a curriculum stage uses."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..curricula import Stage
from ..data.rows import ImageRows
from ..rundir import RunDir
from ..seeding import stable_seed
from .loop import StageRows


class RowPool:
    """Every row one method reads, in one :class:`ImageRows`, laid out as
    [real training rows | kept synthetic rows | validation split | curriculum-validation rows | test split];
    a stage is a set of positions in it.

    ``hard_real`` (bool per real row) marks the hard samples' own real images: with it, a curriculum
    stage without level 100 leaves them out (train.curriculum.stage_real = "non-hard" or "unreplaced").

    ``synthetic_tail``: which synthetic rows count as tail rows for tail sampling: "all", or "few" (those
    of ``few_labels`` classes, the reference's rule; the others are non-tail rows). ``seed`` draws the real
    rows of a stage with ``real_sample`` (the reference's warm-up stage)."""

    def __init__(self, run: RunDir, real: pd.DataFrame, synthetic: pd.DataFrame | None, val: pd.DataFrame,
                 few_labels: set[int], extra: pd.DataFrame | None = None, test: pd.DataFrame | None = None,
                 hard_real: np.ndarray | None = None, synthetic_tail: str = "all", seed: int = 0):
        if synthetic_tail not in ("all", "few"):
            raise ValueError(f"unknown synthetic_tail {synthetic_tail!r}; known: ['all', 'few']")
        synthetic = synthetic if synthetic is not None else pd.DataFrame({"path": [], "label": [], "image_guidance": []})
        empty = pd.DataFrame({"path": [], "label": []})
        parts = [real, synthetic, val, extra if extra is not None else empty, test if test is not None else empty]
        self.rows = ImageRows.concat([ImageRows.from_frame(p, run.resolve_all) for p in parts])
        self.n_real, self.n_synthetic = len(real), len(synthetic)
        starts = np.cumsum([0] + [len(p) for p in parts])
        self.val = np.arange(starts[2], starts[3], dtype=np.int64)
        self.extra = np.arange(starts[3], starts[4], dtype=np.int64)
        self.test = np.arange(starts[4], starts[5], dtype=np.int64)
        self.syn_levels = synthetic["image_guidance"].to_numpy(dtype=np.int64)
        self.syn_labels = synthetic["label"].to_numpy(dtype=np.int64)
        self.real_labels = real["label"].to_numpy(dtype=np.int64)
        self.real_tail = np.isin(self.real_labels, sorted(few_labels))
        self.syn_tail = np.isin(self.syn_labels, sorted(few_labels)) if synthetic_tail == "few" else np.ones(len(synthetic), dtype=bool)
        self.seed = seed
        self.hard_real = None if hard_real is None else np.asarray(hard_real, dtype=bool)
        if self.hard_real is not None and len(self.hard_real) != self.n_real:
            raise ValueError(f"hard_real has {len(self.hard_real)} entries for {self.n_real} real rows")
        self._cache: dict[tuple, StageRows] = {}

    def real_positions(self) -> np.ndarray:
        return np.arange(self.n_real, dtype=np.int64)

    def __call__(self, stage: Stage) -> StageRows:
        key = (stage.synthetic_levels(), stage.class_levels, stage.real_sample)
        if key not in self._cache:
            if stage.real_sample:
                # Real rows only, drawn at random without replacement (all of them when fewer).
                rng = np.random.default_rng(stable_seed("real-sample", self.seed, stage.real_sample))
                real = np.sort(rng.permutation(self.n_real)[: stage.real_sample]).astype(np.int64)
                self._cache[key] = StageRows(real, len(real), 0, self.real_tail[real])
                return self._cache[key]
            if stage.class_levels:
                # One level per class: a row is chosen when its level is its class's level.
                size = 1 + max([int(c) for c, _ in stage.class_levels] + [int(self.syn_labels.max()) if self.n_synthetic else 0])
                level_of = np.full(size, -1, dtype=np.int64)
                for c, lv in stage.class_levels:
                    level_of[int(c)] = int(lv)
                chosen = self.syn_levels == level_of[self.syn_labels]
            else:
                chosen = np.isin(self.syn_levels, stage.synthetic_levels())
            synthetic = self.n_real + np.flatnonzero(chosen)
            real = self._real_rows(stage)
            positions = np.concatenate([real, synthetic])
            tail = np.concatenate([self.real_tail[real], self.syn_tail[chosen]])
            self._cache[key] = StageRows(positions, len(real), len(synthetic), tail)
        return self._cache[key]

    def _real_rows(self, stage: Stage) -> np.ndarray:
        """The real rows of a stage: all of them, or (with ``hard_real``) without the hard samples' own
        images wherever the stage shows their synthetic images instead of the real ones (a level < 100)."""
        everything = self.real_positions()
        if self.hard_real is None:
            return everything
        if stage.class_levels:
            replaced = np.zeros(1 + max(int(self.real_labels.max(initial=0)), max(int(c) for c, _ in stage.class_levels)), dtype=bool)
            for c, lv in stage.class_levels:
                replaced[int(c)] = int(lv) < 100
            drop = self.hard_real & replaced[self.real_labels]
        elif stage.synthetic_levels() and 100 not in stage.synthetic_levels():
            drop = self.hard_real
        else:
            return everything
        return everything[~drop]
