"""What the flow-matching families (SD3/3.5, FLUX.1) share: a thin layer over the family's own pipeline call.

Per batch (one strength), the pipeline is called once with
- each prompt's embeddings, encoded once per prompt, alone (``prompt_embeds`` and pooled embeddings),
- each source's latents: VAE-encoded once per source (the posterior is cached); the per-output sample
  ``mean + std * eps`` is drawn from that output's generator, as the pipeline's own VAE step draws it, and
  handed over as latents (the pipelines take latent-channel images as they are),
- one CPU ``torch.Generator`` per output, which then draws the output's noise as the pipeline does,

so an output equals a plain one-image pipeline call with that generator, whatever the batch. The pipeline
returns latents; the VAE decodes them in ``vae_batch_size`` chunks."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

import torch
from diffusers.utils.torch_utils import randn_tensor

from ..base import check_request
from ..diffusers_backend import DiffusersOptions, PipelineImg2Img, _diffusers_errors_only
from . import FlowHooks, family_of


class FlowImg2Img(PipelineImg2Img):
    """Generator protocol over a flow-matching img2img pipeline; ``hooks`` (the family's module, a FlowHooks)
    encode prompts, set the schedule as the pipeline does and unpack its latents."""

    def __init__(self, pipe, name: str, options: DiffusersOptions | None = None, hooks: FlowHooks | None = None):
        if hooks is None:
            raise ValueError(f"{name}: a flow-matching adapter needs its family's hooks")
        self.hooks = hooks
        self.pipe = pipe
        self.name = name
        self.options = options or DiffusersOptions()
        self.entry = family_of(pipe, name)
        self.multiple = pipe.vae_scale_factor * self.entry.latent_multiple
        self._prompts: OrderedDict[str, dict] = OrderedDict()
        self._posteriors: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._check_options()
        if self.options.negative_prompt and self.entry.guidance != "classifier-free":
            raise ValueError(f"generate.negative_prompt: the {self.entry.name} family takes no negative prompt "
                             f"(its guidance is {self.entry.guidance}); set it to \"\"")

    # -- the pipeline's strength rule: init = steps * strength (a float), start = int(steps - init)
    def start_index(self, strength: float) -> int:
        return int(max(self.steps - min(self.steps * strength, self.steps), 0))

    def strength_at(self, index: int) -> float:
        return 1.0 if index == 0 else (self.steps - index - 0.5) / self.steps

    def start_sigmas(self, size: tuple[int, int]) -> list[float]:
        scheduler = self.pipe.scheduler.__class__.from_config(self.pipe.scheduler.config)
        self.hooks.set_timesteps(self.pipe, scheduler, self.steps, size)
        return [float(scheduler.sigmas[k * scheduler.order]) for k in range(self.steps)]

    # -- the Generator protocol
    @property
    def dtype(self) -> torch.dtype:
        return getattr(self.pipe, self.entry.denoiser).dtype

    @torch.no_grad()
    def _encoded(self, prompt: str, guided: bool) -> dict:
        key = f"{guided}\x1f{prompt}"
        if key not in self._prompts:
            self._prompts[key] = self.hooks.encode(self.pipe, prompt, guided, self.options.negative_prompt or None)
            while len(self._prompts) > self.options.cache_size:
                self._prompts.popitem(last=False)
        return self._prompts[key]

    def _conditioning(self, prompts: Sequence[str], guided: bool) -> dict:
        encoded = [self._encoded(p, guided) for p in prompts]
        return {k: torch.cat([e[k] for e in encoded]) for k in encoded[0]}

    @torch.no_grad()
    def _init_latents(self, sources: torch.Tensor, images: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """Each output's VAE latent sample, drawn from its generator as the pipeline's VAE step draws it."""
        vae = self.pipe.vae
        size = (images.shape[-2], images.shape[-1])
        samples = []
        for source, image, gen in zip(sources, images, generators):
            key = hashlib.sha1(source.contiguous().numpy().tobytes() + repr((tuple(source.shape), size)).encode()).hexdigest()
            if key not in self._posteriors:
                x = (image[None] * 2 - 1).to(self.device, dtype=vae.dtype)
                dist = vae.encode(x).latent_dist
                self._posteriors[key] = (dist.mean, dist.std)
                while len(self._posteriors) > self.options.cache_size:
                    self._posteriors.popitem(last=False)
            mean, std = self._posteriors[key]
            eps = randn_tensor(mean.shape, generator=gen, device=mean.device, dtype=mean.dtype)
            samples.append(mean + std * eps)
        latents = torch.cat(samples)
        return (latents - vae.config.shift_factor) * vae.config.scaling_factor

    @torch.no_grad()
    def _decode(self, latents: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        vae = self.pipe.vae
        latents = self.hooks.unpack(self.pipe, latents, size)
        latents = (latents / vae.config.scaling_factor + vae.config.shift_factor).to(vae.dtype)
        step = self.options.vae_batch_size
        image = torch.cat([vae.decode(latents[i : i + step], return_dict=False)[0] for i in range(0, len(latents), step)])
        return ((image.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).cpu()

    def _guided(self, text_guidance: float) -> bool:
        # classifier-free: the unconditional branch only above 1, as the pipelines; embedded/none: never
        return self.entry.guidance == "classifier-free" and text_guidance > 1.0

    @torch.no_grad()
    def img2img(self, images: torch.Tensor, labels: Sequence[int], prompts: Sequence[str], strength: float,
                text_guidance: float, noise_seeds: Sequence[int]) -> torch.Tensor:
        check_request(strength, images=images, prompts=prompts, noise_seeds=noise_seeds)
        x = self._prepare_images(images)
        size = (x.shape[-2], x.shape[-1])
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in noise_seeds]
        latents = self._init_latents(images, x, generators)
        self.pipe.set_progress_bar_config(disable=True)
        out = self.pipe(
            image=latents, height=size[0], width=size[1], strength=self.pipeline_strength(strength, size),
            num_inference_steps=self.steps, guidance_scale=text_guidance, generator=generators, output_type="latent",
            **self._conditioning(prompts, self._guided(text_guidance)),
        ).images
        return self._decode(out, size)

    def reference_call(self, images: torch.Tensor, prompt: str, strength: float, text_guidance: float, noise_seed: int) -> torch.Tensor:
        """One plain pipeline call for one output (batch 1), from pixels and the prompt. For benchmarks and tests."""
        x = self._prepare_images(images)
        size = (x.shape[-2], x.shape[-1])
        negative = {"negative_prompt": self.options.negative_prompt} if self.options.negative_prompt else {}
        with _diffusers_errors_only():
            out = self.pipe(
                prompt=prompt, image=x, height=size[0], width=size[1], strength=self.pipeline_strength(strength, size),
                num_inference_steps=self.steps, guidance_scale=text_guidance,
                generator=[torch.Generator("cpu").manual_seed(int(noise_seed))], output_type="pt", **negative,
            ).images
        return (out.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
