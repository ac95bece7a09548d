"""Tiny random Stable Diffusion and SDXL-refiner-like img2img pipelines, built from config with no download.

For tests and CPU benchmarks: save one with ``save_pretrained(folder)`` and load it back through
:func:`discl.generation.factory.create_generator` exactly as a hub id is loaded.
The CLIP tokenizer is written from open_clip's bundled BPE (the real OpenAI vocabulary).
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


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, sample_size=32,
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
    """Build the tiny ``kind`` ("sd", "sdxl" or "sdxl-refiner") pipeline and save it as a diffusers folder."""
    folder = Path(folder)
    builders = {"sd": tiny_sd_pipeline, "sdxl": tiny_sdxl_pipeline, "sdxl-refiner": tiny_refiner_pipeline}
    if kind not in builders:
        raise ValueError(f"unknown tiny pipeline {kind!r}; known: {sorted(builders)}")
    builders[kind](folder / "_tokenizer", seed).save_pretrained(folder)
    return folder
