"""The diffusers img2img backend on tiny random SD and SDXL-refiner-like pipelines, saved to a temp
folder and loaded back through the factory (the path hub ids take)."""

import pytest
import torch

from discl.config import GeneratorConfig
from discl.generation.diffusers_backend import DiffusersImg2Img, DiffusersOptions, working_size
from discl.generation.factory import create_generator, generator_name, resolve_model
from discl.generation.tiny import save_tiny_pipeline

KINDS = ("sd", "sdxl", "sdxl-refiner")


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipes")
    return {
        kind: create_generator(GeneratorConfig(backend="diffusers", model=str(save_tiny_pipeline(kind, root / kind)), inference_steps=4))
        for kind in KINDS
    }


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


PROMPTS = ["a photo of a cat", "a photo of a dog", "a photo of a cat", "a bird", "a photo of a dog"]
SEEDS = [11, 12, 13, 14, 15]


def test_factory_loads_the_right_pipeline(generators, tmp_path):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline

    assert isinstance(generators["sd"].pipe, StableDiffusionImg2ImgPipeline) and not generators["sd"].is_xl
    refiner = generators["sdxl-refiner"]
    assert isinstance(refiner.pipe, StableDiffusionXLImg2ImgPipeline) and refiner.is_xl
    assert refiner.pipe.text_encoder is None and refiner.pipe.text_encoder_2 is not None
    assert refiner.pipe.config.requires_aesthetics_score
    base = generators["sdxl"]
    assert isinstance(base.pipe, StableDiffusionXLImg2ImgPipeline) and base.is_xl
    assert base.pipe.text_encoder is not None and not base.pipe.config.requires_aesthetics_score
    assert resolve_model("sdxl-refiner") == "stabilityai/stable-diffusion-xl-refiner-1.0"
    assert generator_name(GeneratorConfig(backend="diffusers", model="sdxl-refiner")) == "diffusers/sdxl-refiner"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        create_generator(GeneratorConfig(backend="diffusers", model=str(tmp_path / "empty")))
    with pytest.raises(ValueError, match="GeneratorConfig.model = None: backend 'diffusers' needs a model"):
        generator_name(GeneratorConfig(backend="diffusers"))
    with pytest.raises(ValueError, match="dtype = .fp8.: must be .fp32., .fp16. or .bf16."):
        create_generator(GeneratorConfig(backend="diffusers", model=str(tmp_path / "empty"), dtype="fp8"))


def test_working_size_rounds_down_to_the_vae_multiple_as_diffusers_does():
    assert working_size(480, 270, 8) == (480, 264)  # iWildCam's size in the reference
    assert working_size(500, 375, 8) == (496, 368)  # a typical ImageNet photo
    assert working_size(1024, 1024, 8) == (1024, 1024)
    assert working_size(3, 3, 8) == (8, 8)
    with pytest.raises(ValueError):
        working_size(0, 10, 8)


@pytest.mark.parametrize("kind,strength", [("sd", 1.0), ("sdxl", 0.75), ("sdxl-refiner", 0.5)])
def test_matches_one_plain_pipeline_call_per_image(generators, images, kind, strength):
    """The batched loop draws the same random numbers as the pipeline's own __call__ (batch 1, one
    generator): uint8 outputs agree to within 1 level (float reordering), nearly all exactly."""
    g = generators[kind]
    ours = g.img2img(images[:3], [0] * 3, PROMPTS[:3], strength, 7.5, SEEDS[:3])
    ref = torch.cat([g.reference_call(images[i : i + 1], PROMPTS[i], strength, 7.5, SEEDS[i]) for i in range(3)])
    ours = ours[:3]
    assert ours.shape == ref.shape == images[:3].shape and ours.dtype == torch.uint8
    diff = (ours.int() - ref.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_output_depends_only_on_its_input_and_seed(generators, images, kind):
    g = generators[kind]
    full = g.img2img(images, [0] * 5, PROMPTS, 0.7, 5.0, SEEDS)
    alone = torch.cat([g.img2img(images[i : i + 1], [0], PROMPTS[i : i + 1], 0.7, 5.0, SEEDS[i : i + 1]) for i in range(5)])
    reordered = g.img2img(images.flip(0), [0] * 5, PROMPTS[::-1], 0.7, 5.0, SEEDS[::-1]).flip(0)
    for other in (alone, reordered):
        diff = (full.int() - other.int()).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3
    # different seeds, strengths and prompts do change the image
    assert (g.img2img(images[:1], [0], PROMPTS[:1], 0.7, 5.0, [99]).int() - full[:1].int()).abs().float().mean() > 1
    assert (g.img2img(images[:1], [0], PROMPTS[:1], 0.3, 5.0, SEEDS[:1]).int() - full[:1].int()).abs().float().mean() > 1


def test_each_source_and_prompt_is_encoded_once(generators, images):
    sd = generators["sd"]
    fresh = DiffusersImg2Img(sd.pipe, sd.name, sd.options)
    calls = {"vae": 0}
    original = fresh.pipe.vae.encode

    def counting(x, *a, **k):
        calls["vae"] += len(x)
        return original(x, *a, **k)

    fresh.pipe.vae.encode = counting
    try:
        for strength in (0.3, 0.6, 1.0):
            fresh.img2img(images, [0] * 5, PROMPTS, strength, 7.5, SEEDS)
    finally:
        fresh.pipe.vae.encode = original
    assert calls["vae"] == 5  # 5 sources, 3 strengths: each source once
    assert len(fresh._prompts) == 3  # 3 distinct prompts


def test_resize_rule_and_bad_input(generators):
    sd = generators["sd"]
    resized = DiffusersImg2Img(sd.pipe, sd.name, type(sd.options)(steps=4, resize=(21, 13)))
    out = resized.img2img(torch.zeros((2, 3, 32, 32), dtype=torch.uint8), [0, 0], ["a", "b"], 0.5, 3.0, [1, 2])
    assert out.shape == (2, 3, 12, 20)  # rounded down to multiples of the tiny VAE's factor 2
    with pytest.raises(ValueError, match="uint8"):
        sd.img2img(torch.zeros((1, 3, 32, 32)), [0], ["a"], 0.5, 3.0, [1])
    with pytest.raises(ValueError, match="strength"):
        sd.img2img(torch.zeros((1, 3, 32, 32), dtype=torch.uint8), [0], ["a"], 0.0, 3.0, [1])
    with pytest.raises(ValueError, match="no denoising step"):
        DiffusersImg2Img(sd.pipe, sd.name, type(sd.options)(steps=4)).img2img(
            torch.zeros((1, 3, 32, 32), dtype=torch.uint8), [0], ["a"], 0.1, 3.0, [1])


@pytest.mark.parametrize("kind", KINDS)
def test_fp16_runs_its_vae_in_fp32_and_still_matches_the_pipeline(tmp_path, images, kind, caplog):
    # fp16 is what GPUs run; the CPU kernels are enough to check the dtype handling.
    folder = save_tiny_pipeline(kind, tmp_path / kind)
    gen = create_generator(GeneratorConfig(backend="diffusers", model=str(folder), inference_steps=4, dtype="fp16", device="cpu"))
    assert gen.pipe.vae.config.force_upcast and gen.dtype == torch.float16
    batched = gen.img2img(images[:3], [0, 1, 2], PROMPTS[:3], 0.5, 5.0, SEEDS[:3])
    assert gen.pipe.vae.dtype == torch.float32 and gen.pipe.unet.dtype == torch.float16  # the VAE overflows in fp16
    # engine and pipeline calls may alternate on one pipeline; fp16 rounds coarser than fp32 (docs/generation.md)
    ref = torch.cat([gen.reference_call(images[i : i + 1], PROMPTS[i], 0.5, 5.0, SEEDS[i]) for i in range(3)])
    diff = (ref.int() - batched.int()).abs()
    assert diff.max() <= 2 and (diff > 1).float().mean() < 0.01
    again = gen.img2img(images[:3], [0, 1, 2], PROMPTS[:3], 0.5, 5.0, SEEDS[:3])
    assert torch.equal(again, batched)
    assert "should be kept in float32" not in caplog.text


def test_decoding_in_small_vae_batches_changes_nothing(generators, images):
    g = generators["sd"]
    whole = g.img2img(images, [0] * 5, PROMPTS, 0.75, 7.5, SEEDS)
    assert g.options.vae_batch_size < len(images)  # the default already splits this batch
    g.options.vae_batch_size = 1
    try:
        one_by_one = g.img2img(images, [0] * 5, PROMPTS, 0.75, 7.5, SEEDS)
    finally:
        g.options.vae_batch_size = DiffusersOptions().vae_batch_size
    assert (whole.int() - one_by_one.int()).abs().max() <= 1
    with pytest.raises(ValueError, match="vae_batch_size"):
        DiffusersImg2Img(g.pipe, "x", DiffusersOptions(vae_batch_size=0))


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_bad_requests_are_refused_before_any_work(generators, images, kind):
    g = generators[kind]
    with pytest.raises(ValueError, match=r"strength must lie in \(0, 1\], got 0"):
        g.img2img(images[:1], [0], PROMPTS[:1], 0.0, 7.5, SEEDS[:1])
    with pytest.raises(ValueError, match="images, prompts, noise_seeds must have one entry per output"):
        g.img2img(images[:2], [0, 0], PROMPTS[:1], 0.5, 7.5, SEEDS[:2])
