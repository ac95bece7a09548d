"""GPU benchmark: full-size SD 1.5 and SDXL-refiner img2img with random weights, batched vs. reference-style.

The UNet, VAE and text encoders are built from their public configs (bench/gpu/configs/*.json,
copied from the models' config.json files) with random weights: no download, same FLOPs as the
real models. fp16, SDPA attention. For each model it measures, on the paper's spectrum
(10 strengths x 8 seeds = 80 images per hard image, text guidance 10):

- reference-style: one plain pipeline call per (image, strength, seed), batch 1;
- batched: discl's DiffusersImg2Img engine, many outputs of one strength per call;

and prints images/s, seconds per hard image for the full 80-image spectrum, the ratio, and the
UNet FLOP utilisation (UNet FLOPs counted with torch.utils.flop_counter, divided by the wall time
of the batched run, which includes VAE and text-encoder time, so it is a lower bound).

Needs only PyTorch plus the wheels in bench/gpu/wheels (see bench/gpu/run.sh).

    python bench/gpu/bench_generation_gpu.py                 # both models, full size, CUDA
    python bench/gpu/bench_generation_gpu.py --smoke         # tiny widths on CPU: checks the code path only
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))  # discl from this checkout

STRENGTHS = [round(0.1 * i, 1) for i in range(1, 11)]
SEEDS = [10, 20, 30, 40, 42, 50, 60, 70]

MODELS = {
    # name: (config prefix, (width, height) the paper/model uses)
    "sd15": ("sd15", (512, 512)),
    "sdxl-refiner": ("sdxl_refiner", (480, 272)),  # iWildCam's 480x270, rounded to the VAE's multiple of 8
}

# --smoke: the same architectures at toy widths, so the whole script runs on a CPU in seconds
SMOKE = {
    "unet": {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "transformer_layers_per_block": 1},
    "sd15_unet": {"attention_head_dim": 4, "cross_attention_dim": 32},
    "sdxl_refiner_unet": {"attention_head_dim": [2, 2, 4, 4], "cross_attention_dim": 32, "addition_time_embed_dim": 8,
                          "projection_class_embeddings_input_dim": 5 * 8 + 32},
    "vae": {"block_out_channels": [32, 32, 32, 32], "layers_per_block": 1},
    "text": {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2, "projection_dim": 32},
}


def byte_tokenizer(folder: Path):
    """A CLIP tokenizer over single bytes (no merges): tokens differ from the real BPE, the sequence length (77)
    and so the text encoder's cost do not."""
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(33, 127)] + [chr(c) for c in range(161, 173)] + [chr(c) for c in range(174, 256)]
    chars += [chr(256 + n) for n in range(256 - len(chars))]
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)


def load_config(name: str, smoke: bool, kind: str) -> dict:
    cfg = json.loads((HERE / "configs" / f"{name}.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and k != "architectures"}
    if smoke:
        cfg.update(SMOKE.get(kind, {}))
        cfg.update(SMOKE.get(name, {}))
    return cfg


def build_pipeline(model: str, device: str, dtype: torch.dtype, smoke: bool, tmp: Path):
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    prefix, _ = MODELS[model]
    tok = byte_tokenizer(tmp / "tokenizer")
    text_cfg = load_config(f"{prefix}_text_encoder" if model == "sd15" else f"{prefix}_text_encoder_2", smoke, "text")
    text_cfg.pop("model_type", None)
    text_cfg.update(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    sched_cfg = json.loads((HERE / "configs" / f"{prefix}_scheduler.json").read_text())
    scheduler = getattr(diffusers, sched_cfg.pop("_class_name")).from_config(sched_cfg)
    with torch.device(device):  # random init directly on the GPU: seconds instead of minutes
        unet = UNet2DConditionModel(**load_config(f"{prefix}_unet", smoke, "unet"))
        vae = AutoencoderKL(**load_config(f"{prefix}_vae", smoke, "vae"))
        if model == "sd15":
            text = CLIPTextModel(CLIPTextConfig(**text_cfg))
        else:
            text = CLIPTextModelWithProjection(CLIPTextConfig(**text_cfg))
    unet, text = unet.to(dtype).eval(), text.to(dtype).eval()
    vae = vae.to(dtype).eval()
    if model == "sd15":
        pipe = diffusers.StableDiffusionImg2ImgPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=scheduler,
                                                        safety_checker=None, feature_extractor=None, image_encoder=None,
                                                        requires_safety_checker=False)
    else:
        pipe = diffusers.StableDiffusionXLImg2ImgPipeline(vae=vae, text_encoder=None, tokenizer=None, text_encoder_2=text,
                                                          tokenizer_2=tok, unet=unet, scheduler=scheduler,
                                                          requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
                                                          add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe.unet.set_attn_processor(AttnProcessor2_0())
    return pipe


def unet_flops(gen, size: tuple[int, int], guided: bool) -> float:
    """FLOPs of one UNet forward for one output (both guidance branches when guided)."""
    from torch.utils.flop_counter import FlopCounterMode

    pipe = gen.pipe
    h, w = size[1] // gen.multiple, size[0] // gen.multiple
    batch = 2 if guided else 1
    latents = torch.zeros(batch, 4, h, w, device=gen.device, dtype=gen.dtype)
    embeds, added = gen._conditioning(["a photo"], guided, (size[1], size[0]))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        pipe.unet(latents, torch.tensor(500, device=gen.device), encoder_hidden_states=embeds, added_cond_kwargs=added)
    return float(counter.get_total_flops())


def sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_model(model: str, args, tmp: Path) -> dict:
    from discl.generation.diffusers_backend import DiffusersImg2Img, DiffusersOptions
    from discl.seeding import stable_seed

    device, dtype = args.device, (torch.float16 if args.device.startswith("cuda") else torch.float32)
    t0 = time.perf_counter()
    pipe = build_pipeline(model, device, dtype, args.smoke, tmp / model)
    size = (64, 64) if args.smoke else MODELS[model][1]
    gen = DiffusersImg2Img(pipe, f"random/{model}", DiffusersOptions(steps=args.steps))
    print(f"[{model}] built in {time.perf_counter() - t0:.1f} s; UNet {sum(p.numel() for p in pipe.unet.parameters()) / 1e9:.2f} B params, "
          f"{size[0]}x{size[1]}, {args.steps} steps, guidance {args.guidance}, {dtype}", flush=True)
    images = torch.randint(0, 256, (args.hard, 3, size[1], size[0]), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    seeds = SEEDS[: args.seeds]

    # warm-up (kernels, allocator) for both paths
    gen.reference_call(images[:1], "warm up", 0.5, args.guidance, 0)
    gen.img2img(images[:1].repeat(2, 1, 1, 1), [0, 0], ["warm up"] * 2, 0.5, args.guidance, [0, 1])
    sync(device)

    # batched: every hard image's spectrum, all outputs of one strength per call (chunks of batch_size)
    t0 = time.perf_counter()
    n_batched, unet_image_steps = 0, 0
    for strength in STRENGTHS:
        jobs = [(i, s) for i in range(args.hard) for s in seeds]
        for start in range(0, len(jobs), args.batch_size):
            chunk = jobs[start : start + args.batch_size]
            gen.img2img(images[[i for i, _ in chunk]], [0] * len(chunk), [f"a photo of class {i}" for i, _ in chunk], strength,
                        args.guidance, [stable_seed(i, s, strength) for i, s in chunk])
            n_batched += len(chunk)
            unet_image_steps += len(chunk) * min(int(args.steps * strength), args.steps)
    sync(device)
    t_batched = time.perf_counter() - t0

    # reference style: one pipeline call per (image, strength, seed), on the first hard image(s) only
    t0 = time.perf_counter()
    n_naive = 0
    for i in range(args.naive_hard):
        for strength in STRENGTHS:
            for s in seeds:
                gen.reference_call(images[i : i + 1], f"a photo of class {i}", strength, args.guidance, s)
                n_naive += 1
    sync(device)
    t_naive = time.perf_counter() - t0

    flops = unet_flops(gen, size, args.guidance > 1) * unet_image_steps
    achieved = flops / t_batched
    per_spectrum = len(STRENGTHS) * len(seeds)
    result = {
        "model": model, "size": f"{size[0]}x{size[1]}", "steps": args.steps, "batch_size": args.batch_size,
        "batched_images_per_s": n_batched / t_batched, "naive_images_per_s": n_naive / t_naive,
        "speedup": (n_batched / t_batched) / (n_naive / t_naive),
        "batched_s_per_hard_image": t_batched / args.hard, "naive_s_per_hard_image": t_naive / args.naive_hard,
        "images_per_hard_image": per_spectrum, "unet_tflops_per_s": achieved / 1e12,
        "unet_flop_utilisation": achieved / (args.peak_tflops * 1e12),
    }
    print(f"[{model}] batched {result['batched_images_per_s']:.2f} img/s ({result['batched_s_per_hard_image']:.1f} s per hard image, "
          f"{per_spectrum} images); reference-style {result['naive_images_per_s']:.2f} img/s "
          f"({result['naive_s_per_hard_image']:.1f} s per hard image); speed-up {result['speedup']:.2f}x; "
          f"UNet {result['unet_tflops_per_s']:.1f} TFLOP/s = {100 * result['unet_flop_utilisation']:.1f}% of {args.peak_tflops} TFLOP/s",
          flush=True)
    del gen, pipe
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--smoke", action="store_true", help="toy widths on CPU, 10 steps: checks the code path, measures nothing")
    ap.add_argument("--device", default=None)
    ap.add_argument("--steps", type=int, default=None, help="denoising steps at strength 1 (default 50; smoke 10)")
    ap.add_argument("--guidance", type=float, default=10.0)
    ap.add_argument("--hard", type=int, default=4, help="hard images in the batched run")
    ap.add_argument("--naive-hard", type=int, default=1, help="hard images in the reference-style run")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense fp16 peak of the GPU (H100 SXM / H200: 989)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.smoke:
        args.device = args.device or "cpu"
        args.steps = args.steps or 10
        args.hard, args.naive_hard, args.seeds, args.batch_size = min(args.hard, 2), 1, min(args.seeds, 2), min(args.batch_size, 4)
    else:
        args.device = args.device or "cuda"
        args.steps = args.steps or 50
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            sys.exit("error: no CUDA device; use --smoke for a CPU check")
        torch.backends.cuda.matmul.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench_model(m, args, Path(tmp)) for m in args.models]
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
