"""The generator interface: image-guided (img2img) generation of a batch at one strength."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch


class Generator(Protocol):
    #: Recorded with every image, so a table says which model made it.
    name: str

    def img2img(
        self,
        images: torch.Tensor,
        labels: Sequence[int],
        prompts: Sequence[str],
        strength: float,
        text_guidance: float,
        noise_seeds: Sequence[int],
    ) -> torch.Tensor:
        """Noise ``images`` (uint8, (B, 3, H, W)) to ``strength`` and denoise them towards their
        class (``labels`` for class-conditioned models, ``prompts`` for text-conditioned ones)
        with classifier-free guidance ``text_guidance``. Output i depends only on input i and
        ``noise_seeds[i]``, never on the rest of the batch. Returns uint8 (B, 3, H, W)."""
        ...
