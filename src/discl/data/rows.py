"""Image rows: which files a stage reads, with their labels, held compactly.

Training and evaluation never hold a split decoded in memory; they hold *rows* (a path and a
label per image) and decode each file when a batch needs it. The paths live in one bytes
buffer with offsets, not in a list of Python strings: DataLoader worker processes are forked
from the main process, and touching millions of string objects (reference counts) would copy
them into every worker, so memory would grow with the dataset and the number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


class ImageRows:
    """Paths (absolute) and integer labels of N images; indexable by position."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int] | np.ndarray):
        encoded = [p.encode("utf-8", "surrogateescape") for p in paths]
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._offsets[1:])
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, dtype=np.uint8)
        self.labels = np.asarray(labels, dtype=np.int64).copy()
        if len(self.labels) != len(encoded):
            raise ValueError(f"{len(encoded)} paths but {len(self.labels)} labels")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, resolve_all) -> ImageRows:
        """Rows of a table with ``path`` and ``label`` columns; ``resolve_all`` makes paths absolute."""
        return cls(resolve_all(frame["path"].tolist()), frame["label"].to_numpy(dtype="int64"))

    @classmethod
    def concat(cls, parts: Sequence[ImageRows]) -> ImageRows:
        out = cls([], [])
        blobs, offsets, shift = [], [np.zeros(1, dtype=np.int64)], 0
        for part in parts:
            blobs.append(part._blob)
            offsets.append(part._offsets[1:] + shift)
            shift += int(part._offsets[-1])
        out._blob = np.concatenate(blobs) if blobs else out._blob
        out._offsets = np.concatenate(offsets)
        out.labels = np.concatenate([p.labels for p in parts]) if parts else out.labels
        return out

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int) -> str:
        lo, hi = self._offsets[index], self._offsets[index + 1]
        return self._blob[lo:hi].tobytes().decode("utf-8", "surrogateescape")

    def paths(self, indices: Sequence[int] | np.ndarray) -> list[str]:
        return [self.path(int(i)) for i in indices]

    def label(self, index: int) -> int:
        return int(self.labels[index])

    def nbytes(self) -> int:
        return self._blob.nbytes + self._offsets.nbytes + self.labels.nbytes
