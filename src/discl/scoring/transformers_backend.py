"""transformers ``CLIPModel`` as a scorer (e.g. ``openai/clip-vit-base-patch32``, the paper's scorer,
or a local folder written by ``save_pretrained``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .base import BatchedScorer
from .preprocess import OPENAI_MEAN, OPENAI_STD, TensorPreprocess


def _features(out) -> torch.Tensor:
    # transformers 5 returns an output object whose pooler_output is the projected embedding; 4.x a tensor.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class TransformersClipScorer(BatchedScorer):
    #: a transformers CLIPModel (get_image_features / get_text_features would read as tensors
    #: through nn.Module.__getattr__)
    model: Any

    def __init__(self, model, tokenizer, name: str, image_processor=None, batch_size: int = 256,
                 device: str | None = "cpu", precision: str = "fp32"):
        super().__init__(model, tokenizer, name, batch_size, device, precision)
        vision = model.config.vision_config
        size, crop, mean, std = vision.image_size, vision.image_size, OPENAI_MEAN, OPENAI_STD
        if image_processor is not None:
            size = _edge(getattr(image_processor, "size", None), size)
            crop = _edge(getattr(image_processor, "crop_size", None), crop)
            mean = tuple(image_processor.image_mean or mean)
            std = tuple(image_processor.image_std or std)
        # Shortest side resized to `size`, then a centre crop of `crop`: what CLIPImageProcessor does.
        self.transform = TensorPreprocess(crop, mean, std, "shortest")
        self.resize_to = size
        self.max_length = model.config.text_config.max_position_embeddings

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if self.resize_to != self.transform.size[0]:
            # Rare: resize edge differs from the crop; resize first at the processor's size.
            resized = TensorPreprocess(self.resize_to, (0, 0, 0), (1, 1, 1), "shortest")(images)
            images = (resized.clamp(0, 1) * 255).round().to(torch.uint8)
        return self.transform(images, self.device, self.dtype)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixels))

    def text_features(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
        return _features(self.model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))


def _edge(spec, default: int) -> int:
    if spec is None:
        return default
    if isinstance(spec, int):
        return spec
    spec = dict(spec)
    return int(spec.get("shortest_edge") or spec.get("height") or default)


def load_transformers_clip(name_or_path: str, **kwargs) -> TransformersClipScorer:
    """A hub id (needs the network or a filled HF cache) or a local ``save_pretrained`` folder."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    local = Path(name_or_path).is_dir()  # a local folder: never look at the hub
    model = CLIPModel.from_pretrained(name_or_path, local_files_only=local)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local)
    if len(tokenizer) < 3:
        raise ValueError(f"{name_or_path}: its tokenizer has only {len(tokenizer)} tokens; the tokenizer files are missing or broken")
    try:
        processor = CLIPImageProcessor.from_pretrained(name_or_path, local_files_only=local)
    except (OSError, ValueError):
        processor = None  # no preprocessor_config.json: the vision config's size and OpenAI's mean/std
    return TransformersClipScorer(model, tokenizer, str(name_or_path), processor, **kwargs)
