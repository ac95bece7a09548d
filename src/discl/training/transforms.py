"""Image transforms from the field's libraries: timm's for classifiers, open_clip's for CLIP models.

Each task model gets a pair: a random training transform (applied per image with a seed that
depends only on the image's place in the epoch, see training/dataset.py) and a deterministic
evaluation transform. Both take a PIL image and return a normalised float tensor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..config import AugmentConfig


@dataclass
class Transforms:
    train: Callable
    eval: Callable
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float
    interpolation: str

    def describe(self) -> dict:
        """What a saved model needs to be fed the same way again (stored in its metadata)."""
        return {"input_size": self.input_size, "mean": list(self.mean), "std": list(self.std),
                "crop_pct": self.crop_pct, "interpolation": self.interpolation}


def timm_data_config(model: torch.nn.Module, augment: AugmentConfig, default_size: int) -> dict:
    """timm's resolve_data_config with discl's settings over the model's own pretrained config."""
    import timm.data

    size = int(augment.input_size or default_size)
    overrides: dict = {"input_size": (3, size, size), "crop_pct": augment.crop_pct, "interpolation": augment.interpolation}
    if augment.mean is not None:
        overrides["mean"] = tuple(augment.mean)
    if augment.std is not None:
        overrides["std"] = tuple(augment.std)
    return timm.data.resolve_data_config(overrides, model=model)


def classifier_transforms(model: torch.nn.Module, augment: AugmentConfig, default_size: int) -> Transforms:
    """timm.data.create_transform: RandomResizedCrop + flip (+ colour jitter / RandAugment) for training,
    resize by crop_pct + centre crop for evaluation, with the model's mean/std unless overridden."""
    from timm.data import create_transform

    cfg = timm_data_config(model, augment, default_size)
    common = {"input_size": cfg["input_size"], "interpolation": cfg["interpolation"], "mean": cfg["mean"], "std": cfg["std"]}
    # (scale and ratio are [low, high] pairs, as the config checks)
    train = create_transform(**common, is_training=True, scale=(augment.scale[0], augment.scale[1]),
                             ratio=(augment.ratio[0], augment.ratio[1]), hflip=augment.hflip, vflip=0.0,
                             # timm's annotation leaves out None, which it takes as "no colour jitter"
                             color_jitter=augment.color_jitter,  # type: ignore[arg-type]
                             auto_augment=augment.auto_augment)
    evaluation = create_transform(**common, is_training=False, crop_pct=cfg["crop_pct"])
    return Transforms(train, evaluation, int(cfg["input_size"][-1]), tuple(cfg["mean"]), tuple(cfg["std"]),
                      float(cfg["crop_pct"]), str(cfg["interpolation"]))


def saved_classifier_transforms(meta: dict) -> Transforms:
    """The evaluation transform a saved classifier was trained for (its model.json), for eval and mining."""
    from timm.data import create_transform

    size, mean, std = int(meta["input_size"]), tuple(meta["mean"]), tuple(meta["std"])
    evaluation = create_transform(input_size=size, is_training=False, crop_pct=meta["crop_pct"],
                                  interpolation=meta["interpolation"], mean=mean, std=std)
    return Transforms(evaluation, evaluation, size, mean, std, float(meta["crop_pct"]), str(meta["interpolation"]))


def clip_transforms(model: torch.nn.Module) -> Transforms:
    """open_clip's own preprocessing of the model: RandomResizedCrop (scale 0.9-1) for training,
    resize + centre crop for evaluation, CLIP's mean/std (what FLYP trains with)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    visual: Any = model.visual  # open_clip's image tower: preprocess_cfg / image_size are set at run time
    cfg = PreprocessCfg(**(getattr(visual, "preprocess_cfg", None) or {"size": visual.image_size}))
    size = cfg.size if isinstance(cfg.size, int) else int(max(cfg.size))
    return Transforms(image_transform_v2(cfg, is_train=True), image_transform_v2(cfg, is_train=False), size,
                      tuple(cfg.mean), tuple(cfg.std), 1.0, str(cfg.interpolation))
