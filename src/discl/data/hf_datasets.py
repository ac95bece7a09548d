"""A Hugging Face image classification dataset (``datasets``), read as the run's dataset table.

``data.root`` names it: a hub id (with ``data.hf_config`` and ``data.hf_revision``), a local folder that
``datasets.load_dataset`` reads (an image folder, Parquet files, a dataset repository), or a folder written by
``save_to_disk``. Images come from ``data.image_column`` (an Image feature), labels and class names from
``data.label_column`` (a ClassLabel feature). Its splits become train / val / test (``data.hf_*_split``); a
missing val or test split is carved out of the training split by a stable hash of each row, as image-folder does.

discl's rows are image files (data/rows.py), decoded when a batch needs them. An image the dataset holds as a
file under a local ``data.root`` (an image folder read by ``datasets``) is used where it is. Every other image
(bytes inside Arrow or Parquet: save_to_disk folders and hub datasets) is written once, as the bytes the dataset
holds (no re-encoding), to ``RUN/data/hf/<digest>/<split>/<row>.<ext>``; the digest names the dataset's
content (its splits' fingerprints and the settings above), so a prepare killed half-way resumes where it stopped,
and a prepare of another dataset writes beside the images of the last one, which go only once its tables are
written. The dataset is read batch by batch: no split is ever decoded in memory. Each image is decoded once to
check it; one that cannot be decoded is skipped and recorded in skipped.parquet, like an image folder's.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from ..atomic import atomic_path
from ..registry import datasets as dataset_adapters
from .adapted import Adapted
from .image_folder import DatasetError, check_image, hash_splits
from .images import DECODE_ERRORS

INSTALL = "pip install discl[hf]"
VAL_NAMES = ("validation", "valid", "val")
TEST_NAMES = ("test",)
BATCH = 256  # rows read (and images checked) per step
#: PIL's format -> the extension of a written image (the bytes are the dataset's own).
EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "PPM": ".ppm"}


def require_datasets(what: str = "data.name=hf") -> Any:
    """The `datasets` package, or one line naming ``what`` needs it and how to install it."""
    try:
        import datasets
    except ImportError:
        raise DatasetError(f"{what} needs the `datasets` package, which is not installed: {INSTALL}") from None
    return datasets


def is_saved_to_disk(root: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return root.is_dir() and ((root / "dataset_dict.json").is_file() or (root / "state.json").is_file())


def load_source(cfg) -> Any:
    """The dataset data.root names, as a DatasetDict (a single saved Dataset is its ``train`` split)."""
    datasets = require_datasets()
    root = Path(str(cfg.root)).expanduser()
    if is_saved_to_disk(root):
        given = [f"data.{k}" for k in ("hf_config", "hf_revision") if getattr(cfg, k) is not None]
        if given:
            raise DatasetError(f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} to hub ids and dataset folders; {root} was written by save_to_disk "
                               "and is read as it is")
    try:
        if is_saved_to_disk(root):
            loaded = datasets.load_from_disk(str(root))
        else:
            loaded = datasets.load_dataset(str(cfg.root), name=cfg.hf_config, revision=cfg.hf_revision)
    except Exception as err:  # datasets raises many kinds (not found, offline, bad config): one line naming the source
        what = " ".join(str(err).split()) or type(err).__name__
        raise DatasetError(f"data.root {cfg.root!r}: datasets cannot load it ({type(err).__name__}: {what})") from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({cfg.hf_train_split: loaded})
    return loaded


def choose_splits(cfg, available: list[str]) -> dict[str, str | None]:
    """discl split -> the dataset's split (None: carved out of the training split)."""
    def pick(setting: str, value: str | None, defaults: tuple[str, ...]) -> str | None:
        if value is None:
            return next((name for name in defaults if name in available), None)
        if value not in available:
            raise DatasetError(f"data.{setting} {value!r} is not a split of {cfg.root} (its splits: {available})")
        return value

    chosen = {"train": pick("hf_train_split", cfg.hf_train_split, ()),
              "val": pick("hf_val_split", cfg.hf_val_split, VAL_NAMES),
              "test": pick("hf_test_split", cfg.hf_test_split, TEST_NAMES)}
    named = [s for s in chosen.values() if s is not None]
    if len(named) != len(set(named)):
        raise DatasetError(f"data.hf_*_split: one split of {cfg.root} is named for two of train/val/test ({chosen})")
    return chosen


def class_names_of(cfg, source: Any, splits: dict[str, str | None]) -> list[str]:
    """Check the image and label columns of every split used; return the ClassLabel's names."""
    datasets = require_datasets()
    names: list[str] | None = None
    for split in filter(None, splits.values()):
        features = source[split].features
        for setting, column, kind in (("image_column", cfg.image_column, datasets.Image),
                                      ("label_column", cfg.label_column, datasets.ClassLabel)):
            if column not in features:
                raise DatasetError(f"data.{setting} {column!r} is not a column of {cfg.root} (split {split!r}; "
                                   f"its columns: {list(features)})")
            if not isinstance(features[column], kind):
                hint = " (datasets' class_encode_column makes one from a column of names)" if kind is datasets.ClassLabel else ""
                raise DatasetError(f"data.{setting} {column!r} of {cfg.root} (split {split!r}) is {features[column]!r}, "
                                   f"not a {kind.__name__} feature{hint}")
        split_names = list(features[cfg.label_column].names)
        if names is not None and split_names != names:
            raise DatasetError(f"{cfg.root}: split {split!r} has other class names in {cfg.label_column!r} than the training split")
        names = split_names
    return names or []


def source_digest(cfg, source: Any, splits: dict[str, str | None]) -> str:
    """What names the images the cache folder holds: the dataset's content and the settings that pick them."""
    parts = {"root": str(cfg.root), "config": cfg.hf_config, "revision": cfg.hf_revision, "image": cfg.image_column,
             "fingerprints": {s: source[s]._fingerprint for s in filter(None, splits.values())}}
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _decode_check(data: bytes) -> tuple[str | None, str]:
    """(None, extension) for bytes that decode as an image, else (why not, "")."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            ext = EXTENSIONS.get(image.format or "", ".img")
            image.convert("RGB")  # decodes every pixel: a truncated file fails here
        return None, ext
    except DECODE_ERRORS as err:
        return f"cannot decode image: {type(err).__name__}: {err}", ""


def _batches(split: Any, image_column: str, label_column: str) -> Iterator[tuple[int, list, list]]:
    """(first row, images as {"bytes", "path"}, labels) per batch; images are not decoded."""
    datasets = require_datasets()
    plain = split.select_columns([image_column, label_column]).cast_column(image_column, datasets.Image(decode=False))
    start = 0
    for batch in plain.iter(batch_size=BATCH):
        yield start, batch[image_column], batch[label_column]
        start += len(batch[label_column])


def _under(path: str, root: Path | None) -> bool:
    return root is not None and os.path.isabs(path) and Path(path).resolve().is_relative_to(root)


class ImageCache:
    """The folder images are written to, one file per row, each written whole (temp file + rename)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._done: dict[str, dict[str, str]] = {}

    def existing(self, split: str, stem: str) -> str | None:
        """The file already written for ``stem`` (a resumed prepare), else None."""
        if split not in self._done:
            folder = self.folder / split
            names = os.listdir(folder) if folder.is_dir() else []
            self._done[split] = {Path(n).stem: n for n in names if not n.startswith(".")}
        name = self._done[split].get(stem)
        return str(self.folder / split / name) if name else None

    def write(self, split: str, stem: str, ext: str, data: bytes) -> str:
        path = self.folder / split / f"{stem}{ext}"
        with atomic_path(path, durable=False) as tmp:
            tmp.write_bytes(data)
        return str(path)


def _check_row(item: tuple[str, int, dict | None, int, int], cache: ImageCache, local_root: Path | None, names: list[str]
               ) -> tuple[str | None, str]:
    """(the image file, "") for a usable row, else (None, why not)."""
    split, index, image, label, width = item
    if label is None or label < 0 or label >= len(names):
        return None, f"no label ({label})"
    if image is None or (image.get("bytes") is None and not image.get("path")):
        return None, "no image"
    stem = f"{index:0{width}d}"
    if image.get("bytes") is None:
        path = image["path"]
        if _under(path, local_root):  # the user's own file: used where it is
            reason = check_image(Path(path)) if os.path.isfile(path) else "image file missing"
            return (None, reason) if reason else (str(Path(path).resolve()), "")
        if (done := cache.existing(split, stem)) is not None:
            return done, ""
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            return None, f"cannot read image file {path}: {err}"
    else:
        if (done := cache.existing(split, stem)) is not None:
            return done, ""
        data = image["bytes"]
    reason, ext = _decode_check(data)
    if reason:
        return None, reason
    return cache.write(split, stem, ext, data), ""


def read_split(source_split: Any, name: str, cfg, cache: ImageCache, local_root: Path | None, names: list[str],
               rows: list, skipped: list, workers: int) -> None:
    """Add the usable rows of one of the dataset's splits to ``rows`` (<split>/<row>, label, hf split, path)."""
    width = max(len(str(len(source_split) - 1)), 1)
    with ThreadPoolExecutor(workers) as pool:  # decoding (PIL releases the GIL) and writing, in row order
        for start, images, labels in _batches(source_split, cfg.image_column, cfg.label_column):
            items = [(name, start + i, image, label, width) for i, (image, label) in enumerate(zip(images, labels))]
            for (_, index, _, label, _), (path, reason) in zip(items, pool.map(lambda it: _check_row(it, cache, local_root, names), items)):
                row = f"{name}/{index}"
                if path is None:
                    skipped.append((f"{cfg.root}:{row}", reason))
                else:
                    rows.append((row, int(label), name, path))


def scan_hf_dataset(cfg, run) -> Adapted:
    source = load_source(cfg)
    splits = choose_splits(cfg, list(source.keys()))
    names = class_names_of(cfg, source, splits)
    # Checks done: from here on, work.
    digest = source_digest(cfg, source, splits)
    home = run.images / "hf"
    cache = ImageCache(home / digest)
    root = Path(str(cfg.root)).expanduser()
    local_root = root.resolve() if root.is_dir() else None
    rows: list[tuple[str, int, str, str]] = []
    skipped: list[tuple[str, str]] = []
    workers = min(8, os.cpu_count() or 1)
    for ours, theirs in splits.items():
        if theirs is not None:
            before = len(rows)
            read_split(source[theirs], theirs, cfg, cache, local_root, names, rows, skipped, workers)
            rows[before:] = [(s, y, ours, p) for s, y, _, p in rows[before:]]
    if not rows:
        raise DatasetError(f"{cfg.root}: no usable image in splits {[s for s in splits.values() if s]}")
    frame = pd.DataFrame(rows, columns=["row", "label", "split", "path"])
    # A split without one labelled row (hub test splits are often labelled -1) counts as missing.
    unlabelled = [s for s in ("val", "test") if splits[s] is not None and not (frame["split"] == s).any()]
    skipped += [(f"{cfg.root}:{splits[s]}", f"split has no labelled image: the {s} split is carved out of the training split")
                for s in unlabelled]
    missing = [s for s in ("val", "test") if splits[s] is None or s in unlabelled]
    if missing:  # carved out of the training split, as image-folder does
        train = frame["split"] == "train"
        frame.loc[train, "split"] = hash_splits(frame.loc[train, "row"], frame.loc[train, "label"],
                                                cfg.val_fraction if "val" in missing else 0.0,
                                                cfg.test_fraction if "test" in missing else 0.0, cfg.split_seed)
    # Labels are the ClassLabel's ids; classes with no usable image leave, and the others close up in order.
    present = sorted(frame["label"].unique())
    for label in sorted(set(range(len(names))) - set(present)):
        skipped.append((f"{cfg.root}:class {names[label]!r}", f"class has no usable image (label {label} of {cfg.label_column!r})"))
    frame["class_name"] = [names[y] for y in frame["label"]]
    frame["label"] = frame["label"].map({y: i for i, y in enumerate(present)}).astype("int32")
    frame["path"] = [run.relative(Path(p)) for p in frame["path"]]  # relative inside the run directory
    # The ids name the dataset's content too: the models a run caches are fingerprinted by their rows' ids, and
    # another dataset of the same split sizes must not pass for this one. (The split hash above uses the row alone.)
    frame["sample_id"] = digest[:8] + "/" + frame["row"]
    obsolete = [p for p in sorted(home.iterdir()) if p.is_dir() and p.name != digest] if home.is_dir() else []
    return Adapted(frame[["sample_id", "split", "label", "class_name", "path"]], pd.DataFrame(skipped, columns=["path", "reason"]),
                   obsolete=obsolete)


@dataset_adapters.register("hf", root="a Hugging Face dataset: hub id, local dataset folder, or a save_to_disk folder",
                           settings=("hf_config", "hf_revision", "image_column", "label_column", "hf_train_split",
                                     "hf_val_split", "hf_test_split", "val_fraction", "test_fraction", "split_seed"))
def adapt_hf(cfg, run) -> Adapted:
    """An image classification dataset read with Hugging Face ``datasets`` (hub, local folder or save_to_disk)."""
    return scan_hf_dataset(cfg, run)
