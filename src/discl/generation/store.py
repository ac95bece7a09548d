"""Rows of the synthetic table committed batch by batch, so a crash loses at most one batch.

Each batch's rows are one small Parquet file under ``synthetic.parts/<writer>/``,
written atomically after the batch's images are on disk. One writer (a shard, or
the Ray driver) owns one folder and compacts it when it starts and ends; readers
take the union of all folders. The final ``synthetic.parquet`` is merged from them.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..atomic import atomic_path
from ..rundir import RunDir
from ..tables import SCHEMAS, with_later_columns


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    schema = SCHEMAS["synthetic"]
    # Without pandas metadata, parts written from Ray's Arrow-backed frames read back as plain pandas types.
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False).replace_schema_metadata(None)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _read(path: Path) -> pd.DataFrame | None:
    try:
        return with_later_columns(pq.read_table(path).to_pandas(), "synthetic")
    except FileNotFoundError:  # compacted away by its writer meanwhile
        return None


class PartStore:
    def __init__(self, run: RunDir, writer: str = "all"):
        self.run = run
        self.folder = run.synthetic_parts / writer
        self.folder.mkdir(parents=True, exist_ok=True)

    def commit(self, rows: pd.DataFrame) -> None:
        if len(rows):
            _write_atomic(rows, self.folder / f"part-{uuid.uuid4().hex}.parquet")

    def compact(self) -> None:
        """Merge this writer's parts into one file (new file first, then the old ones go)."""
        parts = sorted(self.folder.glob("*.parquet"))
        if len(parts) < 2:
            return
        frames = [f for f in map(_read, parts) if f is not None]
        merged = pd.concat(frames).drop_duplicates("synthetic_id", keep="last")
        _write_atomic(merged, self.folder / f"compact-{uuid.uuid4().hex}.parquet")
        for part in parts:
            part.unlink(missing_ok=True)

    def rows(self) -> pd.DataFrame:
        """Every committed row of every writer, the latest per synthetic_id."""
        frames = [f for f in map(_read, sorted(self.run.synthetic_parts.glob("*/*.parquet"))) if f is not None]
        if not frames:
            return SCHEMAS["synthetic"].empty_table().to_pandas()
        return pd.concat(frames, ignore_index=True).drop_duplicates("synthetic_id", keep="last")


def current(plan: pd.DataFrame, committed: pd.DataFrame) -> pd.DataFrame:
    """Committed rows of ``plan`` made with the plan's settings (same fingerprint), in plan order. Rows
    written before fingerprints existed count when their generator and text guidance match."""
    keys = plan[["synthetic_id", "generator", "text_guidance", "fingerprint"]].rename(
        columns={"text_guidance": "_guidance", "fingerprint": "_planned"})
    rows = keys.merge(committed, on=["synthetic_id", "generator"], how="inner")
    legacy = (rows["fingerprint"] == "") & (rows["text_guidance"].astype("float32") == rows["_guidance"].astype("float32"))
    return rows[(rows["fingerprint"] == rows["_planned"]) | legacy][list(committed.columns)].reset_index(drop=True)


def stale(plan: pd.DataFrame, committed: pd.DataFrame) -> pd.DataFrame:
    """Committed rows of ``plan`` whose image was made with other settings: they are made again."""
    ids = committed["synthetic_id"].isin(plan["synthetic_id"]) & ~committed["synthetic_id"].isin(current(plan, committed)["synthetic_id"])
    return committed[ids]


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def image_ok(path: str, size: tuple[int, int] | None = None) -> bool:
    """A whole PNG at ``size`` (width, height): its header reads, and it ends with the IEND chunk, which a
    0-byte, truncated or garbage file lacks. Cheap (two small reads), so it runs on every resume."""
    try:
        with open(path, "rb") as f:
            f.seek(-len(_PNG_END), os.SEEK_END)
            if f.read() != _PNG_END:
                return False
        with Image.open(path) as image:
            return image.format == "PNG" and (size is None or tuple(image.size) == tuple(size))
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def unusable_images(run: RunDir, paths: list[str], size: tuple[int, int] | None = None) -> set[str]:
    """Those of ``paths`` that are missing, or not a whole PNG at ``size``."""
    absent = set(run.missing_files(paths))
    present = [p for p in paths if p not in absent]
    with ThreadPoolExecutor(8) as pool:  # file system latency, not CPU, bounds this on large runs
        ok = list(pool.map(image_ok, run.resolve_all(present), [size] * len(present)))
    return absent | {p for p, good in zip(present, ok) if not good}


def done_rows(run: RunDir, plan: pd.DataFrame, committed: pd.DataFrame, size: tuple[int, int] | None = None) -> pd.DataFrame:
    """Committed rows of ``plan`` made with its settings whose image is a whole PNG (at ``size``), in plan order."""
    rows = current(plan, committed)
    bad = unusable_images(run, rows["path"].tolist(), size)
    return rows[~rows["path"].isin(bad)].reset_index(drop=True)


def embedding_ids(synthetic: pd.DataFrame) -> list[str]:
    """What names each synthetic image's content: its id and fingerprint (so a remade image is new)."""
    return [sid if not fp else f"{sid}#{fp}" for sid, fp in zip(synthetic["synthetic_id"], synthetic["fingerprint"])]


def synthetic_digest(synthetic: pd.DataFrame) -> str:
    """Which synthetic images (ids and fingerprints) a table describes, as one short digest."""
    return hashlib.sha1("\n".join(sorted(embedding_ids(synthetic))).encode()).hexdigest()[:16]
