"""The CUDA baseline's augmentations (curricula/cuda.py): torchvision's transforms.v2.functional
operations on uint8 tensors, applied where images are decoded (DataLoader workers)."""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF


def _sign(g: torch.Generator) -> float:
    return 1.0 if torch.rand((), generator=g).item() < 0.5 else -1.0


def _erase(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    side = max(1, round(0.5 * m * min(h, w)))
    i = int(torch.randint(0, h - side + 1, (), generator=g))
    j = int(torch.randint(0, w - side + 1, (), generator=g))
    return TF.erase(x, i, j, side, side, torch.zeros((), dtype=x.dtype))


OPS = {
    "rotate": lambda x, m, g: TF.rotate(x, _sign(g) * 30.0 * m),
    "shear": lambda x, m, g: TF.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=[_sign(g) * 20.0 * m, 0.0]),
    "translate": lambda x, m, g: TF.affine(x, angle=0.0, translate=[round(_sign(g) * 0.3 * m * x.shape[-1]), 0], scale=1.0, shear=[0.0, 0.0]),
    "brightness": lambda x, m, g: TF.adjust_brightness(x, 1.0 + _sign(g) * 0.8 * m),
    "contrast": lambda x, m, g: TF.adjust_contrast(x, 1.0 + _sign(g) * 0.8 * m),
    "sharpness": lambda x, m, g: TF.adjust_sharpness(x, 1.0 + _sign(g) * 0.9 * m),
    "posterize": lambda x, m, g: TF.posterize(x, 8 - round(4 * m)),
    "solarize": lambda x, m, g: TF.solarize(x, 255.0 * (1.0 - m)),
    "autocontrast": lambda x, m, g: TF.autocontrast(x),
    "equalize": lambda x, m, g: TF.equalize(x),
    "flip": lambda x, m, g: TF.horizontal_flip(x),
    "erase": _erase,
}
OP_NAMES = sorted(OPS)


def augment_image(image: torch.Tensor, strength: int, max_strength: int, generator: torch.Generator) -> torch.Tensor:
    """One uint8 (3, H, W) image at CUDA strength ``strength`` (0 = unchanged)."""
    if strength <= 0:
        return image
    m = min(1.0, strength / max_strength)
    n_ops = min(strength, len(OP_NAMES))
    for k in torch.randperm(len(OP_NAMES), generator=generator)[:n_ops].tolist():
        image = OPS[OP_NAMES[k]](image, m, generator)
    return image
