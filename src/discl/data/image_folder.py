"""A user's own images laid out as ``root/<class name>/<image>``.

Two layouts are read:
- ``root/train/<class>/...`` (with optional ``val/`` and ``test/``): splits as given;
- ``root/<class>/...``: every class is split into train/val/test by a stable
  hash of the file's path, so adding files never reshuffles the others; a class
  of at least 2 images that the hash would leave without a training image keeps
  one (its image whose hash lies nearest the training range) for training.
Files that cannot be used (not an image, empty, undecodable) and class folders
with no usable image are skipped and recorded with the reason; nothing else is
silently changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from ..registry import datasets
from .adapted import Adapted
from .images import DECODE_ERRORS, read_image

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    pass


def check_image(path: Path) -> str | None:
    """Return why ``path`` is not a usable image, or None when it is."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"not an image file (extension {path.suffix or 'none'!r})"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        read_image(path, None, "native")
    except DECODE_ERRORS as err:
        return f"cannot decode image: {type(err).__name__}: {err}"
    return None


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _scan_classes(folder: Path, split: str, root: Path, rows: list, skipped: list) -> set[str]:
    """Add the usable images of ``folder/<class>/...`` to ``rows``; return the classes found."""
    found = set()
    for entry in sorted(filter(_visible, folder.iterdir())):
        if not entry.is_dir():
            skipped.append((str(entry), "not inside a class folder"))
            continue
        usable = 0
        for file in sorted(p for p in entry.rglob("*") if p.is_file() and _visible(p)):
            reason = check_image(file)
            if reason:
                skipped.append((str(file), reason))
                continue
            rows.append((file.relative_to(root).as_posix(), split, entry.name, str(file.resolve())))
            usable += 1
        if usable:
            found.add(entry.name)
        else:
            skipped.append((str(entry), f"class folder has no usable image ({split} split)"))
    return found


def _hash_fraction(text: str, seed: int) -> float:
    digest = hashlib.sha1(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def scan_image_folder(
    root: str | Path, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the dataset table and the table of skipped files for an image folder."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a folder")
    rows: list[tuple[str, str, str, str]] = []
    skipped: list[tuple[str, str]] = []
    if (root / "train").is_dir():
        classes = _scan_classes(root / "train", "train", root, rows, skipped)
        for split in SPLITS[1:]:
            if (root / split).is_dir():
                _scan_classes(root / split, split, root, rows, skipped)
        unknown = {r[2] for r in rows} - classes
        if unknown:
            raise DatasetError(
                f"{root}: classes {sorted(unknown)} appear in val/test but have no usable training image"
            )
    else:
        classes = _scan_classes(root, "train", root, rows, skipped)
    if not rows:
        raise DatasetError(f"no usable image found under {root} (expected root/<class name>/<image>)")

    names = sorted(classes)
    label_of = {name: i for i, name in enumerate(names)}
    frame = pd.DataFrame(rows, columns=["sample_id", "split", "class_name", "path"])
    if not (root / "train").is_dir():
        frame["split"] = hash_splits(frame["sample_id"], frame["class_name"], val_fraction, test_fraction, seed)
    frame.insert(2, "label", frame["class_name"].map(label_of).astype("int32"))
    skipped_frame = pd.DataFrame(skipped, columns=["path", "reason"])
    return frame, skipped_frame


def hash_split(u: float, val_fraction: float, test_fraction: float) -> str:
    return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"


def hash_splits(keys: pd.Series, classes: pd.Series, val_fraction: float, test_fraction: float, seed: int,
                fixed: pd.Series | None = None) -> list[str]:
    """Split rows by a stable hash of ``keys``, keeping every class of >= 2 images trainable: a class the
    hash leaves without a training image trains on its row whose hash lies nearest the training range
    (only that row moves, so every other assignment is as the hash says). ``fixed``: splits given in
    advance (a CSV's split column; "" where none), which stay as they are."""
    u = pd.Series([_hash_fraction(k, seed) for k in keys], index=keys.index)
    fixed = fixed if fixed is not None else pd.Series("", index=keys.index)
    split = fixed.where(fixed != "", [hash_split(x, val_fraction, test_fraction) for x in u])
    hashed = fixed == ""
    for _, rows in split.groupby(classes, sort=False):
        if len(rows) >= 2 and not (rows == "train").any() and hashed[rows.index].any():
            split[u[rows.index][hashed[rows.index]].idxmax()] = "train"
    return split.tolist()


@datasets.register("image-folder", root="the image folder (root/<class name>/<image>)",
                   settings=("val_fraction", "test_fraction", "split_seed"))
def adapt_image_folder(cfg, run) -> Adapted:
    """A folder of class folders (root/<class name>/<image>), optionally under train/, val/, test/."""
    return Adapted(*scan_image_folder(cfg.root, cfg.val_fraction, cfg.test_fraction, cfg.split_seed))
