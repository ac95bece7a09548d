"""Human class names: ImageNet WordNet ids and iWildCam species mapped to the names people (and the
reference code) write, a user's own mapping file (``data.class_names``), and the one rule by which
names from elsewhere (CSVs, prompt files, settings) are compared with them.

Every class keeps its machine id (``class_id``: the WordNet id, the WILDS Latin name, the folder
name, ...) beside its display name (``class_name``), so renaming loses nothing.
"""

from __future__ import annotations

import csv
import functools
import json
from collections import Counter
from importlib import resources
from pathlib import Path

import pandas as pd

from .image_folder import DatasetError


def normalise_name(name: str) -> str:
    """How names are compared: case-insensitive, underscores as spaces, runs of spaces as one."""
    return " ".join(str(name).replace("_", " ").split()).casefold()


# --- ImageNet ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def imagenet_1k_names() -> dict[str, str]:
    """WordNet id -> name for the 1000 ImageNet-1k classes. timm's synset list gives each class's
    index; open_clip's ``IMAGENET_CLASSNAMES`` (the CLIP authors' curated names, the list the DisCL
    reference uses, e.g. "American Staffordshire Terrier") gives the name at that index."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from timm.data import ImageNetInfo

    synsets = ImageNetInfo("imagenet-1k").label_names()
    if len(synsets) != len(IMAGENET_CLASSNAMES):
        raise RuntimeError(f"timm lists {len(synsets)} ImageNet-1k synsets but open_clip {len(IMAGENET_CLASSNAMES)} names")
    return dict(zip(synsets, IMAGENET_CLASSNAMES))


@functools.lru_cache(maxsize=1)
def _imagenet_info():
    from timm.data import ImageNetInfo

    return ImageNetInfo("imagenet-1k")  # its lemma list covers every ImageNet-21k synset


def imagenet_name(wnid: str) -> str:
    """The ImageNet-1k name of a WordNet id; outside ImageNet-1k, the first WordNet lemma (timm's
    ImageNet-21k list); the id itself when neither knows it."""
    known = imagenet_1k_names().get(wnid)
    if known is not None:
        return known
    try:
        lemmas = _imagenet_info().label_name_to_description(wnid)  # "a, b, c"
    except KeyError:
        return wnid
    return lemmas.split(",")[0].strip() or wnid


# --- iWildCam ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def iwildcam_english_names() -> pd.DataFrame:
    """WILDS iWildCam v2.0's 182 classes (``y``, ``category_id``, Latin ``name``) with the common
    English name the reference's FLYP code uses (``labels.csv``'s ``english`` column, lower-cased);
    shipped as package data in discl/data/iwildcam_names.csv."""
    with resources.files("discl.data").joinpath("iwildcam_names.csv").open(encoding="utf-8") as f:
        return pd.read_csv(f, dtype={"y": int, "category_id": int, "name": str, "english": str}, keep_default_na=False)


# --- data.class_names: a user's mapping file --------------------------------------------------------

def read_class_names(path: Path) -> list[tuple[str, str, str, str]]:
    """Entries (key kind, key, display name, where) of a mapping file. Key kinds: "label" (a label
    id), "class_id" (the dataset's own id of the class), "any" (a JSON key: either). Formats:
    CSV with a ``name`` column and a ``label`` or ``class_id`` column; a JSON object {key: name};
    a JSON list of names, one per label id."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"data.class_names: file {path} not found")
    if path.suffix.lower() == ".json":
        return _read_json(path)
    return _read_csv(path)


def _checked(path: Path, where: str, key: str, name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"{path} {where}: the name of {key!r} must be a non-empty string, got {name!r}")
    return " ".join(name.split())


def _read_json(path: Path) -> list[tuple[str, str, str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from None
    if isinstance(data, list):
        return [("label", str(i), _checked(path, f"item {i}", str(i), n), f"item {i}") for i, n in enumerate(data)]
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object {{class: name}} or a list of names, got {type(data).__name__}")
    return [("any", str(k), _checked(path, f"key {k!r}", k, n), f"key {k!r}") for k, n in data.items()]


def _read_csv(path: Path) -> list[tuple[str, str, str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header = [c.strip() for c in rows[0]] if rows else []
    keys = [c for c in ("label", "class_id") if c in header]
    if "name" not in header or len(keys) != 1:
        raise DatasetError(f"{path}: expected a header with a 'name' column and one of 'label' or 'class_id', got {header}")
    key_col, name_col = header.index(keys[0]), header.index("name")
    out: list[tuple[str, str, str, str]] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DatasetError(f"{path} line {line}: {len(row)} fields, the header has {len(header)}")
        key = row[key_col].strip()
        if keys[0] == "label" and not key.isdigit():
            raise DatasetError(f"{path} line {line}: label {key!r} is not a label id (a whole number >= 0)")
        if key in seen:
            raise DatasetError(f"{path} line {line}: {keys[0]} {key!r} is listed twice (first on line {seen[key]})")
        seen[key] = line
        out.append((keys[0], key, _checked(path, f"line {line}", key, row[name_col]), f"line {line}"))
    return out


def rename_classes(classes: pd.DataFrame, entries: list[tuple[str, str, str, str]], path: Path) -> dict[int, str]:
    """label -> new name for the classes (columns label, class_id, class_name) the entries name.
    A key may be a label id or a class's id or current name; one that names no class, or several,
    is an error that lists them all."""
    by_label = {str(int(y)): int(y) for y in classes["label"]}
    by_text: dict[str, set[int]] = {}
    for y, cid, name in zip(classes["label"], classes["class_id"], classes["class_name"]):
        for text in {str(cid), str(name)}:
            by_text.setdefault(text, set()).add(int(y))
    renamed: dict[int, str] = {}
    unknown, ambiguous = [], []
    for kind, key, name, where in entries:
        hits = set()
        if kind in ("label", "any") and key in by_label:
            hits.add(by_label[key])
        if kind in ("class_id", "any"):
            hits |= by_text.get(key, set())
        if not hits:
            unknown.append(f"{key!r} ({where})")
        elif len(hits) > 1:
            ambiguous.append(f"{key!r} ({where}: labels {sorted(hits)})")
        else:
            renamed[hits.pop()] = name
    if ambiguous:
        raise DatasetError(f"{path}: {len(ambiguous)} keys name several classes; use label ids: {', '.join(ambiguous[:10])}")
    if unknown:
        example = classes.iloc[0]
        raise DatasetError(
            f"{path}: {len(unknown)} keys name no class of the dataset: {', '.join(unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''} (keys are label ids, class ids or class names, "
            f"e.g. {int(example.label)} or {example.class_id!r})"
        )
    return renamed


def apply_class_names(dataset: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``dataset`` (with label, class_id, class_name) with the names of the mapping file ``path``."""
    classes = dataset[["label", "class_id", "class_name"]].drop_duplicates("label")
    renamed = rename_classes(classes, read_class_names(path), path)
    out = dataset.copy()
    out["class_name"] = [renamed.get(int(y), n) for y, n in zip(out["label"], out["class_name"])]
    return out


def shared_names(classes: pd.DataFrame) -> dict[str, list[int]]:
    """Display names that several classes share (the reference's lists have a few, e.g. ImageNet's
    two "missile" classes), with their labels."""
    counts = Counter(normalise_name(n) for n in classes["class_name"])
    out: dict[str, list[int]] = {}
    first: dict[str, str] = {}
    for y, name in zip(classes["label"], classes["class_name"]):
        key = normalise_name(name)
        if counts[key] > 1:
            out.setdefault(first.setdefault(key, str(name)), []).append(int(y))
    return out
