"""Reading image files for a CLIP scorer: decoded in a thread pool, fitted to a square by resize +
centre crop so batches stack. Files already at the target size (the usual case for generated
images) are decoded by torchvision's C++ decoders, which cost about half of PIL's per small image
and release the GIL; anything else goes through PIL."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.io import ImageReadMode, decode_image


def _read(path: Path, size: int) -> np.ndarray:
    try:
        with open(path, "rb") as file:
            data = file.read()
        image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        if tuple(image.shape[1:]) == (size, size):
            return image.permute(1, 2, 0).numpy()
    except (OSError, RuntimeError, ValueError):
        pass  # an unusual format or a broken file: PIL decodes it or names the error
    return _read_pil(path, size)


def _read_pil(path: Path, size: int) -> np.ndarray:
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
