"""Task classifiers from timm and their saved form (safetensors + model.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file, save_file

from ..atomic import fsync_replace
from . import models  # noqa: F401  (registers discl's extra timm models, e.g. resnet10)
from .transforms import Transforms, saved_classifier_transforms


def create_classifier(name: str, num_classes: int, seed: int = 0, pretrained: str | None = None) -> torch.nn.Module:
    """A timm model by name. ``pretrained``: None (random init), a local weights file (.safetensors, .pth,
    .bin; loaded without pickle, the classifier head re-initialised if its size differs), or a hub id
    ("hf-hub:org/name" or a timm pretrained tag like "resnet50.a1_in1k")."""
    torch.manual_seed(seed)
    if pretrained is None:
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    path = Path(pretrained).expanduser()
    if path.exists():
        from safetensors import SafetensorError

        try:
            return timm.create_model(name, pretrained=True, num_classes=num_classes, pretrained_cfg_overlay={"file": str(path)})
        except (RuntimeError, SafetensorError) as err:  # timm re-raises torch's weights_only refusal as RuntimeError
            # torch's weights_only refusal of pickled objects is a RuntimeError several lines long.
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            # torch's advice to retry with weights_only=False is not one discl takes.
            first = ". ".join(s for s in first.split(". ") if "weights_only=False" not in s and "fallback" not in s)
            raise ValueError(f"cannot load the weights {path} into {name}: {first} (discl reads .pth/.bin files "
                             "without unpickling objects; save a plain state dict or .safetensors)") from None
    if pretrained.endswith((".safetensors", ".pth", ".pt", ".bin")):
        raise FileNotFoundError(f"pretrained weights file {pretrained} does not exist")
    return timm.create_model(pretrained, pretrained=True, num_classes=num_classes)


def save_classifier(model: torch.nn.Module, folder: Path, name: str, num_classes: int, transforms: Transforms,
                    extra: dict | None = None) -> None:
    """Weights, and in model.json what the model is and how images were fed to it (size, crop, mean/std)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"model": name, "num_classes": num_classes, "transform": transforms.describe(), **(extra or {})}
    # Both files are written in full beside the old ones first: a full disk leaves the old model as it
    # was. Then model.json goes, so that a crash between the two renames leaves no model rather than
    # new weights described by old settings.
    weights, info = folder / f".model.safetensors.{os.getpid()}.tmp", folder / f".model.json.{os.getpid()}.tmp"
    try:
        save_file(state, str(weights))
        info.write_text(json.dumps(meta, indent=2))
    except BaseException:
        weights.unlink(missing_ok=True)
        info.unlink(missing_ok=True)
        raise
    (folder / "model.json").unlink(missing_ok=True)
    fsync_replace(weights, folder / "model.safetensors")
    fsync_replace(info, folder / "model.json")


def load_classifier(folder: Path) -> tuple[torch.nn.Module, dict, Transforms]:
    folder = Path(folder)
    meta_path = folder / "model.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no classifier in {folder}: run the stage that trains it first")
    meta = json.loads(meta_path.read_text())
    if "transform" not in meta:
        raise ValueError(f"{meta_path} was written by an older discl that did not record the model's input "
                         "transform; train the model again")
    model = create_classifier(meta["model"], meta["num_classes"])
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval(), meta, saved_classifier_transforms(meta["transform"])
