"""iWildCam 2020 as packaged by WILDS (v2.0), read through the ``wilds`` package (never downloaded).

``root`` is the folder that holds ``iwildcam_v2.0/``. WILDS's splits map to ours as:
train -> train, val (OOD) -> val, test (OOD) -> test, id_val -> id_val, id_test -> id_test.
Evaluation goes through WILDS's own ``eval`` (accuracy, macro recall, macro F1).

Class names are common English names ("cheetah"), as the reference's FLYP code names them; the
Latin name of WILDS's ``categories.csv`` ("acinonyx jubatus") is kept as the class id. The
English name is looked up by WILDS category id (discl/data/iwildcam_names.csv); without a
``categories.csv``, by WILDS v2.0's label ``y``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..registry import datasets
from .adapted import Adapted
from .class_names import iwildcam_english_names
from .image_folder import DatasetError

SPLIT_NAMES = {"train": "train", "val": "val", "test": "test", "id_val": "id_val", "id_test": "id_test"}


def load_wilds_iwildcam(root: str | Path | None):
    import wilds

    if not root:
        raise DatasetError("data.root must name the folder that holds iwildcam_v2.0")
    root = Path(root)
    if not (root / "iwildcam_v2.0").is_dir():
        raise DatasetError(f"no iwildcam_v2.0 folder under {root} (download it from https://wilds.stanford.edu; discl never downloads)")
    try:
        return wilds.get_dataset(dataset="iwildcam", root_dir=str(root), download=False)
    except FileNotFoundError as err:
        raise DatasetError(f"iWildCam under {root}: {err}") from None


def scan_iwildcam(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    ds = load_wilds_iwildcam(root)
    data_dir = Path(ds.data_dir)
    ids, names = class_names(data_dir / "categories.csv")
    split_of = {v: k for k, v in ds.split_dict.items()}
    rows, skipped = [], []
    for filename, y, split_id in zip(ds._input_array, ds.y_array.tolist(), np.asarray(ds.split_array).tolist()):
        file = data_dir / "train" / filename
        if not file.is_file():
            skipped.append((str(file), "listed in metadata.csv but missing"))
            continue
        y = int(y)
        rows.append((str(filename), SPLIT_NAMES[split_of[split_id]], y, names.get(y, f"class{y}"), str(file), ids.get(y, f"class{y}")))
    frame = pd.DataFrame(rows, columns=["sample_id", "split", "label", "class_name", "path", "class_id"])
    frame["label"] = frame["label"].astype("int32")
    return frame, pd.DataFrame(skipped, columns=["path", "reason"])


def class_names(categories: Path) -> tuple[dict[int, str], dict[int, str]]:
    """label -> class id (the Latin name) and label -> English name. A category the shipped list
    does not know keeps its Latin name."""
    known = iwildcam_english_names()
    if not categories.exists():
        return dict(zip(known["y"], known["name"])), dict(zip(known["y"], known["english"]))
    cat = pd.read_csv(categories, keep_default_na=False)
    if not {"y", "category_id", "name"} <= set(cat.columns):
        raise DatasetError(f"{categories}: expected columns y, category_id, name; got {list(cat.columns)}")
    english = dict(zip(known["category_id"], known["english"]))
    ids = dict(zip(cat["y"].astype(int), cat["name"].astype(str)))
    names = {int(y): english.get(int(c), str(n)) for y, c, n in zip(cat["y"], cat["category_id"], cat["name"])}
    return ids, names


def wilds_eval(root: str | Path | None, split: str, sample_ids: list[str], predictions: np.ndarray) -> dict:
    """WILDS's own metrics (acc_avg, recall-macro_all, F1-macro_all) for predictions on one split.
    ``sample_ids`` are the file names the dataset table holds; every image of the split must be predicted."""
    import torch

    ds = load_wilds_iwildcam(root)
    subset = ds.get_subset(split)
    files = np.asarray(ds._input_array)[subset.indices]
    pred_of = dict(zip(sample_ids, np.asarray(predictions).tolist()))
    missing = [f for f in files if f not in pred_of]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} images of the WILDS {split} split, e.g. {missing[0]}")
    y_pred = torch.tensor([pred_of[f] for f in files])
    results, _ = ds.eval(y_pred, subset.y_array, subset.metadata_array)
    return {k: float(v) for k, v in results.items()}


@datasets.register("iwildcam", root="the folder that holds iwildcam_v2.0", lt_buckets=True)
def adapt_iwildcam(cfg, run) -> Adapted:
    """WILDS iWildCam (camera-trap photos; the wilds package reads it)."""
    return Adapted(*scan_iwildcam(cfg.root))
