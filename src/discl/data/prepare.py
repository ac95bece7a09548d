"""The prepare stage's work: the registered adapter data.name names builds the dataset table, then the
class table (long-tail buckets) and the skipped files are written beside it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..config import DataConfig
from ..registry import datasets
from ..rundir import RunDir
from ..swap import replace_folder
from ..tables import read_table, write_table
from .adapted import Adapted
from .buckets import class_table
from .class_names import apply_class_names
from .image_folder import DatasetError

if TYPE_CHECKING:
    import torch

def prepare_dataset(run: RunDir, cfg: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Build the dataset, classes and skipped tables of ``run`` with the adapter data.name names; return them."""
    entry = datasets.get(cfg.name)
    if entry.root and not cfg.root:
        raise DatasetError(f"data.root must name {entry.root} for the {cfg.name} dataset")
    adapted: Adapted = entry.target(cfg, run)
    dataset, skipped = adapted.dataset, adapted.skipped
    if "class_id" not in dataset.columns:  # the adapter's names are the classes' own ids
        dataset["class_id"] = dataset["class_name"]
    if cfg.class_names:
        dataset = apply_class_names(dataset, Path(cfg.class_names))
    many, few = (cfg.lt_many_above, cfg.lt_few_below) if entry.lt_buckets else (cfg.many_above, cfg.few_below)
    classes = class_table(dataset, many, few)
    if adapted.staged is not None and adapted.final is not None:
        replace_folder(adapted.staged, adapted.final)
    write_table(dataset, run.dataset, "dataset")
    write_table(classes, run.classes, "classes")
    write_table(skipped, run.skipped, "skipped")
    for folder in adapted.obsolete:  # no table refers to them any more
        shutil.rmtree(folder, ignore_errors=True)
    return dataset, classes, skipped


def load_dataset_tables(run: RunDir) -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_table(run.dataset, "dataset"), read_table(run.classes, "classes")


def foundation_rows(dataset: pd.DataFrame) -> pd.DataFrame:
    """The pool the in-process generator and CLIP learn from: ``foundation`` if the dataset has one, else ``train``."""
    pool = dataset[dataset["split"] == "foundation"]
    return pool if len(pool) else dataset[dataset["split"] == "train"]


def load_split(run: RunDir, rows: pd.DataFrame, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, size, size) uint8 and labels (N,) int64 of the given table rows."""
    import torch

    from .images import load_images

    images = load_images([run.resolve(p) for p in rows["path"]], size)
    return images, torch.from_numpy(rows["label"].to_numpy(dtype="int64", copy=True))
