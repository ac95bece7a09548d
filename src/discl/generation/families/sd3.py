"""Stable Diffusion 3 / 3.5: an MMDiT on 16-channel latents (sizes a multiple of the VAE factor x its patch),
three text encoders (two CLIP with pooled outputs, T5), classifier-free guidance, flow matching with a shift."""

from __future__ import annotations

from ...registry import families
from . import FlowHooks, flow_family


class SD3(FlowHooks):
    def encode(self, pipe, prompt, guided, negative_prompt):
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt, None, None, device=pipe._execution_device, num_images_per_prompt=1,
            do_classifier_free_guidance=guided, negative_prompt=negative_prompt,
        )
        out = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
        if guided:
            out |= {"negative_prompt_embeds": negative, "negative_pooled_prompt_embeds": negative_pooled}
        return out

    def set_timesteps(self, pipe, scheduler, steps, size):
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3_img2img import calculate_shift

        kwargs = {}
        if scheduler.config.get("use_dynamic_shifting", None):  # SD3.5 variants: mu from the token count, as the pipeline
            patch, factor = pipe.transformer.config.patch_size, pipe.vae_scale_factor
            tokens = (size[0] // factor // patch) * (size[1] // factor // patch)
            c = scheduler.config
            kwargs["mu"] = calculate_shift(tokens, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                                           c.get("base_shift", 0.5), c.get("max_shift", 1.16))
        scheduler.set_timesteps(steps, **kwargs)


families.register("sd3", summary="Stable Diffusion 3/3.5: 16-channel latents, classifier-free guidance, flow matching",
                  pipelines=("StableDiffusion3Img2ImgPipeline",), latent_channels=16, latent_multiple=2,
                  schedule="flow-matching", denoiser="transformer")(flow_family(SD3()))
