"""Fake datasets in the real layouts, written into a temp dir, small enough for seconds on a CPU:

- an ImageNet root with WordNet-id folders (real ids of a few classes) and the ImageNet-LT split
  files ImageNet_LT_{train,val,test}.txt, with a long-tailed training split;
- a WILDS ``iwildcam_v2.0`` folder that ``wilds.get_dataset("iwildcam", download=False)`` accepts
  (RELEASE_v2.0.txt, metadata.csv, categories.csv, train/ images), with its ``empty`` class.

Images are JPEGs at a tenth (ImageNet) or a thirtieth (iWildCam) of the usual photo sizes, odd
sizes included (500x375 -> 50x37), coloured by class so a model can learn something.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

# (WordNet id, ImageNet class name, training images): a long tail. The two "missile" classes are
# ImageNet's own: the reference's class list (open_clip's) names both "missile".
IMAGENET_CLASSES = [
    ("n02093428", "American Staffordshire Terrier", 24),
    ("n01440764", "tench", 12),
    ("n02130308", "cheetah", 6),
    ("n03773504", "missile", 3),
    ("n04008634", "missile", 2),
    ("n01443537", "goldfish", 1),
]
# ImageNet photos are mostly 500x375, 375x500 or 500x333: a tenth of that.
IMAGENET_SIZES = [(50, 37), (37, 50), (50, 33)]

# (WILDS category id, Latin name, English name, training images); y = the position in this list.
IWILDCAM_CLASSES = [
    (0, "empty", "empty", 10),
    (122, "acinonyx jubatus", "cheetah", 8),
    (2, "tayassu pecari", "white-lipped peccary", 4),
    (111, "equus quagga", "plains zebra", 2),
]
# camera-trap frames are 1920x1080 or 2048x1536: a thirtieth-ish of that.
IWILDCAM_SIZES = [(64, 36), (64, 48)]


def _jpeg(path: Path, size: tuple[int, int], label: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, h = size
    colour = np.array([(label * 67) % 256, (label * 131 + 60) % 256, (label * 29 + 120) % 256], dtype=np.float32)
    pixels = np.clip(colour + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


@dataclass
class FakeImageNet:
    root: Path  # the ImageNet folder; the split files lie in it
    classes: list  # IMAGENET_CLASSES; label = position

    def train_file(self, label: int, i: int = 0) -> str:
        wnid = self.classes[label][0]
        return f"train/{wnid}/{wnid}_{i}.JPEG"


def write_fake_imagenet_lt(root: Path, val_per_class: int = 2, test_per_class: int = 3, classes=None) -> FakeImageNet:
    """``root``/train/<wnid>/<wnid>_<i>.JPEG, ``root``/val/<wnid>/ILSVRC2012_val_<n>.JPEG, and the
    split files (ImageNet-LT's val split is drawn from ImageNet's train folder, its test split from val).
    ``classes``: (WordNet id, name, training images) tuples like IMAGENET_CLASSES (the default)."""
    root = Path(root)
    classes = list(classes or IMAGENET_CLASSES)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    n = 0
    for label, (wnid, _, count) in enumerate(classes):
        for i in range(count + val_per_class):
            rel = f"train/{wnid}/{wnid}_{i}.JPEG"
            _jpeg(root / rel, IMAGENET_SIZES[i % len(IMAGENET_SIZES)], label, seed=1000 * label + i)
            lines["train" if i < count else "val"].append(f"{rel} {label}")
        for _ in range(test_per_class):
            n += 1
            rel = f"val/{wnid}/ILSVRC2012_val_{n:08d}.JPEG"
            _jpeg(root / rel, IMAGENET_SIZES[n % len(IMAGENET_SIZES)], label, seed=10**6 + n)
            lines["test"].append(f"{rel} {label}")
    for split, rows in lines.items():
        (root / f"ImageNet_LT_{split}.txt").write_text("\n".join(rows) + "\n")
    return FakeImageNet(root, classes)


@dataclass
class FakeIWildCam:
    root: Path  # the folder holding iwildcam_v2.0/ (data.root)
    metadata: pd.DataFrame

    def train_files(self, y: int) -> list[str]:
        rows = self.metadata[(self.metadata["split"] == "train") & (self.metadata["y"] == y)]
        return rows["filename"].tolist()


def write_fake_iwildcam(root: Path, eval_per_class: int = 1) -> FakeIWildCam:
    """The files WILDS's IWildCamDataset reads: RELEASE_v2.0.txt (so nothing is downloaded),
    metadata.csv (split, y, filename, location_remapped, sequence_remapped, datetime; every y from 0
    to the largest present, locations and sequences numbered without gaps), categories.csv
    (y, category_id, name) and the images under train/. Splits: train, val and test (OOD),
    id_val and id_test (ID)."""
    data = Path(root) / "iwildcam_v2.0"
    rows = []
    for y, (_, _, _, count) in enumerate(IWILDCAM_CLASSES):
        splits = ["train"] * count + [s for s in ("val", "test", "id_val", "id_test") for _ in range(eval_per_class)]
        for split in splits:
            i = len(rows)
            # the real file names are UUIDs
            filename = f"{i:08x}-21bc-11ea-a13a-137349068a90.jpg"
            _jpeg(data / "train" / filename, IWILDCAM_SIZES[i % len(IWILDCAM_SIZES)], y, seed=i)
            # ID splits share the training locations (0-2); OOD splits have their own (3, 4)
            location = {"val": 3, "test": 4}.get(split, i % 3)
            rows.append({"split": split, "y": y, "filename": filename, "location_remapped": location,
                         "sequence_remapped": i, "datetime": f"2013-06-{1 + i % 28:02d} 10:{i % 60:02d}:00.000"})
    metadata = pd.DataFrame(rows)
    metadata.to_csv(data / "metadata.csv", index=False)
    pd.DataFrame({"y": range(len(IWILDCAM_CLASSES)), "category_id": [c[0] for c in IWILDCAM_CLASSES],
                  "name": [c[1] for c in IWILDCAM_CLASSES]}).to_csv(data / "categories.csv", index=False)
    (data / "RELEASE_v2.0.txt").write_text("")
    return FakeIWildCam(Path(root), metadata)
