"""Rows of the synthetic table committed batch by batch, so a crash loses at most one batch.

Each batch's rows are one small Parquet file under ``synthetic.parts/<writer>/``,
written atomically after the batch's images are on disk. One writer (a shard, or
the Ray driver) owns one folder and compacts it when it starts and ends; readers
take the union of all folders. The final ``synthetic.parquet`` is merged from them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..rundir import RunDir
from ..tables import SCHEMAS


def parts_root(run: RunDir) -> Path:
    return run.root / "synthetic.parts"


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    schema = SCHEMAS["synthetic"]
    # Without pandas metadata, parts written from Ray's Arrow-backed frames read back as plain pandas types.
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False).replace_schema_metadata(None)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _read(path: Path) -> pd.DataFrame | None:
    try:
        return pq.read_table(path).to_pandas()
    except FileNotFoundError:  # compacted away by its writer meanwhile
        return None


class PartStore:
    def __init__(self, run: RunDir, writer: str = "all"):
        self.run = run
        self.folder = parts_root(run) / writer
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
        frames = [f for f in map(_read, sorted(parts_root(self.run).glob("*/*.parquet"))) if f is not None]
        if not frames:
            return SCHEMAS["synthetic"].empty_table().to_pandas()
        return pd.concat(frames, ignore_index=True).drop_duplicates("synthetic_id", keep="last")


def done_rows(run: RunDir, plan: pd.DataFrame, committed: pd.DataFrame) -> pd.DataFrame:
    """Committed rows of ``plan`` (same id and generator) whose image file is on disk, in plan order."""
    keys = plan[["synthetic_id", "generator"]]
    rows = keys.merge(committed, on=["synthetic_id", "generator"], how="inner")[list(committed.columns)]
    absent = set(run.missing_files(rows["path"].tolist()))
    present = ~rows["path"].isin(absent)
    return rows[present].reset_index(drop=True)
