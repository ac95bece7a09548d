"""Task classifiers from timm, their checkpoints, and batched prediction."""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file, save_file


def create_classifier(name: str, num_classes: int, seed: int = 0, pretrained: str | None = None) -> torch.nn.Module:
    """A timm model by name. ``pretrained``: None (random init), a local weights file (.safetensors, .pth,
    .bin; loaded without pickle, the classifier head re-initialised if its size differs), or a hub id
    ("hf-hub:org/name" or a timm pretrained tag like "resnet50.a1_in1k")."""
    torch.manual_seed(seed)
    if pretrained is None:
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    path = Path(pretrained).expanduser()
    if path.exists():
        return timm.create_model(name, pretrained=True, num_classes=num_classes, pretrained_cfg_overlay={"file": str(path)})
    if pretrained.endswith((".safetensors", ".pth", ".pt", ".bin")):
        raise FileNotFoundError(f"pretrained weights file {pretrained} does not exist")
    return timm.create_model(pretrained, pretrained=True, num_classes=num_classes)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


@torch.no_grad()
def predict_proba(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    out = [model(to_input(images[i : i + batch_size])).softmax(-1) for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros((0, 0))


def save_classifier(model: torch.nn.Module, folder: Path, name: str, num_classes: int, extra: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    meta = {"model": name, "num_classes": num_classes, **(extra or {})}
    (folder / "model.json").write_text(json.dumps(meta, indent=2))


def load_classifier(folder: Path) -> tuple[torch.nn.Module, dict]:
    meta_path = folder / "model.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no classifier in {folder}: run the stage that trains it first")
    meta = json.loads(meta_path.read_text())
    model = create_classifier(meta["model"], meta["num_classes"])
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval(), meta
