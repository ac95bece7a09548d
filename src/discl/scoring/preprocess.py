"""CLIP preprocessing on batched uint8 tensors: resize (shortest side, or squash) + centre crop + normalise.

Doing this on a whole batch at once is far cheaper than a PIL transform per image, and gives
the same embeddings up to interpolation rounding (tests compare against the libraries' own
PIL preprocessing)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _pair(size) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


class TensorPreprocess:
    """uint8 (N, 3, H, W) -> normalised float (N, 3, h, w) ready for a CLIP image tower."""

    def __init__(self, size, mean=OPENAI_MEAN, std=OPENAI_STD, resize_mode: str = "shortest", interpolation: str = "bicubic"):
        if resize_mode not in ("shortest", "squash"):
            raise ValueError(f"unknown resize_mode {resize_mode!r}; known: ['shortest', 'squash']")
        self.size = _pair(size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.resize_mode = resize_mode
        self.interpolation = interpolation if interpolation in ("bicubic", "bilinear") else "bicubic"

    def _resize(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=True).clamp(0, 1)

    def __call__(self, images: torch.Tensor, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images of shape (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        x = images.to(device).float().div_(255.0)
        th, tw = self.size
        h, w = x.shape[-2:]
        if self.resize_mode == "squash":
            x = self._resize(x, (th, tw))
        else:
            # torchvision Resize(int): the shorter side becomes the target, the longer keeps the aspect ratio.
            short = min(th, tw)
            if h <= w:
                new = (short, max(short, int(short * w / h)))
            else:
                new = (max(short, int(short * h / w)), short)
            x = self._resize(x, new)
            top, left = (x.shape[-2] - th) // 2, (x.shape[-1] - tw) // 2
            x = x[..., top : top + th, left : left + tw]
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        return x.to(dtype)
