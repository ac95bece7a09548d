"""The diffusers model families discl runs, one module each, registered in discl.registry.families with
the capabilities they declare (latent channels, size multiple, guidance kind, schedule kind, minimum
steps). The factory detects a loaded pipeline's family here; the engine and the stages read only the
declarations, never a family's name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ...registry import Entry, families


class FlowHooks:
    """What a flow-matching family adds to the shared engine (families/flow.py): three small functions over
    its pipeline's public parts. Family modules subclass this and import PyTorch only inside them, so that
    registering stays light."""

    def encode(self, pipe, prompt: str, guided: bool, negative_prompt: str | None) -> dict:
        """The pipeline's embedding keyword arguments for one prompt (batch 1): prompt_embeds, pooled, negatives."""
        raise NotImplementedError

    def set_timesteps(self, pipe, scheduler, steps: int, size: tuple[int, int]) -> None:
        """``scheduler.set_timesteps`` as the pipeline calls it at working size (height, width)."""
        raise NotImplementedError

    def unpack(self, pipe, latents, size: tuple[int, int]):
        """The latents the pipeline returns (output_type="latent") as the VAE's (B, C, h, w)."""
        return latents


def flow_family(hooks: FlowHooks) -> Callable[[Any, str, Any], Any]:
    """The builder a flow-matching family registers: the shared engine with the family's hooks."""

    def build(pipe, name, options):
        from .flow import FlowImg2Img

        return FlowImg2Img(pipe, name, options, hooks)

    build.__module__ = type(hooks).__module__  # listed with (and in the order of) the family's module
    return build


def known() -> str:
    """The families and their pipelines, as error messages list them."""
    return "; ".join(f"{e.name} ({', '.join(e.pipelines)})" for e in families.entries())


def family_of(pipe, name: str) -> Entry:
    """The registered family that runs ``pipe``, or a one-line error naming its class and the known families."""
    cls = type(pipe).__name__
    for entry in families.entries():
        if cls in entry.pipelines and (entry.detect is None or entry.detect(pipe)):
            return entry
    raise ValueError(f"{name}: its pipeline {cls} is of no family discl knows; known families: {known()}")


def family_of_folder(folder: Path) -> Entry | None:
    """The family of a local pipeline folder, from its model_index.json (and its transformer's config)
    without loading any weights, for the dry run; None when it is not a folder or no family claims it."""
    try:
        index = json.loads((Path(folder) / "model_index.json").read_text())
        transformer = Path(folder) / "transformer" / "config.json"
        config = json.loads(transformer.read_text()) if transformer.exists() else {}
    except (OSError, ValueError):
        return None
    from diffusers.pipelines.auto_pipeline import AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, AUTO_TEXT2IMAGE_PIPELINES_MAPPING

    name = index.get("_class_name")
    for key, cls in AUTO_TEXT2IMAGE_PIPELINES_MAPPING.items():  # a text-to-image folder loads as its img2img sibling
        if cls.__name__ == name and key in AUTO_IMAGE2IMAGE_PIPELINES_MAPPING:
            name = AUTO_IMAGE2IMAGE_PIPELINES_MAPPING[key].__name__
    stand_in = SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace(**config)))  # what detect() reads
    for entry in families.entries():
        if name in entry.pipelines and (entry.detect is None or entry.detect(stand_in)):
            return entry
    return None
