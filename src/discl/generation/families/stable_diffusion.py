"""Stable Diffusion 1.x/2.x and SDXL (base and refiner): discl drives the UNet itself
(generation/diffusers_backend.py), batching outputs while drawing exactly a one-image pipeline call's numbers."""

from __future__ import annotations

from ...registry import families


def _build(pipe, name, options):
    from ..diffusers_backend import DiffusersImg2Img

    return DiffusersImg2Img(pipe, name, options)


families.register("sd", summary="Stable Diffusion 1.x/2.x: 4-channel latents, classifier-free guidance, discrete schedule",
                  pipelines=("StableDiffusionImg2ImgPipeline",))(_build)
families.register("sdxl", summary="SDXL base and refiner, SDXL-Turbo/Lightning: 4-channel latents, classifier-free guidance, "
                  "discrete schedule", pipelines=("StableDiffusionXLImg2ImgPipeline",))(_build)
