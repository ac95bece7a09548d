"""Reading image files for a CLIP scorer: decoded in a thread pool, fitted to a square by resize +
centre crop so batches stack. Files already at the target size (the usual case for generated
images) are decoded by torchvision's C++ decoders, which cost about half of PIL's per small image
and release the GIL; anything else goes through PIL."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..data.images import read_image

try:
    from torchvision.io import ImageReadMode, decode_image
except ImportError:  # torchvision's image decoders are deprecated since 0.29; PIL does the work without them
    decode_image = None


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _read(path: Path | str, size: int) -> np.ndarray:
    if decode_image is None:
        return _read_pil(path, size)
    try:
        with open(path, "rb") as file:
            data = file.read()
        image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        if tuple(image.shape[1:]) == (size, size):
            return image.permute(1, 2, 0).numpy()
    except (OSError, RuntimeError, ValueError):
        pass  # an unusual format or a broken file: PIL decodes it or names the error
    return _read_pil(path, size)


def _read_pil(path: Path | str, size: int) -> np.ndarray:
    try:
        return np.asarray(read_image(path, size, "center-crop"), dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise OSError(f"cannot read image {path}: {err}") from err


def read_images(paths: Sequence[Path | str], size: int, workers: int | None = None) -> torch.Tensor:
    """Files -> uint8 (N, 3, size, size). ``workers`` threads (default: one per CPU core this process may use;
    more threads than cores only fight over the GIL)."""
    if not len(paths):
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def fill(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            out[i] = _read(paths[i], size)

    # One task per contiguous slice: a task per file costs more than decoding a small PNG.
    workers = max(1, min(workers or usable_cores(), len(paths) // 64 or 1))
    bounds = np.linspace(0, len(paths), workers + 1).astype(int)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(fill, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]:
            future.result()
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def read_image_chunks(paths: Sequence[Path | str], size: int, chunk: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, images) for consecutive chunks of ``paths``; the next chunk is decoded in the background
    while the caller works on this one (e.g. a model's forward passes on a GPU)."""
    if not len(paths):
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read_images, paths[:chunk], size)
        for start in range(0, len(paths), chunk):
            images = pending.result()
            nxt = start + chunk
            if nxt < len(paths):
                pending = pool.submit(read_images, paths[nxt : nxt + chunk], size)
            yield start, images
