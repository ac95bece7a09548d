"""FLUX.1 dev and schnell: a transformer on 2x2-packed 16-channel latents (sizes a multiple of 2 x the VAE
factor), CLIP (pooled) + T5 text encoders, flow matching whose shift grows with the image size (mu).
dev is guidance-distilled: guidance is a model input (one pass, never a doubled batch); schnell takes none."""

from __future__ import annotations

from ...registry import families
from . import FlowHooks, flow_family


class Flux(FlowHooks):
    def encode(self, pipe, prompt, guided, negative_prompt):
        embeds, pooled, _ = pipe.encode_prompt(prompt, None, device=pipe._execution_device, num_images_per_prompt=1)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def set_timesteps(self, pipe, scheduler, steps, size):
        import numpy as np
        from diffusers.pipelines.flux.pipeline_flux_img2img import calculate_shift

        tokens = (size[0] // pipe.vae_scale_factor // 2) * (size[1] // pipe.vae_scale_factor // 2)
        c = scheduler.config
        mu = calculate_shift(tokens, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                             c.get("base_shift", 0.5), c.get("max_shift", 1.15))
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)  # as the pipeline

    def unpack(self, pipe, latents, size):
        return pipe._unpack_latents(latents, size[0], size[1], pipe.vae_scale_factor)


def _guidance_embedded(pipe) -> bool:
    return bool(pipe.transformer.config.guidance_embeds)


families.register("flux-dev", summary="FLUX.1-dev and other guidance-distilled FLUX.1: packed 16-channel latents, "
                  "embedded guidance (one pass), flow matching with a size-dependent shift", pipelines=("FluxImg2ImgPipeline",),
                  detect=_guidance_embedded, latent_channels=16, latent_multiple=2, guidance="embedded",
                  schedule="flow-matching", denoiser="transformer")(flow_family(Flux()))
families.register("flux-schnell", summary="FLUX.1-schnell (timestep-distilled, 1-4 steps): packed 16-channel latents, "
                  "no guidance, flow matching", pipelines=("FluxImg2ImgPipeline",),
                  detect=lambda pipe: not _guidance_embedded(pipe), latent_channels=16, latent_multiple=2, guidance="none",
                  schedule="flow-matching", denoiser="transformer")(flow_family(Flux()))
