"""The scorer interface (CLIP-style image and text embeddings) and its open_clip implementation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F


class Scorer(Protocol):
    name: str

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> L2-normalised float (N, D)."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """N strings -> L2-normalised float (N, D)."""
        ...


class OpenClipScorer:
    """Any open_clip model. Preprocessing is done on batched tensors (resize + normalise),
    which is much cheaper than PIL transforms image by image."""

    def __init__(self, model: torch.nn.Module, tokenizer, name: str, batch_size: int = 256):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = cfg.get("size", getattr(model.visual, "image_size", 224))
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))).view(1, 3, 1, 1)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        out = [
            self.model.encode_image(self.preprocess(images[i : i + self.batch_size]), normalize=True)
            for i in range(0, len(images), self.batch_size)
        ]
        return torch.cat(out) if out else torch.zeros((0, 0))

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        texts = list(texts)
        out = [
            self.model.encode_text(self.tokenizer(texts[i : i + self.batch_size]), normalize=True)
            for i in range(0, len(texts), self.batch_size)
        ]
        return torch.cat(out) if out else torch.zeros((0, 0))


def zero_shot_predict(scorer: Scorer, images: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
    """Index of the caption closest to each image."""
    return (scorer.embed_images(images) @ scorer.embed_texts(captions).T).argmax(-1)
