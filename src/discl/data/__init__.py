"""Dataset adapters. Each turns its source into the run directory's dataset table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..config import DataConfig
from ..rundir import RunDir
from ..swap import replace_folder, staging_dir
from ..tables import empty_table, read_table, write_table
from .buckets import class_table
from .class_names import apply_class_names
from .digits import build_digits_lt
from .image_folder import DatasetError, scan_image_folder
from .images import load_images

DATASETS = ("digits-lt", "image-folder", "imagenet-lt", "iwildcam", "csv")


def prepare_dataset(run: RunDir, cfg: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Build the dataset, classes and skipped tables of ``run``; return them."""
    images = None
    if cfg.name == "digits-lt":
        # Built beside the images of an earlier prepare, which stay until the new ones are all written.
        images = staging_dir(run.images / "digits-lt")
        dataset = build_digits_lt(
            images,
            image_size=cfg.image_size,
            max_per_class=cfg.max_per_class,
            imbalance_ratio=cfg.imbalance_ratio,
            val_per_class=cfg.val_per_class,
            test_per_class=cfg.test_per_class,
            seed=cfg.split_seed,
        )
        # Paths where the images will be (the run directory stays movable: relative paths).
        dataset["path"] = [run.relative(run.images / "digits-lt" / Path(p).relative_to(images)) for p in dataset["path"]]
        skipped = empty_table("skipped")
    elif cfg.name == "image-folder":
        if not cfg.root:
            raise DatasetError("data.root must name the image folder (root/<class name>/<image>)")
        dataset, skipped = scan_image_folder(cfg.root, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    elif cfg.name in ("imagenet-lt", "iwildcam", "csv"):
        dataset, skipped = _scan_real(cfg)
    else:
        raise DatasetError(f"unknown dataset {cfg.name!r}; known: {list(DATASETS)}")
    if "class_id" not in dataset.columns:  # the adapter's names are the classes' own ids
        dataset["class_id"] = dataset["class_name"]
    if cfg.class_names:
        dataset = apply_class_names(dataset, Path(cfg.class_names))
    real = cfg.name in ("imagenet-lt", "iwildcam", "csv")
    classes = class_table(dataset, cfg.lt_many_above if real else cfg.many_above, cfg.lt_few_below if real else cfg.few_below)
    if images is not None:
        replace_folder(images, run.images / "digits-lt")
    write_table(dataset, run.dataset, "dataset")
    write_table(classes, run.classes, "classes")
    write_table(skipped, run.skipped, "skipped")
    return dataset, classes, skipped


def _scan_real(cfg: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not cfg.root:
        raise DatasetError(f"data.root must be set for the {cfg.name} dataset")
    if cfg.name == "imagenet-lt":
        from .imagenet_lt import scan_imagenet_lt

        return scan_imagenet_lt(cfg.root, cfg.split_dir)
    if cfg.name == "iwildcam":
        from .iwildcam import scan_iwildcam

        return scan_iwildcam(cfg.root)
    from .csv_table import scan_csv

    return scan_csv(cfg.root, cfg.csv_path_column, cfg.csv_label_column, cfg.csv_split_column,
                    cfg.val_fraction, cfg.test_fraction, cfg.split_seed)


def load_dataset_tables(run: RunDir) -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_table(run.dataset, "dataset"), read_table(run.classes, "classes")


def foundation_rows(dataset: pd.DataFrame) -> pd.DataFrame:
    """The pool the in-process generator and CLIP learn from: ``foundation`` if the dataset has one, else ``train``."""
    pool = dataset[dataset["split"] == "foundation"]
    return pool if len(pool) else dataset[dataset["split"] == "train"]


def load_split(run: RunDir, rows: pd.DataFrame, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, size, size) uint8 and labels (N,) int64 of the given table rows."""
    images = load_images([run.resolve(p) for p in rows["path"]], size)
    return images, torch.from_numpy(rows["label"].to_numpy(dtype="int64", copy=True))
