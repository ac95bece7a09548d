"""``create_scorer``: a CLIP scorer from a name, a hub id or a local path, through the registered
backends (scoring/backends.py).

- ``"ViT-B-32/openai"`` or ``("ViT-B-32", pretrained="openai")``: open_clip, model name + pretrained tag;
  ``pretrained`` may also be a local checkpoint file (``.pt``/``.bin``/``.safetensors``).
- ``"openai/clip-vit-base-patch32"`` or ``"hf:<id>"``: transformers ``CLIPModel`` from the hub.
- a local folder with ``config.json``: transformers ``CLIPModel.save_pretrained`` output.
- a local folder holding a saved tiny CLIP (its discl_model.json says kind ``tiny-clip``; or, saved by an
  earlier version, it has ``discl-tiny-clip.json``): the demo's tiny CLIP (see ``tiny_clip.py``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

from ..registry import scorers
from .backends import open_clip_names


def create_scorer(name_or_path: str | None, pretrained: str | None = None, backend: str = "auto",
                  batch_size: int = 256, device: str | None = "cpu", precision: str = "fp32"):
    """A scorer from the backend score.backend names (discl.registry.scorers), or with "auto" from the first
    backend that recognises ``name_or_path``."""
    if not name_or_path:
        raise ValueError("no scorer model given (score.model)")
    opts = {"batch_size": batch_size, "device": device, "precision": precision}
    if backend != "auto":
        return scorers.get(backend).target(str(name_or_path), pretrained, **opts)
    for entry in scorers.entries():
        if entry.detect is not None and entry.detect(str(name_or_path)):
            return entry.target(str(name_or_path), pretrained, **opts)
    raise ValueError(
        f"cannot make a scorer from {name_or_path!r}: not an open_clip model name (e.g. 'ViT-B-32/openai'), "
        "a transformers hub id (e.g. 'openai/clip-vit-base-patch32') or a folder with a saved model"
    )


def split_open_clip(name: str, pretrained: str | None) -> tuple[str, str | None]:
    """"ViT-B-32/openai" -> ("ViT-B-32", "openai") when no pretrained tag is given apart."""
    if pretrained is None and "/" in name:
        head, tail = name.split("/", 1)
        if head in open_clip_names():
            return head, tail
    return name, pretrained


def load_open_clip(model_name: str, pretrained: str | None, **opts):
    import open_clip

    from .base import OpenClipScorer

    if not model_name.startswith("hf-hub:") and model_name not in open_clip_names():
        raise ValueError(f"{model_name!r} is not an open_clip model name (e.g. 'ViT-B-32'; open_clip.list_models() lists them)")
    if pretrained and Path(pretrained).suffix in (".pt", ".pth", ".bin", ".safetensors") and not Path(pretrained).exists():
        raise FileNotFoundError(f"open_clip checkpoint {pretrained} not found")
    # weights_only=True: a checkpoint file is read as tensors, never unpickled into objects.
    try:
        model = open_clip.create_model(model_name, pretrained=pretrained, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "refused"
        raise ValueError(f"cannot read the open_clip checkpoint {pretrained} as plain weights "
                         f"(torch.load with weights_only=True refused it: {first})") from None
    return OpenClipScorer(model, open_clip.get_tokenizer(model_name), f"{model_name}/{pretrained}" if pretrained else model_name, **opts)
