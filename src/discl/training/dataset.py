"""A torch Dataset that decodes one image file per item, in DataLoader worker processes.

Items are addressed by *keys* that the samplers (training/sampling.py) make, not by plain indices:

    (row, draw, augment, variant, flags)

- ``row``: position in the :class:`~discl.data.rows.ImageRows` table;
- ``draw``: the seed of this item's random transform. It is a function of the run's seed, the
  epoch and the item's place in the epoch's global order, so an image is augmented the same way
  whatever the number of workers or processes, and a resumed run sees the same pixels;
- ``augment``: a per-item augmentation strength (the CUDA baseline), 0 for none;
- ``variant``: a small integer the task may use (FLYP: which caption template);
- ``flags``: ``REAL`` (counts towards the batch; padding items repeat a real one so every DDP
  process gets a non-empty batch) and ``TRAIN`` (training transform; else the evaluation one).

A file that is missing or cannot be decoded does not stop a run: the item comes back as zeros
with ``decoded = False``; the loop leaves it out of the loss and counts it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from ..data.images import DECODE_ERRORS, read_image
from ..data.rows import ImageRows
from .transforms import Transforms

REAL = 1
TRAIN = 2

Augment = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]  # uint8 (3, H, W), strength, rng -> uint8


class _Seeded:
    """Seed the global RNGs the transforms draw from (torchvision: torch; timm: random and numpy) for
    one item. In the main process (no loader workers) the previous states are put back afterwards,
    so the main process's own random streams (dropout, ...) do not depend on where images are
    decoded; worker processes have nothing else to protect."""

    def __init__(self, seed: int):
        self.seed = seed
        self.restore = torch.utils.data.get_worker_info() is None

    def __enter__(self):
        if self.restore:
            self.saved = (torch.get_rng_state(), random.getstate(), np.random.get_state())
        torch.default_generator.manual_seed(self.seed)  # the CPU generator only: torch.manual_seed also seeds every GPU
        random.seed(self.seed)
        np.random.seed(self.seed % (2**32))

    def __exit__(self, *exc):
        if self.restore:
            torch.set_rng_state(self.saved[0])
            random.setstate(self.saved[1])
            np.random.set_state(self.saved[2])
        return False


def read_rgb(path: str) -> Image.Image:
    """The file at its own size: the timm transforms resize and crop it (data.images.read_image, "native")."""
    return read_image(path, None, "native")


class ImageDataset(torch.utils.data.Dataset):
    def __init__(self, rows: ImageRows, transforms: Transforms, augment: Augment | None = None):
        self.rows = rows
        self.transforms = transforms
        self.augment = augment
        self._blank: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def blank(self) -> torch.Tensor:
        """What a failed item looks like: zeros of the transform's output shape."""
        if self._blank is None:
            size = self.transforms.input_size
            self._blank = torch.zeros_like(self.transforms.eval(Image.new("RGB", (size, size))))
        return self._blank

    def __getitem__(self, key):
        row, draw, strength, variant, flags = key if isinstance(key, tuple) else (key, 0, 0, 0, REAL)
        label = self.rows.label(row)
        try:
            image = read_rgb(self.rows.path(row))
            with _Seeded(draw):
                if strength and self.augment is not None:
                    from torchvision.transforms.v2 import functional as TF

                    tensor = self.augment(TF.pil_to_tensor(image), strength, torch.Generator().manual_seed(draw))
                    image = TF.to_pil_image(tensor)
                x = (self.transforms.train if flags & TRAIN else self.transforms.eval)(image)
            decoded = True
        except DECODE_ERRORS:
            # Missing, truncated or undecodable: counted by the loop, never a crash hours into a run.
            x, decoded = self.blank(), False
        return x, label, row, decoded, variant, bool(flags & REAL)
