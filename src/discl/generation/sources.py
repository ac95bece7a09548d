"""Source images loaded on demand (a spectrum plan may cover far more images than fit in memory),
at the size the generator works at.

A source file becomes a generator input in two steps, as in the reference code:
1. resized to ``size`` (w, h) with bicubic filtering, as PIL's ``Image.resize`` does by default
   (the reference: ``.resize((480, 270))`` for iWildCam); ``size=None`` keeps the file's own size
   (the reference's ImageNet-LT);
2. rounded DOWN to a multiple of ``multiple`` (the VAE's scale factor, 8 for Stable Diffusion) with
   Lanczos filtering, as diffusers' ``VaeImageProcessor`` does before img2img: 500x375 -> 496x368,
   480x270 -> 480x264.
Sources of different sizes cannot share a batch; :meth:`SourceImages.size_of` tells the runner
each one's size (from the file header alone) so it can group them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.images import read_image


def floor_to_multiple(width: int, height: int, multiple: int) -> tuple[int, int]:
    """(width, height) rounded down to ``multiple``, as diffusers' ``VaeImageProcessor.get_default_height_width``
    (``x - x % vae_scale_factor``); at least one multiple, where diffusers would reach zero."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    return max(multiple, width - width % multiple), max(multiple, height - height % multiple)


def load_rgb(path: Path, size: tuple[int, int] | None = None, multiple: int = 1) -> torch.Tensor:
    """One image file -> uint8 (3, H, W): resized to ``size`` = (width, height) (None: its own size),
    then rounded down to ``multiple`` (see the module docstring)."""
    try:
        # generate.source_size / generate.resize: squashed to a size, or "native" (size None).
        image = read_image(path, size, "native" if size is None else "squash")
        width, height = image.size
        target = floor_to_multiple(width, height, multiple)
        if image.size != target:
            image = image.resize(target, Image.Resampling.LANCZOS)  # diffusers' image processor's filter
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
    except (OSError, ValueError) as err:
        raise OSError(f"cannot read source image {path}: {err}") from err


class SourceImages(Mapping):
    """source_id -> uint8 (3, H, W), read from its file the first time it is asked for (a small LRU
    cache), at ``size`` (None: each file's own size) rounded down to ``multiple``."""

    def __init__(self, paths: Mapping[str, Path], size: tuple[int, int] | None, cache: int = 256, multiple: int = 1):
        self.paths = dict(paths)
        self.size: tuple[int, int] | None = None
        if size is not None:
            width, height = size
            self.size = (int(width), int(height))
        self.multiple = int(multiple)
        self.cache_size = cache
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._sizes: dict[str, tuple[int, int]] = {}

    def __getitem__(self, source_id: str) -> torch.Tensor:
        if source_id not in self._cache:
            self._cache[source_id] = load_rgb(self.paths[source_id], self.size, self.multiple)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(source_id)
        return self._cache[source_id]

    def size_of(self, source_id: str) -> tuple[int, int]:
        """(width, height) of the source as loaded, without decoding it (native sizes come from the file header)."""
        if source_id not in self._sizes:
            size = self.size
            if size is None:
                try:
                    with Image.open(self.paths[source_id]) as image:
                        size = image.size
                except OSError as err:
                    raise OSError(f"cannot read source image {self.paths[source_id]}: {err}") from err
            self._sizes[source_id] = floor_to_multiple(size[0], size[1], self.multiple)
        return self._sizes[source_id]

    def __iter__(self):
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)
