"""Loading image files into uint8 tensors for the small in-process models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..atomic import atomic_path


def load_image(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.uint8)


def load_images(paths: Sequence[Path], size: int) -> torch.Tensor:
    """Files -> (N, 3, size, size) uint8 tensor."""
    if not len(paths):
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    arrays = []
    for path in paths:
        try:
            arrays.append(load_image(path, size))
        except (OSError, ValueError) as err:
            raise OSError(f"cannot read image {path}: {err}") from err
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def save_png_atomic(array: np.ndarray, path: Path) -> None:
    """Write an (H, W, 3) uint8 array as PNG via a temp file + rename, so no half-written image survives a crash."""
    # No fsync per image (it would cost more than the image): a resume checks every image (generation/store.py's
    # image_ok) and remakes a torn one. A fixed temp name, so a resume removes what a killed writer left.
    with atomic_path(path, durable=False, unique=False) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
