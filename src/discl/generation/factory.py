"""Generators by backend name (generation/backends.py registers them), and the diffusers backend's
pipeline from a name: an alias, a Hugging Face hub id or a local folder (as ``timm.create_model``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import GeneratorConfig
from ..registry import Entry, generators
from .diffusers_backend import DTYPES, SCHEDULERS, DiffusersOptions
from .families import family_of
from .families import known as known_families

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
    return generators.get(cfg.backend).recorded_as(cfg)


def load_img2img_pipeline(model: str, dtype: str = "fp32", local_files_only: bool = False):
    """The diffusers img2img pipeline of ``model`` (alias, hub id or local folder)."""
    from diffusers import AutoPipelineForImage2Image

    if dtype not in DTYPES:
        raise ValueError(f"generate.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    source = resolve_model(model)
    local = Path(source).expanduser()
    if local.exists() and not (local / "model_index.json").exists():
        raise FileNotFoundError(f"{local} is not a diffusers pipeline folder: it has no model_index.json")
    where, offline = (str(local), True) if local.exists() else (source, local_files_only)
    # never run by the backend: Stable Diffusion 1.x/2.x pipelines would load one
    no_checker = {"safety_checker": None} if "safety_checker" in AutoPipelineForImage2Image.load_config(where, local_files_only=offline) else {}
    try:
        return AutoPipelineForImage2Image.from_pretrained(where, dtype=DTYPES[dtype], local_files_only=offline, **no_checker)
    except ValueError as err:
        if "AutoPipeline can't find" not in str(err):
            raise
        cls = _pipeline_class(local) if local.exists() else "its pipeline"
        raise ValueError(f"{model}: {cls} has no image-to-image pipeline in diffusers and is of no family discl knows; "
                         f"known families: {known_families()}") from None


def _pipeline_class(folder: Path) -> str:
    try:
        return str(json.loads((folder / "model_index.json").read_text())["_class_name"])
    except (OSError, ValueError, KeyError):
        return "its pipeline"


def configure_pipeline(pipe, cfg: GeneratorConfig, family: Entry | None = None):
    """Scheduler, attention, LoRA weights, device or CPU offload, memory savers, optional torch.compile;
    by what ``family`` (detected from the pipeline when not given) declares."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    family = family or family_of(pipe, cfg.model or type(pipe).__name__)
    if cfg.scheduler != "default":
        if cfg.scheduler not in SCHEDULERS:
            raise ValueError(f"generate.scheduler must be 'default' or one of {sorted(SCHEDULERS)}, got {cfg.scheduler!r}")
        if family.schedule != "discrete":
            raise ValueError(f"generate.scheduler {cfg.scheduler!r} is a discrete-timestep scheduler; {cfg.model} is a "
                             f"{family.schedule} model (family {family.name}): use 'default' (its own scheduler)")
        import diffusers

        pipe.scheduler = getattr(diffusers, SCHEDULERS[cfg.scheduler]).from_config(pipe.scheduler.config)
    if cfg.attention not in ("sdpa", "eager"):
        raise ValueError(f"generate.attention must be 'sdpa' or 'eager', got {cfg.attention!r}")
    denoiser = getattr(pipe, family.denoiser)
    if family.denoiser == "unet":
        denoiser.set_attn_processor(AttnProcessor2_0() if cfg.attention == "sdpa" else AttnProcessor())
    elif cfg.attention != "sdpa":  # transformers' processors are their own; they use PyTorch's SDPA
        raise ValueError(f"generate.attention {cfg.attention!r}: the {family.name} family runs its own attention (sdpa) only")
    load_loras(pipe, cfg.lora)
    pipe.set_progress_bar_config(disable=True)
    if cfg.vae_tiling:
        pipe.vae.enable_tiling()
    if cfg.cpu_offload:
        pipe.enable_model_cpu_offload(device=cfg.device)
    else:
        pipe.to(cfg.device)
    if cfg.compile:
        setattr(pipe, family.denoiser, torch.compile(denoiser))
    return pipe


def load_loras(pipe, loras) -> None:
    """generate.lora: each {path, scale[, weight_name]} loaded with the pipeline's ``load_lora_weights``
    (a local file or folder, or a hub id) and applied at its scale (peft's adapters)."""
    if not loras:
        return
    if not hasattr(pipe, "load_lora_weights"):
        raise ValueError(f"generate.lora: {type(pipe).__name__} cannot load LoRA weights")
    names = []
    for i, lora in enumerate(loras):
        name = f"lora{i}"
        kwargs = {"weight_name": lora.weight_name} if lora.weight_name else {}
        try:
            pipe.load_lora_weights(lora.path, adapter_name=name, **kwargs)
        except (OSError, ValueError) as err:
            raise ValueError(f"generate.lora[{i}] {lora.path!r}: cannot be loaded as LoRA weights of "
                             f"{type(pipe).__name__}: {str(err).splitlines()[0]}") from None
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[lora.scale for lora in loras])


def create_diffusers_generator(cfg: GeneratorConfig):
    """The registered family's adapter over the pipeline of generate.model."""
    if not cfg.model:
        raise ValueError("backend 'diffusers' needs generate.model: an alias (sd15, sd21, sdxl, sdxl-refiner), a hub id or a local pipeline folder")
    pipe = load_img2img_pipeline(cfg.model, cfg.dtype, cfg.local_files_only)
    family = family_of(pipe, cfg.model)  # before anything reads the pipeline's parts
    pipe = configure_pipeline(pipe, cfg, family)
    options = DiffusersOptions(
        steps=cfg.inference_steps,
        negative_prompt=cfg.negative_prompt,
        resize=(cfg.resize[0], cfg.resize[1]) if cfg.resize else None,  # a [width, height] pair (config checks)
        aesthetic_score=cfg.aesthetic_score,
        negative_aesthetic_score=cfg.negative_aesthetic_score,
        vae_batch_size=cfg.vae_batch_size,
        level_scale=cfg.level_scale,
    )
    if cfg.resize and len(cfg.resize) != 2:
        raise ValueError(f"generate.resize must be [width, height], got {cfg.resize}")
    return family.target(pipe, generator_name(cfg), options)


def create_generator(cfg: GeneratorConfig, run_root: Path | None = None):
    """The generator generate.backend names (discl.registry.generators). A backend trained in the run
    directory (the demo's pixel-diffusion model) is loaded from ``run_root``; the generate stage trains it first."""
    return generators.get(cfg.backend).target(cfg, run_root)
