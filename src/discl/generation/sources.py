"""Source images loaded on demand (a spectrum plan may cover far more images than fit in memory)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def load_rgb(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """One image file -> uint8 (3, H, W) at ``size`` = (width, height)."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != tuple(size):
                image = image.resize(tuple(size), Image.Resampling.BICUBIC)
            return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
    except (OSError, ValueError) as err:
        raise OSError(f"cannot read source image {path}: {err}") from err


class SourceImages(Mapping):
    """source_id -> uint8 (3, H, W), read from its file the first time it is asked for (a small LRU cache)."""

    def __init__(self, paths: Mapping[str, Path], size: tuple[int, int], cache: int = 256):
        self.paths = dict(paths)
        self.size = tuple(size)
        self.cache_size = cache
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __getitem__(self, source_id: str) -> torch.Tensor:
        if source_id not in self._cache:
            self._cache[source_id] = load_rgb(self.paths[source_id], self.size)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(source_id)
        return self._cache[source_id]

    def __iter__(self):
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)
