"""The image-to-image backends generate.backend names (discl.registry.generators). Each builder takes
(the generate section, the run directory's root) and returns a Generator (generation/base.py);
``recorded_as`` gives, from the settings alone, the name recorded with every image (and mixed into its noise seed);
``settings`` are the generate.* keys its images depend on (part of every image's fingerprint).
Nothing heavy is imported until a backend is built."""

from __future__ import annotations

from pathlib import Path

from ..registry import generators


def _pixel_diffusion_name(cfg) -> str:
    return f"pixel-diffusion/{cfg.sample_size}px-{cfg.channels}ch"


def _diffusers_name(cfg) -> str:
    if not cfg.model:
        raise ValueError("generate.model must name a diffusers model (alias, hub id or folder) for backend 'diffusers'")
    return f"diffusers/{cfg.model}"


@generators.register("pixel-diffusion", trained_in_run=True, recorded_as=_pixel_diffusion_name,
                     settings=("sample_size", "channels", "train_steps", "train_batch_size", "train_lr", "train_seed"))
def pixel_diffusion(cfg, run_root: Path | None):
    """A small class-conditional pixel-space diffusion model, trained in the run directory (the demo's)."""
    from ..rundir import RunDir
    from .pixel_diffusion import PixelDiffusionGenerator

    if run_root is None:
        raise ValueError("the pixel-diffusion generator lives in a run directory; pass run_root")
    return PixelDiffusionGenerator.load(RunDir(run_root).generator_model, cfg.inference_steps)


@generators.register("diffusers", recorded_as=_diffusers_name, prompts=True,
                     settings=("model", "dtype", "scheduler", "negative_prompt", "aesthetic_score", "negative_aesthetic_score",
                               "level_scale", "lora", "vae_tiling"))
def diffusers_img2img(cfg, run_root: Path | None):
    """A diffusers image-to-image model of a family discl knows (discl.registry.families): an alias (sd15, sd21,
    sdxl, sdxl-refiner), a hub id or a local folder."""
    from .factory import create_diffusers_generator

    return create_diffusers_generator(cfg)
