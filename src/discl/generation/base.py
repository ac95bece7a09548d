"""The generator interface: image-guided (img2img) generation of a batch at one strength."""

from __future__ import annotations

from collections.abc import Sequence, Sized
from typing import Protocol

import torch


def check_request(strength: float, **per_output: Sized) -> None:
    """The checks every backend makes: a strength in (0, 1] and one entry per output in each list."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must lie in (0, 1], got {strength}")
    if len({len(v) for v in per_output.values()}) > 1:
        raise ValueError(f"{', '.join(per_output)} must have one entry per output")


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
