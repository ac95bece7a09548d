"""Generators from a name: an alias, a Hugging Face hub id or a local folder (as ``timm.create_model``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import GeneratorConfig
from .diffusers_backend import DTYPES, SCHEDULERS, DiffusersImg2Img, DiffusersOptions

#: Short names for the usual models; anything else is used as a hub id or folder as it is.
ALIASES = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd21": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-refiner": "stabilityai/stable-diffusion-xl-refiner-1.0",  # the paper's model
}


def resolve_model(model: str) -> str:
    return ALIASES.get(model, model)


def generator_name(cfg: GeneratorConfig) -> str:
    """The name recorded with every image and mixed into its noise seed; known without loading the model."""
    if cfg.backend == "pixel-diffusion":
        return f"pixel-diffusion/{cfg.sample_size}px-{cfg.channels}ch"
    if cfg.backend == "diffusers":
        if not cfg.model:
            raise ValueError("generate.model must name a diffusers model (alias, hub id or folder) for backend 'diffusers'")
        return f"diffusers/{cfg.model}"
    raise ValueError(f"unknown generator backend {cfg.backend!r}; known: ['pixel-diffusion', 'diffusers']")


def load_img2img_pipeline(model: str, dtype: str = "fp32", local_files_only: bool = False):
    """The diffusers img2img pipeline of ``model`` (alias, hub id or local folder)."""
    from diffusers import AutoPipelineForImage2Image

    if dtype not in DTYPES:
        raise ValueError(f"generate.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    source = resolve_model(model)
    local = Path(source).expanduser()
    if local.exists() and not (local / "model_index.json").exists():
        raise FileNotFoundError(f"{local} is not a diffusers pipeline folder: it has no model_index.json")
    return AutoPipelineForImage2Image.from_pretrained(
        str(local) if local.exists() else source,
        dtype=DTYPES[dtype],
        local_files_only=local_files_only or local.exists(),
        safety_checker=None,  # never run by the backend; SDXL pipelines ignore this with a warning
    )


def configure_pipeline(pipe, cfg: GeneratorConfig):
    """Scheduler, attention, device or CPU offload, optional torch.compile."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if cfg.scheduler != "default":
        if cfg.scheduler not in SCHEDULERS:
            raise ValueError(f"generate.scheduler must be 'default' or one of {sorted(SCHEDULERS)}, got {cfg.scheduler!r}")
        import diffusers

        pipe.scheduler = getattr(diffusers, SCHEDULERS[cfg.scheduler]).from_config(pipe.scheduler.config)
    if cfg.attention not in ("sdpa", "eager"):
        raise ValueError(f"generate.attention must be 'sdpa' or 'eager', got {cfg.attention!r}")
    pipe.unet.set_attn_processor(AttnProcessor2_0() if cfg.attention == "sdpa" else AttnProcessor())
    pipe.set_progress_bar_config(disable=True)
    if cfg.cpu_offload:
        pipe.enable_model_cpu_offload(device=cfg.device)
    else:
        pipe.to(cfg.device)
    if cfg.compile:
        pipe.unet = torch.compile(pipe.unet)
    return pipe


def create_diffusers_generator(cfg: GeneratorConfig) -> DiffusersImg2Img:
    if not cfg.model:
        raise ValueError("backend 'diffusers' needs generate.model: an alias (sd15, sd21, sdxl, sdxl-refiner), a hub id or a local pipeline folder")
    pipe = configure_pipeline(load_img2img_pipeline(cfg.model, cfg.dtype, cfg.local_files_only), cfg)
    options = DiffusersOptions(
        steps=cfg.inference_steps,
        negative_prompt=cfg.negative_prompt,
        resize=(cfg.resize[0], cfg.resize[1]) if cfg.resize else None,  # a [width, height] pair (config checks)
        aesthetic_score=cfg.aesthetic_score,
        negative_aesthetic_score=cfg.negative_aesthetic_score,
        vae_batch_size=cfg.vae_batch_size,
    )
    if cfg.resize and len(cfg.resize) != 2:
        raise ValueError(f"generate.resize must be [width, height], got {cfg.resize}")
    return DiffusersImg2Img(pipe, generator_name(cfg), options)


def create_generator(cfg: GeneratorConfig, run_root: Path | None = None):
    """The configured generator. The demo's pixel-diffusion model is loaded from the run directory
    (the `generate` stage trains it first)."""
    if cfg.backend == "diffusers":
        return create_diffusers_generator(cfg)
    if cfg.backend == "pixel-diffusion":
        from .pixel_diffusion import PixelDiffusionGenerator

        if run_root is None:
            raise ValueError("the pixel-diffusion generator lives in a run directory; pass run_root")
        from ..rundir import RunDir

        return PixelDiffusionGenerator.load(RunDir(run_root).generator_model, cfg.inference_steps)
    generator_name(cfg)  # raises the unknown-backend error
