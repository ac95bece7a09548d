"""The scorer interface (CLIP-style image and text embeddings) and its open_clip implementation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from .preprocess import OPENAI_MEAN, OPENAI_STD, TensorPreprocess

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Scorer(Protocol):
    name: str

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> L2-normalised float (N, D)."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """N strings -> L2-normalised float (N, D)."""
        ...


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown scorer precision {precision!r}; known: {list(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("scorer precision fp16 needs a GPU (score.device); use fp32 or bf16 on CPU")
    return PRECISIONS[precision]


def _normalise(x: torch.Tensor) -> torch.Tensor:
    # Normalise in fp32 so half-precision models still give unit vectors.
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class BatchedScorer:
    """What every CLIP backend shares: device and precision, and embedding in batches of
    ``batch_size`` into L2-normalised vectors. A backend says how to preprocess images and how to
    get one batch's image and text features."""

    def __init__(self, model: torch.nn.Module, tokenizer, name: str, batch_size: int = 256,
                 device: str | None = "cpu", precision: str = "fp32"):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(precision, self.device)
        self.model = model.eval().to(self.device, self.dtype)
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def text_features(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        out = [
            _normalise(self.image_features(self.preprocess(images[i : i + self.batch_size]))).cpu()
            for i in range(0, len(images), self.batch_size)
        ]
        return torch.cat(out) if out else torch.zeros((0, 0))

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        texts = list(texts)
        out = [_normalise(self.text_features(texts[i : i + self.batch_size])).cpu() for i in range(0, len(texts), self.batch_size)]
        return torch.cat(out) if out else torch.zeros((0, 0))


class OpenClipScorer(BatchedScorer):
    """Any open_clip model. Preprocessing is done on batched tensors (resize + crop + normalise),
    which is much cheaper than PIL transforms image by image."""

    #: an open_clip model: encode_image, encode_text, logit_scale, visual (open_clip has no type hints,
    #: and through nn.Module.__getattr__ its methods would read as tensors)
    model: Any

    def __init__(self, model: torch.nn.Module, tokenizer, name: str, batch_size: int = 256,
                 device: str | None = "cpu", precision: str = "fp32"):
        super().__init__(model, tokenizer, name, batch_size, device, precision)
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = cfg.get("size", getattr(model.visual, "image_size", 224))
        self.transform = TensorPreprocess(
            size, cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD),
            "squash" if cfg.get("resize_mode") == "squash" else "shortest", cfg.get("interpolation", "bicubic"),
        )
        self.image_size = self.transform.size

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return self.transform(images, self.device, self.dtype)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


def zero_shot_predict(scorer: Scorer, images: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
    """Index of the caption closest to each image."""
    return (scorer.embed_images(images) @ scorer.embed_texts(captions).T).argmax(-1)
