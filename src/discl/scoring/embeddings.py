"""Embeddings saved on disk (Parquet shards: ``id`` + a fixed-size float32 vector), so a run can be
re-scored with new thresholds without a model, and an interrupted scoring run resumes where it stopped.

One folder per scorer: ``store.json`` names the scorer the vectors came from. Vectors of another scorer
are never mixed in, and never thrown away before their replacement is whole: a new scorer's vectors
go into ``<folder>.next`` and replace the folder only at :meth:`EmbeddingStore.commit`, once every
vector the run needs is there. A scorer that fails to load, or a run stopped midway, leaves the saved
vectors as they were."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import atomic_path, atomic_write_json
from ..swap import recover, replace_folder


def _meta(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "store.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


class EmbeddingStore:
    def __init__(self, folder: Path, key: str, echo=print, scorer: dict | None = None):
        self.folder = Path(folder)
        recover(self.folder)  # a crash between commit's two renames left the vectors aside
        self.key = key
        self.echo = echo
        self.scorer = scorer  # what the key stands for, saved so that a later run can say what changed
        self.staging = self.folder.with_name(self.folder.name + ".next")
        keys = {f: (_meta(f) or {}).get("key") for f in (self.folder, self.staging)}
        self.active: Path | None = next((f for f, k in keys.items() if k == key), None)
        if self.active is None and keys[self.folder] is not None:
            echo(f"the scorer changed since {self.folder} was written; new embeddings go to {self.staging} "
                 "and replace the old ones once complete")
        self._cache: dict[str, tuple[list[str], np.ndarray]] = {}

    @property
    def saved_scorer(self) -> dict | None:
        """What the vectors in the folder were made with (None: nothing saved, or not recorded)."""
        return (_meta(self.folder) or {}).get("scorer")

    @property
    def holds_other_scorer(self) -> bool:
        return self.active is None and _meta(self.folder) is not None

    def _start(self) -> Path:
        """The folder new vectors go to: the store's own when it holds none, else a fresh staging folder."""
        target = self.staging if _meta(self.folder) is not None else self.folder
        shutil.rmtree(target, ignore_errors=True)  # a third scorer's unfinished set, or vectors of no known scorer
        target.mkdir(parents=True)
        atomic_write_json(target / "store.json", {"key": self.key, "scorer": self.scorer}, indent=2, default=str)
        self.active = target
        return target

    def commit(self) -> None:
        """Swap a completed staging folder in for the old scorer's vectors."""
        if self.active != self.staging:
            return
        replace_folder(self.staging, self.folder)
        self.active = self.folder

    def _shards(self, kind: str) -> list[Path]:
        return sorted(self.active.glob(f"{kind}-*.parquet")) if self.active else []

    def load(self, kind: str) -> tuple[list[str], np.ndarray]:
        """All ids and vectors of ``kind`` (rows in the order they were added)."""
        if kind not in self._cache:
            ids: list[str] = []
            blocks = []
            for shard in self._shards(kind):
                try:
                    table = pq.read_table(shard)
                except pa.ArrowInvalid as err:  # not a whole parquet file; a failing disk or permission stays an error
                    self._set_aside(shard, err)
                    continue
                column = table.column("embedding").combine_chunks()
                dim = column.type.list_size
                ids.extend(table.column("id").to_pylist())
                blocks.append(column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim))
            matrix = np.concatenate(blocks).astype(np.float32, copy=False) if blocks else np.zeros((0, 0), np.float32)
            self._cache[kind] = (ids, matrix)
        return self._cache[kind]

    def _set_aside(self, shard: Path, err: BaseException) -> None:
        """A shard that cannot be read (truncated, overwritten) is renamed out of the store: the vectors it held
        count as missing, so `discl score` embeds them again (``--rescore`` says to run it)."""
        damaged = shard.with_name(shard.name + ".damaged")
        shard.replace(damaged)
        self.echo(f"warning: {shard} cannot be read ({' '.join(str(err).split())}); set aside as {damaged.name}, "
                  "its vectors are embedded again")

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
        folder = self.active or self._start()
        dim = vectors.shape[1]
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
        table = pa.table({"id": pa.array(list(ids), pa.string()), "embedding": embedding})
        shards = self._shards(kind)
        index = int(shards[-1].stem.rsplit("-", 1)[1]) + 1 if shards else 0  # after the last, if one was set aside
        path = folder / f"{kind}-{index:05d}.parquet"
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        self._cache.pop(kind, None)

    def lookup(self, kind: str, ids: Sequence[str]) -> np.ndarray:
        """Vectors for ``ids`` in that order; a missing id is an error naming it."""
        stored, matrix = self.load(kind)
        row = {i: n for n, i in enumerate(stored)}
        absent = [i for i in ids if i not in row]
        if absent:
            raise KeyError(f"no stored {kind} embedding for {len(absent)} ids, e.g. {absent[0]!r}")
        return matrix[[row[i] for i in ids]]
