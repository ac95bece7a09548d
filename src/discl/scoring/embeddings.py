"""Embeddings saved on disk (Parquet shards: ``id`` + a fixed-size float32 vector), so a run can be
re-scored with new thresholds without a model, and an interrupted scoring run resumes where it stopped.

One folder per scorer: ``store.json`` names the scorer the vectors came from; when the scorer
changes, the old vectors no longer mean anything and are removed."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


class EmbeddingStore:
    def __init__(self, folder: Path, key: str, echo=print):
        self.folder = Path(folder)
        meta = self.folder / "store.json"
        if meta.exists() and json.loads(meta.read_text()).get("key") != key:
            echo(f"the scorer changed since {self.folder} was written; its embeddings are recomputed")
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not meta.exists():
            meta.write_text(json.dumps({"key": key}, indent=2))
        self._cache: dict[str, tuple[list[str], np.ndarray]] = {}

    def _shards(self, kind: str) -> list[Path]:
        return sorted(self.folder.glob(f"{kind}-*.parquet"))

    def load(self, kind: str) -> tuple[list[str], np.ndarray]:
        """All ids and vectors of ``kind`` (rows in the order they were added)."""
        if kind not in self._cache:
            ids: list[str] = []
            blocks = []
            for shard in self._shards(kind):
                table = pq.read_table(shard)
                column = table.column("embedding").combine_chunks()
                dim = column.type.list_size
                ids.extend(table.column("id").to_pylist())
                blocks.append(column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim))
            matrix = np.concatenate(blocks).astype(np.float32, copy=False) if blocks else np.zeros((0, 0), np.float32)
            self._cache[kind] = (ids, matrix)
        return self._cache[kind]

    def missing(self, kind: str, ids: Sequence[str]) -> list[str]:
        have = set(self.load(kind)[0])
        return list(dict.fromkeys(i for i in ids if i not in have))

    def add(self, kind: str, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Write one new shard atomically (a crash leaves either the whole shard or none)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if not len(ids):
            return
        dim = vectors.shape[1]
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
        table = pa.table({"id": pa.array(list(ids), pa.string()), "embedding": embedding})
        index = len(self._shards(kind))
        path = self.folder / f"{kind}-{index:05d}.parquet"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        self._cache.pop(kind, None)

    def lookup(self, kind: str, ids: Sequence[str]) -> np.ndarray:
        """Vectors for ``ids`` in that order; a missing id is an error naming it."""
        stored, matrix = self.load(kind)
        row = {i: n for n, i in enumerate(stored)}
        absent = [i for i in ids if i not in row]
        if absent:
            raise KeyError(f"no stored {kind} embedding for {len(absent)} ids, e.g. {absent[0]!r}")
        return matrix[[row[i] for i in ids]]
