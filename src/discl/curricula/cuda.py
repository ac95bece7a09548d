"""CUDA baseline (Ahn et al., "CUDA: Curriculum of Data Augmentation for Long-Tailed Recognition",
ICLR 2023): classical augmentations whose strength is chosen per class.

Rule implemented here (one epoch per stage, real data only):
- every class starts at strength 0 (no augmentation);
- at each stage end, up to ``probe_per_class`` training images of class c are augmented at
  the class's strength L_c and classified by the current model; if the accuracy is at least
  ``threshold`` (CUDA's gamma, 0.6) the class is learnt well and L_c rises by one (up to
  ``max_strength``), otherwise it falls by one (down to 0);
- an image of class c is augmented with min(L_c, number of ops) operations drawn at random
  from the list below, each at magnitude L_c / max_strength.
Operations are torchvision's (transforms.v2.functional) on uint8 tensors (curricula/augment.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..registry import curricula
from ..seeding import stable_seed
from .base import CurriculumBase, CurriculumSpec, Evaluate, Stage

if TYPE_CHECKING:  # the augmentations (and PyTorch) are imported where images are decoded
    import torch


@dataclass
class CudaCurriculum(CurriculumBase):
    """Per-class augmentation strength that rises while the class is learnt well and falls otherwise.

    ``positions`` / ``labels``: the real training rows (positions among the run's image rows);
    the probe set of each class is its first ``probe_per_class`` rows. Images are augmented where
    they are decoded (``augment``, called by the data loader with each row's strength)."""

    total_epochs: int
    positions: np.ndarray
    labels: np.ndarray
    num_classes: int
    threshold: float = 0.6
    max_strength: int = 10
    probe_per_class: int = 32
    seed: int = 0
    name: str = "cuda"
    evaluates: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ValueError(f"CUDA threshold must lie in (0, 1], got {self.threshold}")
        self.strength = [0] * self.num_classes
        self.n_observed = 0
        positions, labels = np.asarray(self.positions, dtype=np.int64), np.asarray(self.labels, dtype=np.int64)
        self._probe = {c: positions[np.flatnonzero(labels == c)[: self.probe_per_class]] for c in range(self.num_classes)}

    def augment(self, image: torch.Tensor, strength: int, generator: torch.Generator) -> torch.Tensor:
        from .augment import augment_image

        return augment_image(image, strength, self.max_strength, generator)

    def observe(self, evaluate: Evaluate) -> list[dict]:
        classes = [c for c, rows in self._probe.items() if len(rows)]
        if not classes:
            return []
        rows = np.concatenate([self._probe[c] for c in classes])
        owner = np.concatenate([np.full(len(self._probe[c]), c) for c in classes])
        strengths = np.asarray([self.strength[c] for c in owner], dtype=np.int64)
        result = evaluate(rows, strengths, stable_seed("cuda", self.seed, self.n_observed))
        self.n_observed += 1
        records = []
        for c in classes:
            mine = (owner == c) & result.decoded
            acc = float((result.pred[mine] == c).mean()) if mine.any() else 0.0
            before = self.strength[c]
            self.strength[c] = min(self.max_strength, before + 1) if acc >= self.threshold else max(0, before - 1)
            records.append({"class_label": c, "level": before, "progress": acc, "smoothed": acc,
                            "n_images": int((owner == c).sum()), "n_outliers": 0, "chosen": False})
        return records

    def next_stage(self, history: Sequence[Stage]) -> Stage | None:
        used = sum(s.epochs for s in history)
        if used >= self.total_epochs:
            return None
        return Stage(None, 1, augment=tuple((c, s) for c, s in enumerate(self.strength)))

    def state_dict(self) -> dict:
        return {"strength": list(self.strength), "n_observed": self.n_observed}

    def load_state_dict(self, state: dict) -> None:
        self.strength, self.n_observed = list(state["strength"]), int(state["n_observed"])


@curricula.register("cuda", synthetic=False, augmentation=True,
                    settings=("cuda_threshold", "cuda_max_strength", "cuda_probe_per_class"))
def build_cuda(spec: CurriculumSpec) -> CudaCurriculum:
    """CUDA (Ahn et al., ICLR 2023): real images only, per-class augmentation strength that rises while
    the class is learnt well (a baseline)."""
    positions, labels = spec.require_train_rows()
    o = spec.options
    return CudaCurriculum(spec.total_epochs, positions, labels, spec.num_classes, o.cuda_threshold,
                          o.cuda_max_strength, o.cuda_probe_per_class, spec.seed)
