"""ImageNet-LT (Liu et al., CVPR 2019): an ImageNet root plus the split files
``ImageNet_LT_train.txt``, ``ImageNet_LT_val.txt`` and ``ImageNet_LT_test.txt``.

Each line of a split file is ``<path relative to the ImageNet root> <label>``, e.g.
``train/n01440764/n01440764_10026.JPEG 0``. A class's id is the WordNet id of its training
images' folder; its name is that id's ImageNet class name ("American Staffordshire Terrier",
see class_names.py). A malformed line is an error naming the file and line; an image listed
but missing on disk is skipped and recorded.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..registry import datasets
from .adapted import Adapted
from .class_names import imagenet_name
from .image_folder import DatasetError

SPLIT_FILES = {"train": "ImageNet_LT_train.txt", "val": "ImageNet_LT_val.txt", "test": "ImageNet_LT_test.txt"}


def read_split_file(path: Path) -> list[tuple[str, int]]:
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or int(parts[1]) < 0:
            raise DatasetError(f"{path}, line {number}: expected '<relative path> <label>', got {line!r}")
        rows.append((parts[0], int(parts[1])))
    return rows


def scan_imagenet_lt(root: str | Path, split_dir: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the dataset table and the table of skipped files."""
    root = Path(root)
    split_dir = Path(split_dir) if split_dir else root
    if not root.is_dir():
        raise DatasetError(f"ImageNet root {root} does not exist or is not a folder")
    rows, skipped = [], []
    for split, name in SPLIT_FILES.items():
        path = split_dir / name
        if not path.exists():
            if split == "train":
                raise DatasetError(f"ImageNet-LT split file {path} not found (data.split_dir names its folder)")
            continue
        for rel, label in read_split_file(path):
            file = root / rel
            if not file.is_file():
                skipped.append((str(file), f"listed in {name} but missing"))
                continue
            rows.append((rel, split, label, str(file)))
    frame = pd.DataFrame(rows, columns=["sample_id", "split", "label", "path"])
    if frame.empty or not (frame["split"] == "train").any():
        raise DatasetError(f"no ImageNet-LT training image found under {root}")
    train = frame[frame["split"] == "train"]
    wnids = dict(zip(train["label"], train["sample_id"].map(lambda p: Path(p).parent.name)))
    unnamed = sorted(set(frame["label"]) - set(wnids))
    if unnamed:
        raise DatasetError(f"labels {unnamed[:5]} appear in val/test but have no training image")
    frame.insert(3, "class_name", frame["label"].map(lambda y: imagenet_name(wnids[y])))
    frame["class_id"] = frame["label"].map(wnids)
    frame["label"] = frame["label"].astype("int32")
    return frame, pd.DataFrame(skipped, columns=["path", "reason"])


@datasets.register("imagenet-lt", root="the ImageNet folder (train/, val/ and the ImageNet_LT_*.txt split files)",
                   lt_buckets=True, settings=("split_dir",))
def adapt_imagenet_lt(cfg, run) -> Adapted:
    """ImageNet-LT: the ImageNet folder and the split files of Liu et al. (ImageNet_LT_train/val/test.txt)."""
    return Adapted(*scan_imagenet_lt(cfg.root, cfg.split_dir))
