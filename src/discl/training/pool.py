"""The rows one training run reads, in one table, and which of them a curriculum stage uses."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..curricula import Stage
from ..data.rows import ImageRows
from ..rundir import RunDir
from .loop import StageRows


class RowPool:
    """Every row one method reads, in one :class:`ImageRows`, laid out as
    [real training rows | kept synthetic rows | validation split | curriculum-validation rows];
    a stage is a set of positions in it."""

    def __init__(self, run: RunDir, real: pd.DataFrame, synthetic: pd.DataFrame | None, val: pd.DataFrame,
                 few_labels: set[int], extra: pd.DataFrame | None = None):
        synthetic = synthetic if synthetic is not None else pd.DataFrame({"path": [], "label": [], "image_guidance": []})
        extra = extra if extra is not None else pd.DataFrame({"path": [], "label": []})
        parts = [real, synthetic, val, extra]
        self.rows = ImageRows.concat([ImageRows.from_frame(p, run.resolve_all) for p in parts])
        self.n_real, self.n_synthetic = len(real), len(synthetic)
        starts = np.cumsum([0] + [len(p) for p in parts])
        self.val = np.arange(starts[2], starts[3], dtype=np.int64)
        self.extra = np.arange(starts[3], starts[4], dtype=np.int64)
        self.syn_levels = synthetic["image_guidance"].to_numpy(dtype=np.int64)
        self.syn_labels = synthetic["label"].to_numpy(dtype=np.int64)
        self.real_tail = np.isin(real["label"].to_numpy(dtype=np.int64), sorted(few_labels))
        self._cache: dict[tuple, StageRows] = {}

    def real_positions(self) -> np.ndarray:
        return np.arange(self.n_real, dtype=np.int64)

    def __call__(self, stage: Stage) -> StageRows:
        key = (stage.synthetic_levels(), stage.class_levels)
        if key not in self._cache:
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
            positions = np.concatenate([self.real_positions(), synthetic])
            tail = np.concatenate([self.real_tail, np.ones(len(synthetic), dtype=bool)])
            self._cache[key] = StageRows(positions, self.n_real, len(synthetic), tail)
        return self._cache[key]
