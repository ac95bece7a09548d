"""Stage `export`: the curriculum's images for another tool, as an image folder or a Hugging Face dataset.

What is exported: the synthetic images the filter kept (``include_dropped``: every one, with ``kept`` saying
which), and with ``with_real`` the real training images, each with its class and where it comes from (source,
level, seed, prompt, CLIP similarities, kept). Two formats:

- ``imagefolder``: ``OUT/train/<label>_<class>/<image>`` and ``OUT/train/metadata.jsonl``, which
  ``datasets.load_dataset("imagefolder", data_dir=OUT)`` reads (``label`` is the class index, ``class_name`` its
  name). Class folders start with the zero-padded label, so folders sort in label order.
- ``hf``: a ``datasets.DatasetDict`` (split ``train``) saved with ``save_to_disk``; ``label`` is a ClassLabel
  named by the classes table. ``push_to_hub`` hands the same dataset to ``DatasetDict.push_to_hub`` (the hub
  token is the one huggingface_hub finds itself: HF_TOKEN or a saved login).

Images are copied file by file and the HF dataset is written by datasets' own Arrow writer from a generator:
no image is held in memory beyond the one being copied.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ..atomic import atomic_path
from ..data.hf_datasets import require_datasets
from ..rundir import RunDir
from ..scoring.run_scorer import scores_match
from ..tables import read_table

FORMATS = ("imagefolder", "hf")
SPLIT = "train"
#: The metadata of every exported image, in this order (docs/datasets.md).
COLUMNS = ["file_name", "label", "class_name", "source", "id", "source_id", "level", "strength", "seed", "prompt",
           "text_sim", "image_sim", "kept"]


def _slug(text: str) -> str:
    """A file or folder name for ``text``: runs of characters other than letters, digits, ``.``, ``-`` become ``_``."""
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "_"


def export_rows(run: RunDir, with_real: bool = False, include_dropped: bool = False) -> pd.DataFrame:
    """One row per exported image: its file in the run (``path``) and its metadata (:data:`COLUMNS`)."""
    synthetic = read_table(run.synthetic, "synthetic")
    scores = read_table(run.scores, "scores")
    if not scores_match(run, synthetic):
        raise ValueError(f"{run.scores} scores other synthetic images than {run.synthetic.name} (generate ran again since): "
                         f"run `discl score {run.root}` first")
    verdict = scores[["synthetic_id", "text_sim", "image_sim", "kept"]]
    made = synthetic.merge(verdict, on="synthetic_id", how="inner")
    if not include_dropped:
        made = made[made["kept"]]
    parts = [pd.DataFrame({
        "path": made["path"], "label": made["label"], "class_name": made["class_name"], "source": "synthetic",
        "id": made["synthetic_id"], "source_id": made["source_id"], "level": made["image_guidance"],
        "strength": made["strength"], "seed": made["seed"], "prompt": made["prompt"],
        "text_sim": made["text_sim"], "image_sim": made["image_sim"], "kept": made["kept"].astype(bool)})]
    if with_real:
        dataset = read_table(run.dataset, "dataset")
        real = dataset[dataset["split"] == "train"]
        parts.append(pd.DataFrame({
            "path": real["path"], "label": real["label"], "class_name": real["class_name"], "source": "real",
            "id": real["sample_id"], "source_id": real["sample_id"], "level": -1, "strength": float("nan"), "seed": -1,
            "prompt": "", "text_sim": float("nan"), "image_sim": float("nan"), "kept": True}))
    rows = pd.concat(parts, ignore_index=True)  # synthetic first: a reader infers the columns' types from them
    rows = rows.astype({"label": "int32", "level": "int32", "seed": "int32", "strength": "float32",
                        "text_sim": "float32", "image_sim": "float32"})
    rows.insert(0, "file_name", _file_names(rows))
    return rows


def _file_names(rows: pd.DataFrame) -> list[str]:
    """``<label>_<class>/<id>.<ext>``, unique (a name two ids would share gets a short digest of its id)."""
    width = len(str(max(int(rows["label"].max()), 0))) if len(rows) else 1
    names = [f"{y:0{width}d}_{_slug(c)}/{_slug(i)}{os.path.splitext(p)[1].lower()}"
             for y, c, i, p in zip(rows["label"], rows["class_name"], rows["id"], rows["path"])]
    shared = pd.Series(names).duplicated(keep=False)
    return [f"{os.path.splitext(n)[0]}-{hashlib.sha1(i.encode()).hexdigest()[:8]}{os.path.splitext(n)[1]}" if dup else n
            for n, i, dup in zip(names, rows["id"], shared)]


def check_out(out: Path, fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r} is not one of {list(FORMATS)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} is not an empty folder; export writes into a new one")


def write_imagefolder(run: RunDir, rows: pd.DataFrame, out: Path, progress: bool = True) -> None:
    folder = out / SPLIT
    for path, name in tqdm(zip(run.resolve_all(rows["path"]), rows["file_name"]), total=len(rows), desc="export",
                           disable=not progress, leave=False):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    with atomic_path(folder / "metadata.jsonl") as tmp:  # last: a folder with metadata is a whole export
        rows[COLUMNS].to_json(tmp, orient="records", lines=True, force_ascii=False)


def hf_dataset(run: RunDir, rows: pd.DataFrame, class_names: list[str], cache_dir: Path) -> Any:
    """The rows as a ``DatasetDict`` (split train), written by datasets from a generator into ``cache_dir``."""
    datasets = require_datasets("export --format hf / --push-to-hub")
    features = datasets.Features({
        "image": datasets.Image(), "label": datasets.ClassLabel(names=class_names),
        **{c: datasets.Value("string") for c in ("class_name", "source", "id", "source_id", "prompt")},
        "level": datasets.Value("int32"), "strength": datasets.Value("float32"), "seed": datasets.Value("int32"),
        "text_sim": datasets.Value("float32"), "image_sim": datasets.Value("float32"), "kept": datasets.Value("bool")})
    paths = run.resolve_all(rows["path"])
    meta = rows[COLUMNS[1:]]

    def examples():
        for path, name, record in zip(paths, rows["file_name"], meta.to_dict("records")):
            record = {k: (None if isinstance(v, float) and v != v else v) for k, v in record.items()}  # NaN -> missing
            yield {"image": {"bytes": Path(path).read_bytes(), "path": name}, **record}

    # The fingerprint names the rows (not a hash of the generator, which would pickle them all).
    fingerprint = hashlib.sha1(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes()).hexdigest()
    train = datasets.Dataset.from_generator(examples, features=features, cache_dir=str(cache_dir), fingerprint=fingerprint)
    return datasets.DatasetDict({SPLIT: train})


def run_export(run: RunDir, out: Path | str, fmt: str = "imagefolder", with_real: bool = False, include_dropped: bool = False,
               push_to_hub: str | None = None, echo=print, progress: bool = True) -> Path:
    out = Path(out).resolve()
    check_out(out, fmt)
    if fmt == "hf" or push_to_hub:
        require_datasets("export --format hf" if fmt == "hf" else "export --push-to-hub")
    rows = export_rows(run, with_real, include_dropped)
    if rows.empty:
        raise ValueError(f"{run.root}: nothing to export (no synthetic image was kept{'' if with_real else '; --with-real adds the real training images'})")
    classes = read_table(run.classes, "classes").sort_values("label")
    if fmt == "imagefolder":
        write_imagefolder(run, rows, out, progress)
    if fmt == "hf" or push_to_hub:
        datasets = require_datasets("export")
        enabled = datasets.is_progress_bar_enabled()
        if not progress:
            datasets.disable_progress_bars()
        cache = out.parent / f".{out.name}.cache-{os.getpid()}"
        try:
            built = hf_dataset(run, rows, classes["class_name"].tolist(), cache)
            if fmt == "hf":
                built.save_to_disk(str(out))
            if push_to_hub:
                built.push_to_hub(push_to_hub)
                echo(f"export: pushed {len(rows)} images to the hub dataset {push_to_hub}")
        finally:
            shutil.rmtree(cache, ignore_errors=True)
            if enabled:
                datasets.enable_progress_bars()
    counts = rows["source"].value_counts()
    echo(f"export: {counts.get('synthetic', 0)} synthetic" + (f" and {counts.get('real', 0)} real" if with_real else "")
         + f" images of {rows['label'].nunique()} classes to {out} ({fmt})")
    return out
