"""Task classifiers from timm and their saved form (discl/artefacts.py: model.safetensors + discl_model.json)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from ..artefacts import META, has_model, load_weights, read_meta, save_pretrained
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
    """Weights, and in the metadata what the model is and how images were fed to it (size, crop, mean/std);
    atomic as a whole (discl/artefacts.py)."""
    config = {"model": name, "num_classes": num_classes, "transform": transforms.describe(), **(extra or {})}
    save_pretrained(folder, "classifier", model.state_dict(), config, weights="model.safetensors")


def load_classifier(folder: Path) -> tuple[torch.nn.Module, dict, Transforms]:
    """(model in eval mode, its saved config, its evaluation transform)."""
    folder = Path(folder)
    if not has_model(folder, "classifier"):
        raise FileNotFoundError(f"no classifier in {folder}: run the stage that trains it first")
    meta = read_meta(folder)
    config = meta["config"]
    if "transform" not in config:
        raise ValueError(f"{folder / meta.get('legacy', META)} was written by an older discl that did not record the "
                         "model's input transform; train the model again")
    model = create_classifier(config["model"], config["num_classes"])
    model.load_state_dict(load_weights(folder, meta))
    return model.eval(), config, saved_classifier_transforms(config["transform"])
