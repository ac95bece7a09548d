"""Small image rows on disk for the training-loop tests: PNG files whose class is visible (a bright
channel), a stage function over them, and a tiny linear task without BatchNorm (so that splitting
a batch across processes or micro-batches leaves the gradient unchanged)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from discl.config import AugmentConfig
from discl.data.rows import ImageRows
from discl.training.loop import StageRows, TrainData
from discl.training.tasks import ClassifierTask
from discl.training.transforms import classifier_transforms


def write_pngs(folder: Path, n: int, size: int = 16, classes: int = 3, seed: int = 0,
               write: bool = True) -> tuple[list[str], list[int]]:
    """``n`` images of ``classes`` classes; with ``write=False`` only their paths and labels (files already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    paths, labels = [], []
    for i in range(n):
        label = i % classes
        pixels = g.integers(0, 90, (size, size, 3), dtype=np.uint8)
        pixels[..., label] += 150
        path = folder / f"img {i:03d} é.png"  # spaces and non-ASCII on purpose
        if write:
            Image.fromarray(pixels).save(path)
        paths.append(str(path))
        labels.append(label)
    return paths, labels


def make_data(folder: Path, n_real: int = 24, n_synthetic: int = 6, n_val: int = 6, size: int = 16,
              write: bool = True) -> TrainData:
    """Rows [real | synthetic | val]; stages at a level < 100 add the synthetic rows."""
    paths, labels = write_pngs(folder, n_real + n_synthetic + n_val, size, write=write)
    rows = ImageRows(paths, labels)

    def stage_rows(stage) -> StageRows:
        extra = 0 if stage.level in (None, 100) else n_synthetic
        n = n_real + extra
        tail = np.arange(n) >= n_real - 6
        return StageRows(np.arange(n, dtype=np.int64), n_real, extra, tail)

    return TrainData(rows, stage_rows, np.arange(n_real + n_synthetic, len(rows), dtype=np.int64), 3)


class Linear(torch.nn.Module):
    def __init__(self, size: int = 16, classes: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = torch.nn.Linear(3 * size * size, classes)
        self.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "crop_pct": 1.0, "interpolation": "bilinear"}

    def forward(self, x):
        return self.fc(x.flatten(1))


def linear_task(size: int = 16, seed: int = 0, loss: str = "ce") -> ClassifierTask:
    model = Linear(size, seed=seed)
    transforms = classifier_transforms(model, AugmentConfig(mean=[0.5] * 3, std=[0.5] * 3), size)
    return ClassifierTask(model, transforms, loss, torch.tensor([10.0, 8.0, 6.0]))
