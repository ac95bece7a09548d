"""Reading image files for a CLIP scorer: decoded in a thread pool (PIL releases the GIL while
decoding), fitted to a square by resize + centre crop so batches stack."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps


def _read(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise OSError(f"cannot read image {path}: {err}") from err


def read_images(paths: Sequence[Path], size: int, workers: int = 4) -> torch.Tensor:
    """Files -> uint8 (N, 3, size, size)."""
    if not len(paths):
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def fill(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            out[i] = _read(paths[i], size)

    # One task per contiguous slice: a task per file costs more than decoding a small PNG.
    workers = max(1, min(workers, len(paths) // 64 or 1))
    bounds = np.linspace(0, len(paths), workers + 1).astype(int)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(fill, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]:
            future.result()
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
