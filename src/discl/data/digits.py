"""digits-lt: an offline long-tailed dataset built from scikit-learn's handwritten digits.

The 1,797 8x8 digits are split, per class and disjointly, into
- ``test`` and ``val``: balanced, for evaluation and model selection;
- ``foundation``: a balanced pool standing in for the web-scale data that
  Stable Diffusion and CLIP were pretrained on; the demo's generator and CLIP
  learn from it, so, like the real ones, they know every class;
- ``train``: the long-tailed training split of the task, with an exponential
  profile n_c = max_per_class * imbalance_ratio^(-c / (C - 1)) (class "zero" is
  the head, class "nine" the tail).
Images are upsampled to ``image_size`` and stored as RGB PNG files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..registry import datasets
from ..swap import staging_dir
from .adapted import Adapted

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def long_tail_counts(num_classes: int, max_per_class: int, imbalance_ratio: float) -> list[int]:
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
    return [
        max(1, int(max_per_class * imbalance_ratio ** (-c / max(1, num_classes - 1))))
        for c in range(num_classes)
    ]


def digits_to_rgb(images: np.ndarray, size: int) -> np.ndarray:
    """(N, 8, 8) digits with values 0..16 -> (N, size, size, 3) uint8."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="nearest")
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()


def build_digits_lt(
    out_dir: Path,
    image_size: int = 16,
    max_per_class: int = 50,
    imbalance_ratio: float = 50.0,
    val_per_class: int = 15,
    test_per_class: int = 30,
    seed: int = 0,
) -> pd.DataFrame:
    """Write the PNG files under ``out_dir`` and return the dataset table (absolute paths)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target
    num_classes = len(CLASS_NAMES)
    per_class = np.bincount(labels, minlength=num_classes)
    foundation_per_class = int(per_class.min()) - test_per_class - val_per_class - max_per_class
    if foundation_per_class < 1:
        raise ValueError(
            f"digits has only {per_class.min()} images in its smallest class: test_per_class + "
            f"val_per_class + max_per_class must leave some for the foundation pool"
        )
    train_counts = long_tail_counts(num_classes, max_per_class, imbalance_ratio)
    rgb = digits_to_rgb(digits.images, image_size)
    rng = np.random.RandomState(seed)

    rows = []
    for c in range(num_classes):
        order = rng.permutation(np.flatnonzero(labels == c))
        # Fixed slots, so changing the long-tail profile leaves test/val/foundation unchanged.
        bounds = np.cumsum([0, test_per_class, val_per_class, foundation_per_class, train_counts[c]])
        for split, lo, hi in zip(("test", "val", "foundation", "train"), bounds[:-1], bounds[1:]):
            for index in order[lo:hi]:
                path = Path(out_dir) / split / CLASS_NAMES[c] / f"{index:04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rgb[index]).save(path)
                rows.append((f"digits-{index:04d}", split, c, CLASS_NAMES[c], str(path)))
    return pd.DataFrame(rows, columns=["sample_id", "split", "label", "class_name", "path"])


@datasets.register("digits-lt", settings=("image_size", "imbalance_ratio", "max_per_class", "val_per_class",
                                          "test_per_class", "split_seed"))
def adapt_digits_lt(cfg, run) -> Adapted:
    """scikit-learn's handwritten digits, long-tailed (built in, offline: the demo's dataset)."""
    from ..tables import empty_table

    # Written beside the images of an earlier prepare, which stay until the new ones are all written.
    final = run.images / "digits-lt"
    staged = staging_dir(final)
    dataset = build_digits_lt(staged, image_size=cfg.image_size, max_per_class=cfg.max_per_class,
                              imbalance_ratio=cfg.imbalance_ratio, val_per_class=cfg.val_per_class,
                              test_per_class=cfg.test_per_class, seed=cfg.split_seed)
    # Paths where the images will be (the run directory stays movable: relative paths).
    dataset["path"] = [run.relative(final / Path(p).relative_to(staged)) for p in dataset["path"]]
    return Adapted(dataset, empty_table("skipped"), staged, final)
