"""The flow-matching families (SD3, FLUX.1 dev and schnell) on tiny random pipelines built from config, saved
and loaded back through the factory; family detection and what the families declare; levels."""

import json

import numpy as np
import pytest
import torch

from discl.config import GeneratorConfig, LoraWeights
from discl.generation.factory import create_generator
from discl.generation.families import family_of
from discl.generation.levels import REFERENCE_STEPS, reference_noise, sigma_of_alpha_bar
from discl.generation.tiny import save_tiny_pipeline
from discl.registry import families

FLOW = ("sd3", "flux-dev", "flux-schnell")
PROMPTS = ["a photo of a cat", "a photo of a dog", "a photo of a cat"]
SEEDS = [11, 12, 13]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    return {kind: save_tiny_pipeline(kind, root / kind) for kind in FLOW}


def make(folder, **options):
    return create_generator(GeneratorConfig(backend="diffusers", model=str(folder), inference_steps=options.pop("steps", 3), **options))


@pytest.fixture(scope="module")
def gens(folders):
    return {kind: make(folder) for kind, folder in folders.items()}


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


def assert_close(a, b):
    diff = (a.int() - b.int()).abs()
    assert a.shape == b.shape and diff.max() <= 1 and (diff > 0).float().mean() < 1e-3


@pytest.mark.parametrize("kind,strength,guidance", [("sd3", 0.6, 4.0), ("flux-dev", 0.5, 3.5), ("flux-schnell", 1.0, 0.0)])
def test_engine_equals_plain_pipeline_calls_per_output(gens, images, kind, strength, guidance):
    """A batch through the engine = one plain pipeline call per output (pixels and prompt in, its own generator)."""
    g = gens[kind]
    ours = g.img2img(images, [0] * 3, PROMPTS, strength, guidance, SEEDS)
    ref = torch.cat([g.reference_call(images[i : i + 1], PROMPTS[i], strength, guidance, SEEDS[i]) for i in range(3)])
    assert ours.dtype == torch.uint8 and ours.shape == images.shape
    assert_close(ours, ref)
    # independent of the batch: reordered, and one alone
    assert_close(g.img2img(images.flip(0), [0] * 3, PROMPTS[::-1], strength, guidance, SEEDS[::-1]).flip(0), ours)
    # seeds and strengths do change an output
    assert (g.img2img(images[:1], [0], PROMPTS[:1], strength, guidance, [99]).int() - ours[:1].int()).abs().float().mean() > 1
    assert (g.img2img(images[:1], [0], PROMPTS[:1], 0.3, guidance, SEEDS[:1]).int() - ours[:1].int()).abs().float().mean() > 1


def test_families_declare_what_the_engine_reads(gens):
    expected = {"sd3": "classifier-free", "flux-dev": "embedded", "flux-schnell": "none"}
    for kind, g in gens.items():
        assert g.entry.name == kind and g.entry.guidance == expected[kind]
        assert g.entry.latent_channels == g.pipe.vae.config.latent_channels == 16
        assert g.entry.schedule == "flow-matching" and g.entry.denoiser == "transformer"
        assert g.multiple == 4  # the tiny VAE's factor 2 x (FLUX's 2x2 packing | SD3's patch 2)
    assert [families.get(n).schedule for n in ("sd", "sdxl")] == ["discrete", "discrete"]


def _batches_seen(transformer):
    seen = []

    def hook(module, args, kwargs):
        seen.append((kwargs["hidden_states"].shape[0], kwargs.get("guidance")))

    return seen, transformer.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("kind,guidance,batch,embedded", [
    ("flux-dev", 3.5, 2, 3.5),  # guidance-distilled: a model input, one pass, never a doubled batch
    ("flux-schnell", 3.5, 2, None),  # takes none
    ("sd3", 4.0, 4, None),  # classifier-free: the unconditional branch doubles the batch ...
    ("sd3", 1.0, 2, None),  # ... but not at guidance <= 1
])
def test_guidance_reaches_each_model_as_it_expects(gens, images, kind, guidance, batch, embedded):
    g = gens[kind]
    seen, handle = _batches_seen(g.pipe.transformer)
    try:
        g.img2img(images[:2], [0, 0], PROMPTS[:2], 1.0, guidance, SEEDS[:2])
    finally:
        handle.remove()
    assert len(seen) == 3 and all(b == batch for b, _ in seen)  # 3 steps, each one call
    for _, given in seen:
        assert (given is None) if embedded is None else torch.allclose(given, torch.full((2,), embedded))


def test_sizes_are_rounded_as_the_pipeline_rounds(gens):
    odd = torch.randint(0, 256, (1, 3, 30, 22), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for g in gens.values():
        assert g.img2img(odd, [0], PROMPTS[:1], 0.5, 2.0, [1]).shape == (1, 3, 28, 20)  # floored to multiples of 4


def test_unknown_family_and_flow_misconfigurations_are_one_line(folders, gens, tmp_path):
    from diffusers import StableDiffusion3Pipeline

    text2img = StableDiffusion3Pipeline(**{k: v for k, v in gens["sd3"].pipe.components.items() if k in
                                           ("transformer", "scheduler", "vae", "text_encoder", "tokenizer", "text_encoder_2",
                                            "tokenizer_2", "text_encoder_3", "tokenizer_3")})
    with pytest.raises(ValueError, match=r"^m: its pipeline StableDiffusion3Pipeline is of no family discl knows; known families: "
                                         r"sd \(StableDiffusionImg2ImgPipeline\); sdxl .*flux-schnell \(FluxImg2ImgPipeline\)$"):
        family_of(text2img, "m")
    (tmp_path / "pixart").mkdir()
    (tmp_path / "pixart" / "model_index.json").write_text(json.dumps({"_class_name": "PixArtAlphaPipeline"}))
    with pytest.raises(ValueError, match="PixArtAlphaPipeline has no image-to-image pipeline in diffusers and is of no family"):
        make(tmp_path / "pixart")
    with pytest.raises(ValueError, match="generate.scheduler 'ddim' is a discrete-timestep scheduler; .* is a flow-matching model "
                                         r"\(family flux-dev\): use 'default'"):
        make(folders["flux-dev"], scheduler="ddim")
    with pytest.raises(ValueError, match="the flux-dev family takes no negative prompt"):
        make(folders["flux-dev"], negative_prompt="blurry")


def _pipeline_start_noise(g, strength, size):
    """The noise the pipeline itself starts from: its scheduler set as in its __call__, its get_timesteps."""
    pipe, steps = g.pipe, g.steps
    if g.entry.schedule == "discrete":
        pipe.scheduler.set_timesteps(steps)
        timesteps, _ = pipe.get_timesteps(steps, strength, "cpu")
        return sigma_of_alpha_bar(float(pipe.scheduler.alphas_cumprod[int(timesteps[0])]))
    g.hooks.set_timesteps(pipe, pipe.scheduler, steps, size)
    timesteps, _ = pipe.get_timesteps(steps, strength, "cpu")
    return float(timesteps[0]) / pipe.scheduler.config.num_train_timesteps  # flow matching: t = sigma x 1000


def test_reference_noise_is_sds_start_at_50_steps():
    # SD's scaled-linear schedule, by hand: strength 0.5 at 50 steps starts at timestep 481 ("leading", offset 1)
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    abar = np.cumprod(1 - betas)[481]
    assert reference_noise(0.5) == pytest.approx(np.sqrt(1 - abar) / (np.sqrt(abar) + np.sqrt(1 - abar)), rel=1e-5)
    assert reference_noise(0.5) == pytest.approx(0.60, abs=0.01)
    assert reference_noise(1.0) == pytest.approx(0.93, abs=0.01)  # SD starts at t=981 even at strength 1: not pure noise
    assert [reference_noise(s) for s in (0.1, 0.3, 0.7)] == sorted(reference_noise(s) for s in (0.1, 0.3, 0.7))
    with pytest.raises(ValueError, match="leaves no denoising step on the reference schedule"):
        reference_noise(0.01)


@pytest.mark.parametrize("kind,steps,size", [("sd3", 8, (32, 32)), ("flux-dev", 8, (32, 32)), ("flux-dev", 8, (128, 96)),
                                             ("flux-schnell", 4, (32, 32))])
def test_noise_scale_starts_each_model_nearest_sds_noise(folders, kind, steps, size):
    g = make(folders[kind], steps=steps, level_scale="noise")
    achievable = g.start_sigmas(size)
    for level in [round(0.1 * i, 1) for i in range(1, 11)]:
        strength = g.pipeline_strength(level, size)
        start = _pipeline_start_noise(g, strength, size)  # the scheduler's own noise at the step it starts from
        target = reference_noise(level)
        assert abs(start - target) == pytest.approx(min(abs(s - target) for s in achievable), abs=1e-6)
        assert g.denoising_steps(level, size) >= 1
    strength_scale = make(folders[kind], steps=steps)
    assert strength_scale.pipeline_strength(0.5, size) == 0.5


def test_flux_shift_grows_with_the_image_size(folders):
    g = make(folders["flux-dev"], steps=REFERENCE_STEPS)
    small, large = g.start_sigmas((32, 32)), g.start_sigmas((512, 512))  # tiny VAE: 16 vs 16384 tokens
    assert all(b >= a for a, b in zip(small, large)) and large[25] > small[25] + 0.1


def test_a_lora_changes_the_images_and_its_scale_counts(folders, images, tmp_path):
    from diffusers import FluxImg2ImgPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    base = make(folders["flux-schnell"])
    torch.manual_seed(0)
    base.pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                                 target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    layers = {k: v * 30 if "lora_B" in k else v for k, v in get_peft_model_state_dict(base.pipe.transformer).items()}  # a strong one
    FluxImg2ImgPipeline.save_lora_weights(tmp_path / "lora", transformer_lora_layers=layers, safe_serialization=True)
    plain = make(folders["flux-schnell"]).img2img(images[:2], [0, 0], PROMPTS[:2], 1.0, 0.0, SEEDS[:2])
    loras = {scale: make(folders["flux-schnell"], lora=[LoraWeights(path=str(tmp_path / "lora"), scale=scale)])
             for scale in (0.0, 1.0)}
    off, on = (loras[s].img2img(images[:2], [0, 0], PROMPTS[:2], 1.0, 0.0, SEEDS[:2]) for s in (0.0, 1.0))
    assert_close(off, plain)
    assert (on.int() - plain.int()).abs().float().mean() > 1
    with pytest.raises(ValueError, match=r"generate.lora\[0\] '.*nothing': cannot be loaded as LoRA weights of FluxImg2ImgPipeline"):
        make(folders["flux-schnell"], lora=[LoraWeights(path=str(tmp_path / "nothing"))])


def test_each_source_is_vae_encoded_once_and_each_prompt_once(folders, images):
    g = make(folders["flux-schnell"])
    calls = {"vae": 0, "prompts": 0}
    encode, hooks_encode = g.pipe.vae.encode, g.hooks.encode

    def counting(x, *a, **k):
        calls["vae"] += len(x)
        return encode(x, *a, **k)

    def counting_prompts(*a, **k):
        calls["prompts"] += 1
        return hooks_encode(*a, **k)

    g.pipe.vae.encode, g.hooks.encode = counting, counting_prompts
    try:
        batch = torch.cat([images[:2], images[:1]])  # 2 distinct sources, 3 outputs
        for strength in (0.4, 1.0):
            g.img2img(batch, [0] * 3, PROMPTS, strength, 0.0, SEEDS)
    finally:
        g.pipe.vae.encode, g.hooks.encode = encode, hooks_encode
    assert calls == {"vae": 2, "prompts": 2}  # 2 sources and 2 distinct prompts, over 2 strengths and 6 outputs
