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
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        arrays = list(pool.map(lambda p: _read(p, size), paths))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
