"""Loading image files into pixels: one reader (:func:`read_image`) whose geometry each caller names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from ..atomic import atomic_path

if TYPE_CHECKING:  # the readers need no PyTorch; load_images imports it
    import torch

#: How a file's pixels are fitted to the size asked for:
#: - ``squash``: resized to (width, height), aspect ratio not kept (bicubic) — the small models, generator sources;
#: - ``center-crop``: scaled to cover (width, height), then centre-cropped (PIL's ``ImageOps.fit``, bicubic) — CLIP;
#: - ``contain``: the longer side becomes ``size``, aspect kept (nearest when enlarging: sharp pixels; Lanczos
#:   when shrinking) — the report's thumbnails;
#: - ``native``: the file's own size (``size`` must be None) — training transforms and native-size sources.
#: What reading an unusable image file raises (missing, truncated, not an image, over PIL's pixel limit).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

GEOMETRIES = ("squash", "center-crop", "contain", "native")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    width, height = size
    return int(width), int(height)


def fit_image(image: Image.Image, size: int | Sequence[int] | None, geometry: str) -> Image.Image:
    """``image`` fitted to ``size`` (an int: a square, or (width, height); ``contain``: the longer side) by ``geometry``."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown image geometry {geometry!r}; known: {list(GEOMETRIES)}")
    if geometry == "native":
        if size is not None:
            raise ValueError("geometry 'native' keeps the file's own size: pass size=None")
        return image
    if size is None:
        raise ValueError(f"geometry {geometry!r} needs a size")
    if geometry == "contain":
        if not isinstance(size, int):
            raise ValueError("geometry 'contain' takes one size: the longer side")
        scale = size / max(image.size)
        new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return image.resize(new, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
    target = _pair(size)
    if image.size == target:
        return image
    if geometry == "squash":
        return image.resize(target, Image.Resampling.BICUBIC)
    return ImageOps.fit(image, target, Image.Resampling.BICUBIC)


def read_image(path: Path | str, size: int | Sequence[int] | None = None, geometry: str = "native") -> Image.Image:
    """One image file as an RGB PIL image, fitted to ``size`` by ``geometry`` (see :data:`GEOMETRIES`); the file
    is closed on return. Errors are PIL's (OSError, ValueError, DecompressionBombError): callers name the file."""
    with Image.open(path) as image:
        return fit_image(image.convert("RGB"), size, geometry)


def load_image(path: Path, size: int) -> np.ndarray:
    return np.asarray(read_image(path, size, "squash"), dtype=np.uint8)


def load_images(paths: Sequence[Path], size: int) -> torch.Tensor:
    """Files -> (N, 3, size, size) uint8 tensor."""
    import torch

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
