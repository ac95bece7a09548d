"""A CSV file listing images: one row per image with its path and label (and optionally split and
class name). Labels may be integers (with an optional class_name column) or class names.
Relative paths are read from the CSV's folder; rows without a split are split like an image folder
(a stable hash of the path); listed files that are missing are skipped and recorded."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..registry import datasets
from .adapted import Adapted
from .image_folder import DatasetError, hash_splits

SPLITS = {"train", "val", "test"}


def scan_csv(path: str | Path, path_column: str = "path", label_column: str = "label", split_column: str = "split",
             val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CSV file {path} does not exist")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in (path_column, label_column):
        if column not in table.columns:
            raise DatasetError(f"{path}: no column {column!r} (columns: {list(table.columns)})")
    rows, skipped = [], []
    # Records, not itertuples: a namedtuple renames columns that are not identifiers ("file path", "_label").
    for number, rec in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        rel, label = rec[path_column].strip(), rec[label_column].strip()
        if not rel or not label:
            raise DatasetError(f"{path}, line {number}: empty {path_column!r} or {label_column!r}")
        file = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        if not file.is_file():
            skipped.append((str(file), f"listed in {path.name} line {number} but missing"))
            continue
        split = rec.get(split_column, "").strip() if split_column in table.columns else ""
        if split and split not in SPLITS:
            raise DatasetError(f"{path}, line {number}: split {split!r} is not one of {sorted(SPLITS)}")
        rows.append((rel, split, label, rec.get("class_name", "").strip(), str(file.resolve())))
    frame = pd.DataFrame(rows, columns=["sample_id", "split", "raw_label", "class_name", "path"])
    if frame.empty:
        raise DatasetError(f"{path}: no usable row")
    # Rows without a split: split like an image folder (every class of >= 2 images keeps a training image).
    frame["split"] = hash_splits(frame["sample_id"], frame["raw_label"], val_fraction, test_fraction, seed, fixed=frame["split"])
    if frame["raw_label"].str.fullmatch(r"\d+").all():
        frame["label"] = frame["raw_label"].astype("int32")
        names = frame[frame["class_name"] != ""].drop_duplicates("label").set_index("label")["class_name"]
        frame["class_name"] = frame["label"].map(lambda y: names.get(y, f"class{y}"))
    else:
        classes = sorted(frame["raw_label"].unique())
        frame["label"] = frame["raw_label"].map({c: i for i, c in enumerate(classes)}).astype("int32")
        frame["class_name"] = frame["raw_label"]
    return frame[["sample_id", "split", "label", "class_name", "path"]], pd.DataFrame(skipped, columns=["path", "reason"])


@datasets.register("csv", root="the CSV file", lt_buckets=True,
                   settings=("csv_path_column", "csv_label_column", "csv_split_column", "val_fraction", "test_fraction", "split_seed"))
def adapt_csv(cfg, run) -> Adapted:
    """A CSV file listing images (path, label, optional split and class name)."""
    return Adapted(*scan_csv(cfg.root, cfg.csv_path_column, cfg.csv_label_column, cfg.csv_split_column,
                             cfg.val_fraction, cfg.test_fraction, cfg.split_seed))
