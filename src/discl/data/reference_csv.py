"""Hard-sample lists in the reference code's CSV formats, matched to a run's training images.

- ImageNet-LT: ``filepath,image_name,label,classname``
- iWildCam:    ``label id,label name,filepath,img_name``

A CSV row is matched to a training image by its file path (exact after resolving against
``root``, else the dataset path ending with the CSV's path), else by file name when that name
is unique. Its class name must be the one the dataset gives that image. Any row that cannot be
matched is an error naming the file, the row and the value."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

FORMATS = {
    "imagenet-lt": {"filepath": "filepath", "image_name": "image_name", "label": "label", "class_name": "classname"},
    "iwildcam": {"filepath": "filepath", "image_name": "img_name", "label": "label id", "class_name": "label name"},
}


class ReferenceCsvError(ValueError):
    pass


def read_reference_csv(path: Path) -> tuple[pd.DataFrame, str]:
    """Rows with columns filepath, image_name, label, class_name, line (the CSV line number); and the format name."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"hard-sample CSV {path} not found")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    columns = [c.strip() for c in frame.columns]
    frame.columns = columns
    for name, spec in FORMATS.items():
        if set(spec.values()) <= set(columns):
            out = pd.DataFrame({ours: frame[theirs].str.strip() for ours, theirs in spec.items()})
            out["line"] = range(2, len(out) + 2)
            if out.empty:
                raise ReferenceCsvError(f"{path}: the CSV lists no image (empty hard set)")
            return out, name
    wanted = " or ".join(",".join(spec.values()) for spec in FORMATS.values())
    raise ReferenceCsvError(f"{path}: columns {columns} match no known format; expected {wanted}")


def match_to_dataset(csv_rows: pd.DataFrame, train_rows: pd.DataFrame, csv_path: Path, root: Path | None,
                     resolve=lambda p: Path(p)) -> pd.DataFrame:
    """The training rows the CSV names (in CSV order, duplicates dropped)."""
    train_rows = train_rows.reset_index(drop=True)
    known_classes = set(train_rows["class_name"])
    full = [str(resolve(p).resolve()) for p in train_rows["path"]]
    by_full = {p: i for i, p in enumerate(full)}
    posix = [PurePosixPath(Path(p).as_posix()) for p in full]
    by_name: dict[str, list[int]] = {}
    for i, p in enumerate(posix):
        by_name.setdefault(p.name, []).append(i)
    base = Path(root) if root else Path(csv_path).parent

    picked: list[int] = []
    for row in csv_rows.itertuples():
        where = f"{csv_path} line {row.line}"
        if row.class_name not in known_classes:
            raise ReferenceCsvError(f"{where}: unknown class name {row.class_name!r} (not a class of the dataset's training split)")
        index = by_full.get(str((base / row.filepath).resolve())) if row.filepath else None
        if index is None and row.filepath:
            tail = PurePosixPath(Path(row.filepath).as_posix()).parts
            hits = [i for i, p in enumerate(posix) if p.parts[-len(tail):] == tail]
            index = hits[0] if len(hits) == 1 else None
        if index is None:
            hits = by_name.get(row.image_name or PurePosixPath(row.filepath).name, [])
            if len(hits) > 1:
                raise ReferenceCsvError(f"{where}: image name {row.image_name!r} matches {len(hits)} training images; give a longer filepath")
            index = hits[0] if hits else None
        if index is None:
            raise ReferenceCsvError(f"{where}: no training image matches filepath {row.filepath!r} / image name {row.image_name!r}")
        actual = train_rows.at[index, "class_name"]
        if actual != row.class_name:
            raise ReferenceCsvError(f"{where}: {row.filepath!r} is class {actual!r} in the dataset but {row.class_name!r} in the CSV")
        picked.append(index)
    return train_rows.iloc[list(dict.fromkeys(picked))].reset_index(drop=True)
