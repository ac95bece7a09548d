"""Tiny random img2img pipelines of every family discl knows (Stable Diffusion 1.x, SDXL, the SDXL refiner,
SD3, FLUX.1 dev and schnell), built from config with no download.

For tests and CPU benchmarks: save one with ``save_pretrained(folder)`` and load it back through
:func:`discl.generation.factory.create_generator` exactly as a hub id is loaded.
The CLIP tokenizer is written from open_clip's bundled BPE (the real OpenAI vocabulary); a word-level
``tokenizers`` tokenizer (wrapped as a transformers fast tokenizer) stands in for T5's.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import torch


def write_clip_tokenizer(folder: Path):
    """A transformers CLIPTokenizer (49408 tokens) saved in ``folder``, from open_clip's bundled BPE file."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = gzip.open(default_bpe()).read().decode().split("\n")[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)
    if len(tok) != 49408:
        raise RuntimeError(f"tokenizer built from {folder} has {len(tok)} tokens, expected 49408")
    return tok


def _text_config(tok, projection: bool):
    from transformers import CLIPTextConfig

    extra: dict[str, Any] = {"projection_dim": 32, "hidden_act": "gelu"} if projection else {}
    return CLIPTextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, **extra,
    )


def _vae(latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=latent_channels,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, sample_size=32, **extra,
    )


#: The words the stand-in T5 tokenizer knows (others become <unk>): enough to tell the tests' prompts apart.
T5_WORDS = ("a an the of in on at with photo picture real wild 8k cat dog bird fish deer animal digit zero one two three "
            "four five six seven eight nine").split()


def t5_tokenizer(max_length: int = 512):
    """A word-level tokenizer in T5's layout (<pad> 0, </s> 1, <unk> 2; ``</s>`` appended), as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(T5_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                   model_max_length=max_length)


def _t5(tok, d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=len(tok), d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1))


def _flow_scheduler(dynamic: bool, shift: float):
    from diffusers import FlowMatchEulerDiscreteScheduler

    if dynamic:  # FLUX.1-dev's: the shift grows with the image's token count (mu)
        return FlowMatchEulerDiscreteScheduler(shift=shift, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                               base_image_seq_len=256, max_image_seq_len=4096)
    return FlowMatchEulerDiscreteScheduler(shift=shift)


def tiny_flux_pipeline(tokenizer_dir: Path, seed: int = 0, guidance_embeds: bool = True):
    """FLUX.1-like img2img: CLIP (pooled) + T5 text encoders, a 16-channel FluxTransformer2DModel on 2x2-packed
    latents, a VAE with FLUX's shift and scaling factors, flow matching. ``guidance_embeds``: dev (True) or schnell."""
    from diffusers import FluxImg2ImgPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    tok = write_clip_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    te = CLIPTextModel(_text_config(tok, projection=False))
    t5_tok = t5_tokenizer()
    te2 = _t5(t5_tok)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=guidance_embeds, axes_dims_rope=(4, 6, 6),
    )
    vae = _vae(16, shift_factor=0.1159, scaling_factor=0.3611, use_quant_conv=False, use_post_quant_conv=False)
    return FluxImg2ImgPipeline(
        scheduler=_flow_scheduler(dynamic=guidance_embeds, shift=3.0 if guidance_embeds else 1.0), vae=vae,
        text_encoder=te, tokenizer=tok, text_encoder_2=te2, tokenizer_2=t5_tok, transformer=transformer,
    )


def tiny_sd3_pipeline(tokenizer_dir: Path, seed: int = 0):
    """SD3-like img2img: two CLIP encoders with projections and T5, an MMDiT (SD3Transformer2DModel, patch 2) on
    16-channel latents, a VAE with a shift factor, flow matching with shift 3."""
    from diffusers import SD3Transformer2DModel, StableDiffusion3Img2ImgPipeline
    from transformers import CLIPTextModelWithProjection

    tok = write_clip_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    te = CLIPTextModelWithProjection(_text_config(tok, projection=True))
    te2 = CLIPTextModelWithProjection(_text_config(tok, projection=True))
    t5_tok = t5_tokenizer(256)
    te3 = _t5(t5_tok)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8, num_attention_heads=4,
        caption_projection_dim=32, joint_attention_dim=32, pooled_projection_dim=64, out_channels=16,
    )
    vae = _vae(16, shift_factor=0.0609, scaling_factor=1.5305)
    return StableDiffusion3Img2ImgPipeline(
        transformer=transformer, scheduler=_flow_scheduler(dynamic=False, shift=3.0), vae=vae, text_encoder=te,
        tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok, text_encoder_3=te3, tokenizer_3=t5_tok,
    )


def tiny_sd_pipeline(tokenizer_dir: Path, seed: int = 0):
    """SD-1.x-like img2img: CLIP text encoder, ~1M-parameter UNet, 2-level VAE (scale factor 2), DDIM."""
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tok = write_clip_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    te = CLIPTextModel(_text_config(tok, projection=False))
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionImg2ImgPipeline(
        vae=_vae(), text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None,
        feature_extractor=None, image_encoder=None, requires_safety_checker=False,
    )


def _xl_unet_and_scheduler(time_ids: int, cross_attention_dim: int):
    """An SDXL-style UNet (text_time conditioning from ``time_ids`` numbers and the pooled text) and Euler."""
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=time_ids * 8 + 32,
        cross_attention_dim=cross_attention_dim,
    )
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                                   timestep_spacing="leading")
    return unet, sched


def tiny_refiner_pipeline(tokenizer_dir: Path, seed: int = 0):
    """SDXL-refiner-like img2img: only text_encoder_2 / tokenizer_2, aesthetics-score conditioning, Euler."""
    from diffusers import StableDiffusionXLImg2ImgPipeline
    from transformers import CLIPTextModelWithProjection

    tok = write_clip_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    te2 = CLIPTextModelWithProjection(_text_config(tok, projection=True))
    unet, sched = _xl_unet_and_scheduler(time_ids=5, cross_attention_dim=32)  # sizes + aesthetic score
    return StableDiffusionXLImg2ImgPipeline(
        vae=_vae(), text_encoder=None, tokenizer=None, text_encoder_2=te2, tokenizer_2=tok, unet=unet, scheduler=sched,
        requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
    )


def tiny_sdxl_pipeline(tokenizer_dir: Path, seed: int = 0):
    """SDXL-base-like img2img: two text encoders (hidden states concatenated), size/crop conditioning, Euler."""
    from diffusers import StableDiffusionXLImg2ImgPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tok = write_clip_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    te = CLIPTextModel(_text_config(tok, projection=False))
    te2 = CLIPTextModelWithProjection(_text_config(tok, projection=True))
    unet, sched = _xl_unet_and_scheduler(time_ids=6, cross_attention_dim=64)  # original size, crop, target size
    return StableDiffusionXLImg2ImgPipeline(
        vae=_vae(), text_encoder=te, tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok, unet=unet, scheduler=sched,
        requires_aesthetics_score=False, force_zeros_for_empty_prompt=True,
    )


def save_tiny_pipeline(kind: str, folder: Path, seed: int = 0) -> Path:
    """Build the tiny ``kind`` pipeline (one of TINY_KINDS) and save it as a diffusers folder."""
    folder = Path(folder)
    builders = {"sd": tiny_sd_pipeline, "sdxl": tiny_sdxl_pipeline, "sdxl-refiner": tiny_refiner_pipeline,
                "sd3": tiny_sd3_pipeline, "flux-dev": tiny_flux_pipeline,
                "flux-schnell": lambda folder, seed: tiny_flux_pipeline(folder, seed, guidance_embeds=False)}
    if kind not in builders:
        raise ValueError(f"unknown tiny pipeline {kind!r}; known: {sorted(builders)}")
    builders[kind](folder / "_tokenizer", seed).save_pretrained(folder)
    return folder


TINY_KINDS = ("sd", "sdxl", "sdxl-refiner", "sd3", "flux-dev", "flux-schnell")
