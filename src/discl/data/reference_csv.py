"""Hard-sample lists in the reference code's CSV formats, matched to a run's training images.

- ImageNet-LT: ``filepath,image_name,label,classname``
- iWildCam:    ``label id,label name,filepath,img_name``

A CSV row is matched to a training image by its file path (exact after resolving against
``root``, else the dataset path ending with the CSV's path), else by file name (the image name,
the filepath's file name, or the image name as a file name without its extension) when that
name is unique. Its class is checked by label id and by name: the label must be the image's label,
and the name must be the image's class name or class id, compared case-insensitively with
underscores as spaces (the reference writes "American Staffordshire Terrier" and "Cheetah" where
discl says "cheetah"). Either may be blank, not both. A label and a name that disagree, and any
row that cannot be matched, is an error naming the file, the row and the value."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from .class_names import normalise_name

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


def _label(text: str, where: str) -> int | None:
    if not text:
        return None
    if not text.lstrip("-").isdigit():
        raise ReferenceCsvError(f"{where}: label {text!r} is not a label id (a whole number)")
    return int(text)


def match_to_dataset(csv_rows: pd.DataFrame, train_rows: pd.DataFrame, csv_path: Path, root: Path | None,
                     resolve=lambda p: Path(p), class_ids: dict[int, str] | None = None) -> pd.DataFrame:
    """The training rows the CSV names (in CSV order, duplicates dropped). ``class_ids`` (label ->
    class id, e.g. the WordNet id) lets a row name its class by id as well as by name."""
    train_rows = train_rows.reset_index(drop=True)
    labels = [int(y) for y in train_rows["label"]]
    name_of = dict(zip(labels, train_rows["class_name"]))
    names_of = {y: {normalise_name(n)} | ({normalise_name(class_ids[y])} if class_ids and y in class_ids else set())
                for y, n in name_of.items()}
    known_names = set().union(*names_of.values())
    full = [str(resolve(p).resolve()) for p in train_rows["path"]]
    by_full = {p: i for i, p in enumerate(full)}
    posix = [PurePosixPath(Path(p).as_posix()) for p in full]
    by_name: dict[str, list[int]] = {}
    by_stem: dict[str, list[int]] = {}
    for i, p in enumerate(posix):
        by_name.setdefault(p.name, []).append(i)
        by_stem.setdefault(p.stem, []).append(i)
    base = Path(root) if root else Path(csv_path).parent

    picked: list[int] = []
    for row in csv_rows.itertuples():
        # read_reference_csv reads every column as text
        filepath, image_name, class_name = str(row.filepath), str(row.image_name), str(row.class_name)
        where = f"{csv_path} line {row.line}"
        # 1. the class: by label id and/or name, which must agree
        label, name = _label(str(row.label), where), normalise_name(class_name)
        if label is None and not name:
            raise ReferenceCsvError(f"{where}: neither a label id nor a class name")
        if label is not None and label not in name_of:
            raise ReferenceCsvError(f"{where}: unknown label id {label} (no class of the dataset's training split has it)")
        if name and name not in known_names:
            raise ReferenceCsvError(f"{where}: unknown class name {class_name!r} (not a class of the dataset's training split)")
        if label is not None and name and name not in names_of[label]:
            raise ReferenceCsvError(f"{where}: label {label} is class {name_of[label]!r} in the dataset, but the CSV names it {class_name!r}")
        # 2. the image: by path, else by path tail, else by file name (the reference's iWildCam CSV
        # gives img_name without its extension, and a filepath of its own machine)
        index = by_full.get(str((base / filepath).resolve())) if filepath else None
        if index is None and filepath:
            tail = PurePosixPath(Path(filepath).as_posix()).parts
            # only paths with the same file name can end with the CSV's path (7.7k rows x 130k images)
            hits = [i for i in by_name.get(tail[-1], []) if posix[i].parts[-len(tail):] == tail] if tail else []
            index = hits[0] if len(hits) == 1 else None
        if index is None:
            file_name = PurePosixPath(Path(filepath).as_posix()).name
            hits = by_name.get(image_name) or by_name.get(file_name) or by_stem.get(image_name) or []
            if len(hits) > 1:
                raise ReferenceCsvError(f"{where}: image name {image_name!r} matches {len(hits)} training images; give a longer filepath")
            index = hits[0] if hits else None
        if index is None:
            raise ReferenceCsvError(f"{where}: no training image matches filepath {filepath!r} / image name {image_name!r}")
        # 3. the image's class is the row's class
        actual = labels[index]
        if (label is not None and actual != label) or (name and name not in names_of[actual]):
            said = class_name or f"label {label}"
            raise ReferenceCsvError(f"{where}: {filepath!r} is class {name_of[actual]!r} in the dataset but {said!r} in the CSV")
        picked.append(index)
    return train_rows.iloc[list(dict.fromkeys(picked))].reset_index(drop=True)
