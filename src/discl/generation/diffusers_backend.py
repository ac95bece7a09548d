"""The Stable Diffusion families' adapter (SD 1.x/2.x, SDXL, the SDXL refiner; generation/families/stable_diffusion.py
registers it) behind the Generator protocol.

The pipeline's own ``__call__`` redoes work on every call that a spectrum shares
across many outputs: it re-encodes the same prompt, VAE-encodes the same source
for every strength and seed, and rebuilds its inputs. This backend keeps the
pipeline's parts and arithmetic but runs its own denoising loop with:

- each prompt encoded once (cached), and
- each source VAE-encoded once (cached posterior; the per-output latent sample
  ``mean + std * eps`` is drawn from that output's generator, as the pipeline does),

so that, for the same per-output ``torch.Generator`` seeds, it draws exactly the
random numbers the pipeline draws and its images match a one-image pipeline call
up to floating-point reordering (see docs/generation.md for the tolerance).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.utils import logging as diffusers_logging
from diffusers.utils.torch_utils import randn_tensor

from .base import check_request
from .families.base import LevelsMixin
from .levels import sigma_of_alpha_bar
from .sources import floor_to_multiple


@contextmanager
def _diffusers_errors_only():
    previous = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(previous)


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: scheduler name -> diffusers class name; "default" keeps the model's own scheduler.
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
}


def working_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    """(width, height) rounded down to the multiple the VAE and UNet need, as diffusers' image processor
    rounds (480x270 -> 480x264 at multiple 8); at least one multiple."""
    return floor_to_multiple(width, height, multiple)


@dataclass
class DiffusersOptions:
    steps: int = 50
    negative_prompt: str = ""
    resize: tuple[int, int] | None = None  # (width, height) before rounding down; None keeps the input size
    aesthetic_score: float = 6.0  # SDXL refiner conditioning (diffusers' defaults)
    negative_aesthetic_score: float = 2.5
    cache_size: int = 4096  # sources whose VAE posterior is kept
    vae_batch_size: int = 4  # images decoded per VAE call: bounds the decoder's memory at large sizes
    level_scale: str = "strength"  # what a level means: the pipeline's strength, or SD's noise at it (levels.py)


class PipelineImg2Img(LevelsMixin):
    """What every diffusers family's generator shares: its options checked, the pipeline's device, the working
    size (rounded down to the family's multiple) and the source images resized to it. Subclasses set ``pipe``,
    ``options`` and ``multiple`` and call :meth:`_check_options`."""

    pipe: Any
    options: DiffusersOptions
    multiple: int

    def _check_options(self) -> None:
        if self.options.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.options.steps}")
        if self.options.vae_batch_size < 1:
            raise ValueError(f"vae_batch_size must be >= 1, got {self.options.vae_batch_size}")

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    @property
    def steps(self) -> int:
        return self.options.steps

    @property
    def level_scale(self) -> str:
        return self.options.level_scale

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) the model works at for an input of this size."""
        w, h = self.options.resize or (width, height)
        w, h = working_size(w, h, self.multiple)
        return h, w

    def _prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        x = images.float() / 255.0
        size = self.size_for(*images.shape[-2:])
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        return x


class DiffusersImg2Img(PipelineImg2Img):
    """Generator protocol over a ``StableDiffusionImg2ImgPipeline`` or ``StableDiffusionXLImg2ImgPipeline``."""

    def __init__(self, pipe, name: str, options: DiffusersOptions | None = None):
        from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline

        from .families import family_of

        if not isinstance(pipe, (StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline)):
            raise ValueError(
                f"{name}: {type(pipe).__name__} is not a Stable Diffusion (1.x/2.x/XL) img2img pipeline"
            )
        self.pipe = pipe
        self.name = name
        self.options = options or DiffusersOptions()
        self.entry = family_of(pipe, name)
        self.is_xl = isinstance(pipe, StableDiffusionXLImg2ImgPipeline)
        self.multiple = pipe.vae_scale_factor * self.entry.latent_multiple
        self._prompts: OrderedDict[str, tuple] = OrderedDict()
        self._posteriors: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._check_options()

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.unet.dtype

    # levels (families/base.py): the pipeline denoises int(steps * strength) steps
    def start_index(self, strength: float) -> int:
        return self.steps - min(int(self.steps * strength), self.steps)

    def strength_at(self, index: int) -> float:
        return min(1.0, (self.steps - index + 0.5) / self.steps)

    def start_sigmas(self, size: tuple[int, int]) -> list[float]:
        scheduler = self.pipe.scheduler.__class__.from_config(self.pipe.scheduler.config)
        scheduler.set_timesteps(self.steps)
        alphas = scheduler.alphas_cumprod
        starts = [scheduler.timesteps[k * scheduler.order] for k in range(self.steps)]  # as _timesteps starts
        return [sigma_of_alpha_bar(float(alphas[int(round(float(t)))])) for t in starts]

    # step 2: prompts, each encoded once, alone (so its embedding never depends on a batch)
    @torch.no_grad()
    def _encode_prompt(self, prompt: str, guided: bool) -> tuple:
        key = f"{guided}\x1f{prompt}"
        if key not in self._prompts:
            negative = self.options.negative_prompt or None
            if self.is_xl:
                out = self.pipe.encode_prompt(
                    prompt, device=self.device, num_images_per_prompt=1,
                    do_classifier_free_guidance=guided, negative_prompt=negative,
                )
            else:
                out = self.pipe.encode_prompt(prompt, self.device, 1, guided, negative)
            self._prompts[key] = out
            while len(self._prompts) > self.options.cache_size:
                self._prompts.popitem(last=False)
        return self._prompts[key]

    # step 3: sources, each VAE-encoded once, alone; the posterior is reused for every strength and seed
    @torch.no_grad()
    def _posterior(self, key: str, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if key not in self._posteriors:
            vae = self._vae()
            x = (image[None] * 2 - 1).to(self.device, dtype=vae.dtype)
            dist = vae.encode(x).latent_dist
            self._posteriors[key] = (dist.mean, dist.std)
            while len(self._posteriors) > self.options.cache_size:
                self._posteriors.popitem(last=False)
        return self._posteriors[key]

    @staticmethod
    def _source_key(image: torch.Tensor, size: tuple[int, int]) -> str:
        """Identifies a source by its uint8 pixels (cheaper to hash than the resized floats) and working size."""
        return hashlib.sha1(image.contiguous().numpy().tobytes() + repr((tuple(image.shape), size)).encode()).hexdigest()

    def _init_latents(self, sources: torch.Tensor, images: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        vae = self.pipe.vae
        samples = []
        size = (images.shape[-2], images.shape[-1])
        for source, image, gen in zip(sources, images, generators):
            mean, std = self._posterior(self._source_key(source, size), image)
            eps = randn_tensor(mean.shape, generator=gen, device=mean.device, dtype=mean.dtype)
            samples.append(mean + std * eps)
        latents = torch.cat(samples).to(self.dtype)
        mean_c, std_c = self._latent_stats(latents)
        if mean_c is not None:
            return (latents - mean_c) * vae.config.scaling_factor / std_c
        return vae.config.scaling_factor * latents

    def _latent_stats(self, like: torch.Tensor):
        cfg = self.pipe.vae.config
        if getattr(cfg, "latents_mean", None) is not None and getattr(cfg, "latents_std", None) is not None:
            mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1).to(like.device, like.dtype)
            std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1).to(like.device, like.dtype)
            return mean, std
        return None, None

    def _timesteps(self, scheduler, strength: float) -> torch.Tensor:
        steps = self.options.steps
        scheduler.set_timesteps(steps, device=self.device)
        init = min(int(steps * strength), steps)
        if init < 1:
            raise ValueError(f"strength {strength} x {steps} steps leaves no denoising step; raise steps or strength")
        start = (steps - init) * scheduler.order
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        return scheduler.timesteps[start:]

    def _conditioning(self, prompts: Sequence[str], guided: bool, size: tuple[int, int]):
        encoded = [self._encode_prompt(p, guided) for p in prompts]
        embeds = torch.cat([e[0] for e in encoded])
        if guided:
            embeds = torch.cat([torch.cat([e[1] for e in encoded]), embeds])
        if not self.is_xl:
            return embeds, None
        pooled = torch.cat([e[2] for e in encoded])
        if guided:
            pooled = torch.cat([torch.cat([e[3] for e in encoded]), pooled])
        o = self.options
        time_ids, neg_time_ids = self.pipe._get_add_time_ids(
            size, (0, 0), size, o.aesthetic_score, o.negative_aesthetic_score, size, (0, 0), size,
            dtype=embeds.dtype, text_encoder_projection_dim=int(pooled.shape[-1]),
        )
        time_ids = time_ids.repeat(len(prompts), 1)
        if guided:
            time_ids = torch.cat([neg_time_ids.repeat(len(prompts), 1), time_ids])
        return embeds, {"text_embeds": pooled.to(self.device), "time_ids": time_ids.to(self.device)}

    def _vae(self):
        """The VAE; in fp32 if it overflows in fp16 (its config's ``force_upcast``), as the pipelines
        upcast it. Cast once and kept there, instead of back and forth on every call."""
        vae = self.pipe.vae
        if vae.config.force_upcast and vae.dtype == torch.float16:
            with _diffusers_errors_only():  # diffusers warns about any dtype cast after loading
                vae.to(dtype=torch.float32)
        return vae

    @torch.no_grad()
    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self._vae()
        latents = latents.to(vae.dtype)
        mean, std = self._latent_stats(latents)
        latents = latents * std / vae.config.scaling_factor + mean if mean is not None else latents / vae.config.scaling_factor
        step = self.options.vae_batch_size
        image = torch.cat([vae.decode(latents[i : i + step], return_dict=False)[0] for i in range(0, len(latents), step)])
        # as the pipeline's postprocess to numpy, then x255 and rounded
        return ((image.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).cpu()

    @torch.no_grad()
    def img2img(
        self,
        images: torch.Tensor,
        labels: Sequence[int],
        prompts: Sequence[str],
        strength: float,
        text_guidance: float,
        noise_seeds: Sequence[int],
    ) -> torch.Tensor:
        check_request(strength, images=images, prompts=prompts, noise_seeds=noise_seeds)
        pipe = self.pipe
        x = self._prepare_images(images)
        size = (x.shape[-2], x.shape[-1])
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in noise_seeds]
        guided = text_guidance > 1.0  # as the pipelines: no unconditional pass at guidance <= 1
        scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config)
        timesteps = self._timesteps(scheduler, self.pipeline_strength(strength, size))
        latents = self._init_latents(images, x, generators)
        noise = randn_tensor(latents.shape, generator=generators, device=self.device, dtype=self.dtype)
        latents = scheduler.add_noise(latents, noise, timesteps[:1].repeat(len(latents)))
        embeds, added = self._conditioning(prompts, guided, size)
        step_kwargs = pipe.prepare_extra_step_kwargs(generators, 0.0)
        for t in timesteps:
            model_in = torch.cat([latents] * 2) if guided else latents
            model_in = scheduler.scale_model_input(model_in, t)
            pred = pipe.unet(model_in, t, encoder_hidden_states=embeds, added_cond_kwargs=added, return_dict=False)[0]
            if guided:
                uncond, cond = pred.chunk(2)
                pred = uncond + text_guidance * (cond - uncond)
            latents = scheduler.step(pred, t, latents, **step_kwargs, return_dict=False)[0]
        return self._decode(latents)

    def reference_call(self, images: torch.Tensor, prompt: str, strength: float, text_guidance: float, noise_seed: int) -> torch.Tensor:
        """What the reference code does: one plain pipeline call for one output (batch 1). For benchmarks and tests."""
        x = self._prepare_images(images)
        strength = self.pipeline_strength(strength, (x.shape[-2], x.shape[-1]))
        kwargs = {"aesthetic_score": self.options.aesthetic_score, "negative_aesthetic_score": self.options.negative_aesthetic_score} if self.is_xl else {}
        with _diffusers_errors_only():  # diffusers warns on every dtype cast, and the SDXL pipeline casts its VAE per call
            self.pipe.vae.to(dtype=self.dtype)  # the pipeline upcasts it itself where it does so
            out = self.pipe(
                prompt=prompt, image=x, strength=strength, num_inference_steps=self.options.steps,
                guidance_scale=text_guidance, negative_prompt=self.options.negative_prompt or None,
                generator=[torch.Generator("cpu").manual_seed(int(noise_seed))], output_type="pt", **kwargs,
            ).images
        return (out.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
