"""A tiny CLIP for the offline demo: an open_clip model from a custom config, no pretrained
weights, trained contrastively (open_clip's ClipLoss) on image/caption pairs in-process."""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch
from tqdm.auto import tqdm

from ..artefacts import load_weights, model_kind, read_meta, save_pretrained
from ..atomic import atomic_write_text
from .base import OpenClipScorer

MODEL_NAME = "discl-tiny-clip"
#: The architecture file beside the weights: open_clip finds custom architectures by file name.
ARCHITECTURE = f"{MODEL_NAME}.json"
# The architecture each tiny CLIP was built from (by its module), so that save writes the same file.
_architectures: weakref.WeakKeyDictionary[torch.nn.Module, dict] = weakref.WeakKeyDictionary()


def tiny_clip_config(image_size: int = 16, context_length: int = 16) -> dict:
    return {
        "embed_dim": 32,
        "vision_cfg": {"image_size": image_size, "layers": 2, "width": 64, "patch_size": max(1, image_size // 4), "head_width": 32},
        "text_cfg": {"context_length": context_length, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }


def _register(config: dict, folder: Path) -> None:
    """open_clip finds custom architectures by file name: ``<folder>/<MODEL_NAME>.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ARCHITECTURE
    atomic_write_text(path, json.dumps(config, indent=2))
    open_clip.add_model_config(path)


class _NoRandomInitWarning(logging.Filter):
    """open_clip warns that a model without pretrained weights is random; here that is intended
    (it is trained next, or its saved weights are loaded), so the warning would only mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def create_tiny_clip(config: dict, folder: Path, seed: int = 0) -> OpenClipScorer:
    _register(config, folder)
    return _create(config, seed)


def _create(config: dict, seed: int) -> OpenClipScorer:
    """The registered architecture at the random weights of ``seed`` (also when loading, as before: the global
    torch seed a load leaves behind is part of what later steps of a run see)."""
    torch.manual_seed(seed)
    quiet = _NoRandomInitWarning()
    logging.getLogger().addFilter(quiet)
    try:
        model = open_clip.create_model(MODEL_NAME, pretrained=None)
    finally:
        logging.getLogger().removeFilter(quiet)
    _architectures[model] = config
    return OpenClipScorer(model, open_clip.get_tokenizer(MODEL_NAME), MODEL_NAME)


def architecture_files(scorer: OpenClipScorer) -> dict[str, bytes]:
    """The architecture file of a tiny CLIP (name -> bytes), saved beside any weights of that architecture."""
    return {ARCHITECTURE: json.dumps(_architectures[scorer.model], indent=2).encode()}


def architecture_from(folder: Path) -> OpenClipScorer:
    """A tiny CLIP of the architecture saved in ``folder``, at random weights."""
    path = Path(folder) / ARCHITECTURE
    if not path.exists():
        raise FileNotFoundError(f"no tiny CLIP architecture ({ARCHITECTURE}) in {folder}")
    config = json.loads(path.read_text())
    open_clip.add_model_config(path)
    return _create(config, 0)


def save_tiny_clip(scorer: OpenClipScorer, folder: Path, extra: dict | None = None) -> None:
    """Weights, the architecture file and ``extra`` (what it was trained with) in the metadata (discl/artefacts.py)."""
    config = {"open_clip_model": MODEL_NAME, "architecture": _architectures[scorer.model], **(extra or {})}
    save_pretrained(folder, "tiny-clip", scorer.model.state_dict(), config, weights="open_clip_model.safetensors",
                    files=architecture_files(scorer))


def load_tiny_clip(folder: Path) -> OpenClipScorer:
    """The tiny CLIP saved in ``folder``: the demo's scorer, or a FLYP fine-tune of it (the same architecture)."""
    folder = Path(folder)
    kind = model_kind(folder)
    if not (kind == "tiny-clip" or (kind == "flyp" and read_meta(folder)["config"].get("model") == "demo")):
        raise FileNotFoundError(f"no tiny CLIP in {folder}: run `discl score` to train it")
    scorer = architecture_from(folder)
    scorer.model.load_state_dict(load_weights(folder))
    scorer.model.eval()
    return scorer


def random_shift(images: torch.Tensor, generator: torch.Generator, pad: int = 1) -> torch.Tensor:
    """Translate each image by up to ``pad`` pixels (zero fill): cheap augmentation that keeps the class."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def _one_cycle(optimizer: torch.optim.Optimizer, lr: float, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle schedule with 10% warm-up. OneCycleLR divides by each phase's length in steps, so very
    short runs get a warm-up of at least one step, and runs of 1-2 steps a constant rate."""
    if steps < 3:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    pct = 0.1 if 0.1 * steps > 1 else 2 / steps
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=pct)


def train_tiny_clip(
    scorer: OpenClipScorer,
    images: torch.Tensor,
    captions: Sequence[str],
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> OpenClipScorer:
    """Contrastive training on (image, caption) pairs; ``captions[i]`` describes ``images[i]``."""
    model = scorer.model.train()
    generator = torch.Generator().manual_seed(seed)
    tokens = scorer.tokenizer(list(captions))
    loss_fn = open_clip.ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    schedule = _one_cycle(optimizer, lr, steps)
    for _ in tqdm(range(steps), desc="train CLIP", disable=not progress, leave=False):
        idx = torch.randperm(len(images), generator=generator)[:batch_size]
        pixels = scorer.preprocess(random_shift(images[idx], generator))
        image_features = model.encode_image(pixels, normalize=True)
        text_features = model.encode_text(tokens[idx], normalize=True)
        loss = loss_fn(image_features, text_features, model.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    return scorer
