"""Similarity scores of synthetic images and the threshold filter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .filters import ImageSimInBand, TextSimAtLeast, apply_filters


def similarity_table(
    synthetic: pd.DataFrame,
    image_embeddings: torch.Tensor,
    source_embeddings: dict[str, torch.Tensor],
    caption_embeddings: dict[int, torch.Tensor],
) -> pd.DataFrame:
    """text_sim = cos(image, caption of its class); image_sim = cos(image, its real source).
    Each source and each caption is embedded once, however many images refer to it."""
    sources = torch.stack([source_embeddings[s] for s in synthetic["source_id"]])
    captions = torch.stack([caption_embeddings[int(c)] for c in synthetic["label"]])
    out = synthetic[["synthetic_id", "source_id", "label", "image_guidance"]].copy()
    out["text_sim"] = (image_embeddings * captions).sum(-1).numpy().astype(np.float32)
    out["image_sim"] = (image_embeddings * sources).sum(-1).numpy().astype(np.float32)
    return out.reset_index(drop=True)


def apply_thresholds(scores: pd.DataFrame, text_threshold: float, image_threshold: float) -> pd.DataFrame:
    """Mark each image kept or dropped, naming every rule it failed."""
    return apply_filters(scores, [TextSimAtLeast(text_threshold), ImageSimInBand(image_threshold)])
