"""GPU benchmark: full-size SD 1.5 and SDXL-refiner img2img with random weights, discl's batched engine
against the reference code's loop (one pipeline call per output).

The UNet, VAE and text encoders are built from their public configs (bench/gpu/configs/*.json, copied
from the models' config.json files) with random weights: no download, the real models' FLOPs. SDPA
attention. One run measures one model at one size, for each --dtypes:

- reference: `--reference-calls` plain pipeline calls, one output each (batch 1), at `--strength`;
- engine: for each of `--batch-sizes`, one DiffusersImg2Img call of that many outputs at `--strength`
  (after an untimed call of the same shape), with the peak GPU memory of that call;
- unet: the UNet alone at each batch size (both guidance branches), its achieved TFLOP/s and the fraction
  of `--peak-tflops` (FLOPs counted with torch.utils.flop_counter), also with channels_last;
- spectrum (`--spectrum-batch B`): the paper's grid (10 strengths x `--seeds` seeds) for `--hard` hard
  images through the engine at batch B, as `discl generate` groups it (outputs of one strength together):
  seconds per hard image, scaled to the full 8 seeds where fewer were run (cost is linear in seeds).

Every measurement is printed and appended to the --out JSON as it finishes, so a run cut short keeps
what it measured. Needs PyTorch, diffusers and transformers (bench/gpu/run_all.sh installs the wheels).

    python bench/gpu/bench_generation_gpu.py --model sdxl-refiner --size 1024x1024 --dtypes fp16 bf16
    python bench/gpu/bench_generation_gpu.py --smoke      # toy widths on CPU: checks the code path only
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
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
MODELS = {"sd15": ("sd15", (512, 512)), "sdxl-refiner": ("sdxl_refiner", (1024, 1024))}  # config prefix, default size

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

    prefix = MODELS[model][0]
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
    """FLOPs of the UNet for one output and one denoising step (both guidance branches when guided)."""
    from torch.utils.flop_counter import FlopCounterMode

    latents, t, embeds, added = unet_inputs(gen, size, 1, guided)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        gen.pipe.unet(latents, t, encoder_hidden_states=embeds, added_cond_kwargs=added)
    return float(counter.get_total_flops())


def unet_inputs(gen, size: tuple[int, int], outputs: int, guided: bool):
    h, w = size[1] // gen.multiple, size[0] // gen.multiple
    latents = torch.zeros((2 if guided else 1) * outputs, 4, h, w, device=gen.device, dtype=gen.dtype)
    embeds, added = gen._conditioning(["a photo"] * outputs, guided, (size[1], size[0]))
    return latents, torch.tensor(500, device=gen.device), embeds, added


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


class Recorder:
    """Prints each measurement and rewrites the JSON file after each, so a run cut short keeps its figures.
    Rows already in the file (earlier runs of this script) are kept: one file can gather several models and sizes."""

    def __init__(self, out: Path | None, common: dict):
        self.out, self.common = out, common
        self.rows: list[dict] = json.loads(out.read_text()) if out and out.exists() else []

    def add(self, row: dict, line: str) -> None:
        self.rows.append({**self.common, **row})
        print(line, flush=True)
        if self.out:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text(json.dumps(self.rows, indent=2))


def outputs_for(images: torch.Tensor, count: int, strength: float, guidance: float, offset: int = 0):
    """`count` outputs at one strength, cycling over the hard images and the seeds as a generation shard does."""
    from discl.seeding import stable_seed

    jobs = [((offset + k) % len(images), SEEDS[(offset + k) // len(images) % len(SEEDS)]) for k in range(count)]
    idx = [i for i, _ in jobs]
    return (images[idx], [0] * count, [f"a photo of class {i}" for i in idx],
            strength, guidance, [stable_seed(i, s, strength) for i, s in jobs])


def measure_dtype(model: str, dtype_name: str, args, tmp: Path, rec: Recorder) -> None:
    from discl.generation.diffusers_backend import DiffusersImg2Img, DiffusersOptions

    device, dtype = args.device, DTYPES[dtype_name]
    t0 = time.perf_counter()
    pipe = build_pipeline(model, device, dtype, args.smoke, tmp / f"{model}-{dtype_name}")
    gen = DiffusersImg2Img(pipe, f"random/{model}", DiffusersOptions(steps=args.steps))
    size = gen.size_for(args.size[1], args.size[0])[::-1]  # (w, h) floored to the VAE's multiple
    guided = args.guidance > 1
    per_output_step = unet_flops(gen, size, guided)
    params = sum(p.numel() for p in pipe.unet.parameters()) / 1e9
    print(f"[{model} {size[0]}x{size[1]} {dtype_name}] built in {time.perf_counter() - t0:.1f} s; UNet {params:.2f} B params, "
          f"{per_output_step / 1e12:.3f} TFLOP per output per step; {args.steps} steps, guidance {args.guidance}", flush=True)
    images = torch.randint(0, 256, (args.hard, 3, size[1], size[0]), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    steps_at = min(int(args.steps * args.strength), args.steps)
    tag = f"[{model} {size[0]}x{size[1]} {dtype_name}]"
    base = {"dtype": dtype_name, "size": f"{size[0]}x{size[1]}", "strength": args.strength, "unet_steps": steps_at}

    if "reference" in args.measure:
        gen.reference_call(images[:1], "warm up", 0.1, args.guidance, 0)  # kernels, allocator
        sync(device)
        reset_peak(device)
        t0 = time.perf_counter()
        for k in range(args.reference_calls):
            gen.reference_call(images[k % len(images) : k % len(images) + 1], f"a photo of class {k}", args.strength,
                               args.guidance, SEEDS[k % len(SEEDS)])
        sync(device)
        dt = time.perf_counter() - t0
        rate = args.reference_calls / dt
        rec.add({**base, "measure": "reference", "batch": 1, "images_per_s": rate, "peak_gib": peak_gib(device),
                 "unet_tflops_per_s_lower_bound": per_output_step * steps_at * rate / 1e12},
                f"{tag} reference loop: {rate:.3f} images/s ({args.reference_calls} calls), peak {peak_gib(device):.1f} GiB")
        reference_rate = rate
    else:
        reference_rate = None

    if "engine" in args.measure:
        for batch in args.batch_sizes:
            gen.img2img(*outputs_for(images, batch, 0.1, args.guidance))  # the same shapes once, untimed
            sync(device)
            reset_peak(device)
            t0 = time.perf_counter()
            gen.img2img(*outputs_for(images, batch, args.strength, args.guidance, offset=batch))
            sync(device)
            dt = time.perf_counter() - t0
            rate = batch / dt
            achieved = per_output_step * steps_at * rate
            row = {**base, "measure": "engine", "batch": batch, "images_per_s": rate, "peak_gib": peak_gib(device),
                   "unet_tflops_per_s_lower_bound": achieved / 1e12,
                   "speedup_vs_reference": rate / reference_rate if reference_rate else None}
            ratio = f", {row['speedup_vs_reference']:.2f}x the reference loop" if reference_rate else ""
            rec.add(row, f"{tag} engine batch {batch}: {rate:.3f} images/s{ratio}, peak {row['peak_gib']:.1f} GiB, "
                         f"UNet+VAE+text {achieved / 1e12:.0f} TFLOP/s counting UNet FLOPs only")

    if "unet" in args.measure:
        for batch in args.batch_sizes:
            for channels_last in (False, True):
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                pipe.unet.to(memory_format=fmt)
                latents, t, embeds, added = unet_inputs(gen, size, batch, guided)
                latents = latents.contiguous(memory_format=fmt)
                with torch.no_grad():
                    pipe.unet(latents, t, encoder_hidden_states=embeds, added_cond_kwargs=added)
                    sync(device)
                    t0 = time.perf_counter()
                    for _ in range(args.unet_repeats):
                        pipe.unet(latents, t, encoder_hidden_states=embeds, added_cond_kwargs=added)
                    sync(device)
                dt = (time.perf_counter() - t0) / args.unet_repeats
                achieved = per_output_step * batch / dt
                rec.add({**base, "measure": "unet", "batch": batch, "channels_last": channels_last,
                         "unet_tflops_per_s": achieved / 1e12, "unet_flop_utilisation": achieved / (args.peak_tflops * 1e12),
                         "seconds_per_step": dt},
                        f"{tag} UNet alone, {batch} outputs{' channels_last' if channels_last else ''}: {dt * 1e3:.1f} ms per step, "
                        f"{achieved / 1e12:.0f} TFLOP/s = {100 * achieved / (args.peak_tflops * 1e12):.1f}% of {args.peak_tflops:.0f}")
            pipe.unet.to(memory_format=torch.contiguous_format)

    if "spectrum" in args.measure and args.spectrum_batch:
        seeds = args.seeds
        gen.img2img(*outputs_for(images, min(args.spectrum_batch, args.hard * seeds), 0.1, args.guidance))
        sync(device)
        reset_peak(device)
        t0 = time.perf_counter()
        produced, unet_output_steps = 0, 0
        for strength in STRENGTHS:
            jobs = args.hard * seeds
            for start in range(0, jobs, args.spectrum_batch):
                count = min(args.spectrum_batch, jobs - start)
                gen.img2img(*outputs_for(images[: args.hard], count, strength, args.guidance, offset=start))
                produced += count
                unet_output_steps += count * min(int(args.steps * strength), args.steps)
        sync(device)
        dt = time.perf_counter() - t0
        per_hard = dt / args.hard * len(SEEDS) / seeds
        achieved = per_output_step * unet_output_steps / dt
        rec.add({**base, "measure": "spectrum", "batch": args.spectrum_batch, "hard": args.hard, "seeds_run": seeds,
                 "outputs": produced, "seconds": dt, "images_per_s": produced / dt, "seconds_per_hard_image_80": per_hard,
                 "gpu_hours_per_1k_hard_images": per_hard * 1000 / 3600, "peak_gib": peak_gib(device),
                 "unet_tflops_per_s_lower_bound": achieved / 1e12},
                f"{tag} spectrum: {produced} outputs ({args.hard} hard x 10 strengths x {seeds} seeds) in {dt:.1f} s at batch "
                f"{args.spectrum_batch}: {per_hard:.1f} s per hard image for 80 outputs = {per_hard * 1000 / 3600:.2f} GPU hours "
                f"per 1k hard images; peak {peak_gib(device):.1f} GiB")
    del gen, pipe
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h or w)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sdxl-refiner", choices=list(MODELS))
    ap.add_argument("--size", type=parse_size, default=None, help="WxH in pixels (default: the model's own, 512 or 1024)")
    ap.add_argument("--dtypes", nargs="+", default=["fp16", "bf16"], choices=list(DTYPES))
    ap.add_argument("--measure", nargs="+", default=["reference", "engine", "unet"], choices=["reference", "engine", "unet", "spectrum"])
    ap.add_argument("--smoke", action="store_true", help="toy widths on CPU, 10 steps: checks the code path, measures nothing")
    ap.add_argument("--device", default=None)
    ap.add_argument("--steps", type=int, default=None, help="denoising steps at strength 1 (default 50; smoke 10)")
    ap.add_argument("--guidance", type=float, default=10.0)
    ap.add_argument("--strength", type=float, default=0.5, help="strength of the reference and engine calls (the grid's mean is 0.55)")
    ap.add_argument("--reference-calls", type=int, default=4)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--unet-repeats", type=int, default=3)
    ap.add_argument("--spectrum-batch", type=int, default=0, help="with --measure spectrum: the engine's batch size")
    ap.add_argument("--hard", type=int, default=4, help="distinct hard images (spectrum: how many get their full grid)")
    ap.add_argument("--seeds", type=int, default=8, help="seeds per strength in the spectrum (scaled to 8 in the result)")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16/fp16 peak of the GPU (H100 SXM / H200: 989)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    args.size = args.size or MODELS[args.model][1]
    if args.smoke:
        args.device = args.device or "cpu"
        args.steps = args.steps or 10
        args.size, args.dtypes = (64, 64), ["fp32"]
        args.hard, args.seeds, args.reference_calls, args.unet_repeats = min(args.hard, 2), min(args.seeds, 2), 1, 1
        args.batch_sizes = [2, 4]
        args.spectrum_batch = min(args.spectrum_batch, 4)
    else:
        args.device = args.device or "cuda"
        args.steps = args.steps or 50
    device_name = "cpu"
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            sys.exit("error: no CUDA device; use --smoke for a CPU check")
        torch.backends.cuda.matmul.allow_tf32 = True
        device_name = torch.cuda.get_device_name()
    print(f"device: {device_name}, torch {torch.__version__}", flush=True)
    rec = Recorder(args.out, {"model": args.model, "device": device_name, "steps": args.steps, "guidance": args.guidance})
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for dtype_name in args.dtypes:
            measure_dtype(args.model, dtype_name, args, Path(tmp), rec)
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
