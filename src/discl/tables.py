"""Parquet tables of a run directory: their schemas, and atomic reads and writes.

Each table has one schema here; writers go through :func:`write_table`, which
checks the columns and replaces the file atomically (temp file + rename), so a
crash never leaves half a table. docs/schemas.md describes every column.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path

SCHEMAS: dict[str, pa.Schema] = {
    # One row per image of the dataset, whatever its split.
    "dataset": pa.schema(
        [
            ("sample_id", pa.string()),
            ("split", pa.string()),  # foundation | train | val | test
            ("label", pa.int32()),
            ("class_name", pa.string()),
            ("path", pa.string()),  # relative to the run directory, or absolute
        ]
    ),
    # One row per class, with its training count and long-tail bucket.
    "classes": pa.schema(
        [
            ("label", pa.int32()),
            ("class_name", pa.string()),  # the name captions, prompts and reports use ("American Staffordshire Terrier")
            ("class_id", pa.string()),  # the dataset's own id of the class (WordNet id, WILDS Latin name, folder name)
            ("train_count", pa.int32()),
            ("bucket", pa.string()),  # many | medium | few
        ]
    ),
    # Files an adapter could not use, and why.
    "skipped": pa.schema([("path", pa.string()), ("reason", pa.string())]),
    # One row per hard training sample.
    "hard": pa.schema(
        [
            ("sample_id", pa.string()),
            ("label", pa.int32()),
            ("class_name", pa.string()),
            ("path", pa.string()),
            ("bucket", pa.string()),
            ("p_true", pa.float32()),  # base model's probability of the true class
            ("pred_label", pa.int32()),  # base model's top-1 prediction
            ("reason", pa.string()),  # the rules that fired, joined by "+"
        ]
    ),
    # One row per synthetic image.
    "synthetic": pa.schema(
        [
            ("synthetic_id", pa.string()),
            ("source_id", pa.string()),  # sample_id of the real hard sample
            ("label", pa.int32()),
            ("class_name", pa.string()),
            ("prompt", pa.string()),
            ("strength", pa.float32()),  # img2img noise strength s
            ("image_guidance", pa.int32()),  # lambda as a percent: 100 - round(100 * s)
            ("text_guidance", pa.float32()),  # classifier-free guidance scale
            ("seed", pa.int32()),  # the seed of the spectrum grid
            ("noise_seed", pa.int64()),  # seed of this image's own torch.Generator
            ("generator", pa.string()),  # generator backend and model
            ("path", pa.string()),  # relative to the run directory
            ("attempts", pa.int32()),  # draws made (1 unless generate.regenerate is on)
            ("gen_text_sim", pa.float32()),  # text similarity of the kept draw (NaN unless regenerate is on)
            # Digest of everything that decides the image (generation settings, planned prompt and noise
            # seed); a rerun remakes images whose fingerprint differs from the plan's. "" = written before
            # discl recorded it.
            ("fingerprint", pa.string()),
        ]
    ),
    # One row per synthetic image: CLIP similarities and the filter's verdict.
    "scores": pa.schema(
        [
            ("synthetic_id", pa.string()),
            ("source_id", pa.string()),
            ("label", pa.int32()),
            ("image_guidance", pa.int32()),
            ("text_sim", pa.float32()),  # cosine(image, caption of its class)
            ("image_sim", pa.float32()),  # cosine(image, its real source image)
            ("base_p_true", pa.float32()),  # base model's p(true class) on the image; NaN when not computed
            ("base_pred", pa.int32()),  # base model's top-1 class; -1 when not computed
            ("base_p_pred", pa.float32()),  # base model's p(top-1 class); NaN when not computed
            ("kept", pa.bool_()),
            ("drop_reason", pa.string()),  # "" when kept; else the filters that dropped it, joined by "+"
        ]
    ),
    # One row per (class, image-guidance level): what the score filter did there.
    "score_summary": pa.schema(
        [
            ("label", pa.int32()),
            ("class_name", pa.string()),
            ("image_guidance", pa.int32()),
            ("strength", pa.float32()),
            ("generated", pa.int32()),
            ("kept", pa.int32()),
            ("dropped_text", pa.int32()),  # an image dropped by several rules counts under each
            ("dropped_image", pa.int32()),
            ("dropped_confident_wrong", pa.int32()),
            ("dropped_too_easy", pa.int32()),
            ("dropped_cap", pa.int32()),
            ("mean_text_sim", pa.float32()),
            ("mean_image_sim", pa.float32()),
            ("mean_text_sim_kept", pa.float32()),  # NaN when none kept
            ("mean_image_sim_kept", pa.float32()),
        ]
    ),
    # One row per training epoch of one method.
    "train_log": pa.schema(
        [
            ("method", pa.string()),
            ("epoch", pa.int32()),
            ("stage", pa.int32()),
            ("level", pa.int32()),  # image guidance of the synthetic data used; -1 = real only
            ("n_real", pa.int32()),
            ("n_synthetic", pa.int32()),
            ("n_seen", pa.int32()),  # images trained on this epoch (tail sampling repeats or leaves out some)
            ("n_skipped", pa.int32()),  # images of the epoch that could not be read, left out
            ("lr", pa.float32()),
            ("train_loss", pa.float32()),
            ("train_acc", pa.float32()),
            ("val_acc", pa.float32()),  # NaN on epochs without a validation pass (train.eval_every)
            ("select_acc", pa.float32()),  # accuracy on the train.select rows; NaN when train.select = final
            ("seconds", pa.float32()),
        ]
    ),
    # One row per (stage end, level[, class]) of a curriculum's evaluation; curricula that do not
    # evaluate get one row per stage with level -1. The stage -1 row set is the evaluation before training.
    "curriculum_log": pa.schema(
        [
            ("method", pa.string()),
            ("stage", pa.int32()),
            ("epoch", pa.int32()),  # epochs trained when the evaluation ran
            ("used", pa.string()),  # the stage's data: "real", "50", "10+30+50", "per-class:...", "cuda:..."
            ("class_label", pa.int32()),  # -1 = all classes
            ("level", pa.int32()),  # the level scored (CUDA: the class's augmentation strength)
            ("progress", pa.float64()),  # mean p_true gain without outliers (CUDA: accuracy on augmented images)
            ("smoothed", pa.float64()),  # the score the choice used (after smoothing)
            ("n_images", pa.int32()),
            ("n_outliers", pa.int32()),  # dropped beyond 1.5 IQR
            ("chosen", pa.bool_()),  # the level chosen for the next stage
        ]
    ),
    # iWildCam: WILDS's own metrics per (method, split), split = test (OOD) or id_test (ID).
    "wilds_metrics": pa.schema(
        [("method", pa.string()), ("split", pa.string()), ("metric", pa.string()), ("value", pa.float64())]
    ),
    # `discl compare`: one row per (loss, method, seed, bucket).
    "compare": pa.schema(
        [
            ("loss", pa.string()),
            ("method", pa.string()),
            ("seed", pa.int32()),
            ("bucket", pa.string()),
            ("accuracy", pa.float32()),  # test top-1, percent
            ("n_images", pa.int32()),
            ("val_accuracy", pa.float32()),  # final-epoch validation top-1 (overall), percent
            ("train_seconds", pa.float32()),
            ("ood_macro_f1", pa.float32()),  # iWildCam: WILDS macro F1 on test (OOD), percent; NaN elsewhere
            ("id_macro_f1", pa.float32()),  # iWildCam: WILDS macro F1 on id_test (ID), percent; NaN elsewhere
        ]
    ),
    # One row per (method, bucket): top-1 accuracy on the test split.
    "metrics": pa.schema(
        [
            ("method", pa.string()),
            ("bucket", pa.string()),  # many | medium | few | overall
            ("accuracy", pa.float32()),  # percent
            ("n_images", pa.int32()),
        ]
    ),
    # One row per (method, test image): the model's prediction.
    "predictions": pa.schema(
        [
            ("method", pa.string()),
            ("sample_id", pa.string()),
            ("label", pa.int32()),
            ("pred_label", pa.int32()),
            ("p_true", pa.float32()),  # the model's probability of the true class
        ]
    ),
}


META_KEY = b"discl"

#: Columns added after a table's first release, and the value rows written before them get.
LATER_COLUMNS: dict[str, dict[str, str | float]] = {"synthetic": {"fingerprint": ""}, "train_log": {"select_acc": float("nan")}}


#: Value ranges checked on read (NaN stands for "not computed" and passes): a table that breaks one is
#: damaged, or was not written by discl, and nothing downstream should quietly use it.
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "hard": {"p_true": (0, 1)},
    "synthetic": {"strength": (0, 1), "gen_text_sim": (-1, 1)},
    "scores": {"text_sim": (-1, 1), "image_sim": (-1, 1), "base_p_true": (0, 1), "base_p_pred": (0, 1)},
    "score_summary": {"strength": (0, 1), "mean_text_sim": (-1, 1), "mean_image_sim": (-1, 1),
                      "mean_text_sim_kept": (-1, 1), "mean_image_sim_kept": (-1, 1)},
    "metrics": {"accuracy": (0, 100)},
    "predictions": {"p_true": (0, 1)},
}
SLACK = 1e-3  # float32 rounding: a cosine of unit vectors may come out as 1.0000001


class TableError(ValueError):
    pass


def check_ranges(frame: pd.DataFrame, path: Path, kind: str) -> None:
    """Raise TableError naming the file, column, row and value of the first value out of its range."""
    for column, (lo, hi) in RANGES.get(kind, {}).items():
        if column not in frame.columns or not len(frame):
            continue
        values = frame[column].to_numpy(dtype="float64", na_value=float("nan"))
        bad = (values < lo - SLACK) | (values > hi + SLACK)
        if bad.any():
            row = int(bad.argmax())
            ident = frame.columns[0]
            raise TableError(f"{path}: {column} = {values[row]:.6g} in row {row} ({ident} {frame[ident].iloc[row]!r}) is outside "
                             f"[{lo}, {hi}]; the file is damaged or was not written by discl: rerun the stage that writes it")


def with_later_columns(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """``frame`` with the columns added to ``kind`` since it was written filled with their old-row value."""
    missing = {c: v for c, v in LATER_COLUMNS.get(kind, {}).items() if c not in frame.columns}
    return frame.assign(**missing) if missing else frame


# Tables that keep columns beyond their schema, by name prefix and type: score_summary has a
# dropped_<rule> column per filter rule, so a rule added later writes its own column.
OPEN_COLUMNS: dict[str, tuple[str, pa.DataType]] = {"score_summary": ("dropped_", pa.int32())}


def schema_for(frame: pd.DataFrame, kind: str) -> pa.Schema:
    """The schema of ``kind``, plus the open columns (OPEN_COLUMNS) that ``frame`` has beyond it."""
    schema = SCHEMAS[kind]
    if kind not in OPEN_COLUMNS:
        return schema
    prefix, dtype = OPEN_COLUMNS[kind]
    for column in frame.columns:
        if isinstance(column, str) and column.startswith(prefix) and column not in schema.names:
            schema = schema.append(pa.field(column, dtype))
    return schema


def write_table(frame: pd.DataFrame, path: Path, kind: str, meta: dict | None = None) -> Path:
    """Write ``frame`` as the table ``kind`` at ``path``, atomically; ``meta`` (JSON) travels in the file's
    key-value metadata, e.g. what the table was computed from."""
    frame = with_later_columns(frame, kind)
    missing = [n for n in SCHEMAS[kind].names if n not in frame.columns]
    if missing:
        raise TableError(f"{kind} table for {path} lacks columns {missing}")
    schema = schema_for(frame, kind)
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    if meta is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


#: The command that writes each table again when its file is damaged.
WRITTEN_BY = {"dataset": "prepare", "classes": "prepare", "skipped": "prepare", "hard": "mine", "synthetic": "generate",
              "scores": "score", "score_summary": "score", "train_log": "train", "curriculum_log": "train",
              "metrics": "eval", "predictions": "eval", "wilds_metrics": "eval", "compare": "compare"}


def damaged_table(path: Path, kind: str, err: BaseException) -> TableError:
    stage = WRITTEN_BY.get(kind)
    repair = f"`discl {stage} RUN` writes it again" if stage else "write it again"
    return TableError(f"{path} cannot be read as a Parquet table ({' '.join(str(err).split())}): the file is damaged "
                      f"or incomplete; {repair}")


def read_table(path: Path, kind: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the stage that writes the {kind} table first")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise damaged_table(path, kind, err) from None
    frame = with_later_columns(table.to_pandas(), kind)
    missing = [n for n in SCHEMAS[kind].names if n not in frame.columns]
    if missing:
        raise TableError(f"{path} is not a {kind} table: it lacks columns {missing}")
    check_ranges(frame, path, kind)
    return frame


def table_meta(path: Path) -> dict:
    """The ``meta`` a table was written with ({} when none)."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise damaged_table(Path(path), Path(path).stem, err) from None
    raw = (schema.metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def empty_table(kind: str) -> pd.DataFrame:
    return SCHEMAS[kind].empty_table().to_pandas()
