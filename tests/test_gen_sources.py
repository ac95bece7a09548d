"""Source geometry: sources at their own size (or resized), rounded down as diffusers' image processor
rounds, batched by size; checked against diffusers itself and a reference-style pipeline call."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from discl.config import GeneratorConfig, load_config
from discl.generation.factory import create_generator
from discl.generation.plan import plan_spectrum
from discl.generation.runner import batches, run_plan
from discl.generation.sources import SourceImages, floor_to_multiple, load_rgb
from discl.generation.tiny import save_tiny_pipeline
from discl.prompts import PromptBank
from discl.rundir import RunDir
from discl.stages.generate import source_size


def _photo(path, width, height, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("width,height", [(500, 375), (480, 270), (375, 500), (333, 500), (64, 64), (9, 15)])
def test_rounding_is_diffusers_own(width, height):
    from diffusers.image_processor import VaeImageProcessor

    theirs = VaeImageProcessor(vae_scale_factor=8).get_default_height_width(torch.zeros(1, 3, height, width))
    assert floor_to_multiple(width, height, 8) == (theirs[1], theirs[0])
    assert floor_to_multiple(500, 375, 8) == (496, 368) and floor_to_multiple(480, 270, 8) == (480, 264)
    assert floor_to_multiple(5, 3, 8) == (8, 8)  # where diffusers would reach zero


def test_native_and_resized_sources_are_the_pixels_diffusers_feeds_its_vae(tmp_path):
    from diffusers.image_processor import VaeImageProcessor

    path = _photo(tmp_path / "a.png", 50, 37)
    native = load_rgb(path, None, 8)
    assert native.shape == (3, 32, 48)
    # diffusers' preprocessing of the same PIL image, as the reference calls the pipeline
    theirs = VaeImageProcessor(vae_scale_factor=8).preprocess(Image.open(path).convert("RGB"))
    assert torch.allclose(native.float()[None] / 255 * 2 - 1, theirs, atol=1e-6)
    # the reference's iWildCam: PIL .resize((480, 270)) first (bicubic), then the processor (here 48x27 -> 48x24)
    resized = load_rgb(path, (48, 27), 8)
    theirs = VaeImageProcessor(vae_scale_factor=8).preprocess(Image.open(path).convert("RGB").resize((48, 27)))
    assert resized.shape == (3, 24, 48) and torch.allclose(resized.float()[None] / 255 * 2 - 1, theirs, atol=1e-6)
    assert load_rgb(path, (16, 16), 1).shape == (3, 16, 16)  # the demo's square sources: unchanged


def test_sources_of_different_sizes_are_batched_by_size(tmp_path):
    paths = {"wide": _photo(tmp_path / "w.png", 23, 17), "tall": _photo(tmp_path / "t.png", 17, 23),
             "wide2": _photo(tmp_path / "w2.png", 22, 16, 1)}
    sources = SourceImages(paths, None, multiple=2)
    assert [sources.size_of(k) for k in paths] == [(22, 16), (16, 22), (22, 16)]
    assert sources["tall"].shape == (3, 22, 16)
    plan = pd.DataFrame({"source_id": ["wide", "tall", "wide2", "tall"], "strength": [0.5] * 4, "text_guidance": [2.0] * 4})
    groups = [(s, list(rows["source_id"])) for s, _, rows in batches(plan, 8, sources.size_of)]
    assert groups == [(0.5, ["tall", "tall"]), (0.5, ["wide", "wide2"])]
    assert [list(rows["source_id"]) for _, _, rows in batches(plan, 8)] == [["wide", "tall", "wide2", "tall"]]


def test_source_size_setting():
    assert source_size(load_config(None, None, ["data.image_size=32"])) == (32, 32)
    assert source_size(load_config(None, None, ["generate.source_size=native"])) is None
    assert source_size(load_config(None, None, ["generate.resize=[480,270]"])) == (480, 270)
    # checked when the settings are read, before any stage runs
    with pytest.raises(ValueError, match="generate.source_size = 'own': must be 'square' or 'native'"):
        source_size(load_config(None, None, ["generate.source_size=own"]))
    with pytest.raises(ValueError, match="contradict"):
        source_size(load_config(None, None, ["generate.source_size=native", "generate.resize=[480,270]"]))


def test_native_sizes_through_the_refiner_match_a_reference_pipeline_call(tmp_path):
    """Odd-sized sources at their own size in mixed batches: each output has its source's size rounded
    down and matches one plain pipeline call on the PIL image (what the reference does)."""
    gen = create_generator(GeneratorConfig(backend="diffusers", model=str(save_tiny_pipeline("sdxl-refiner", tmp_path / "p")),
                                           inference_steps=4))
    assert gen.multiple == 2  # the tiny VAE's factor (8 for the real refiner)
    sizes = {"a": (23, 17), "b": (17, 23), "c": (21, 15)}
    paths = {k: _photo(tmp_path / f"{k}.png", w, h, i) for i, (k, (w, h)) in enumerate(sizes.items())}
    run = RunDir(tmp_path / "run")
    hard = pd.DataFrame({"sample_id": list(sizes), "label": 0, "class_name": "cheetah"})
    plan = plan_spectrum(hard, [0.5], [10, 20], 5.0, PromptBank("a photo of {name} in the wild"), gen.name)
    made = run_plan(run, plan, gen, SourceImages(paths, None, multiple=gen.multiple), batch_size=4, progress=False)
    assert made == 6 and set(plan["prompt"]) == {"a photo of cheetah in the wild"}
    for row in plan.itertuples():
        out = np.asarray(Image.open(run.resolve(row.path)))
        w, h = floor_to_multiple(*sizes[row.source_id], 2)
        assert out.shape == (h, w, 3)
        with torch.no_grad():
            ref = gen.pipe(prompt=row.prompt, image=Image.open(paths[row.source_id]).convert("RGB"), strength=0.5,
                           num_inference_steps=4, guidance_scale=5.0, generator=[torch.Generator().manual_seed(row.noise_seed)],
                           output_type="np").images[0]
        diff = np.abs((ref * 255).round().astype(int) - out.astype(int))
        assert diff.max() <= 1
