import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from discl.generation.pixel_diffusion import PixelDiffusionGenerator, PixelDiffusionSpec, build_unet, train_pixel_diffusion
from discl.generation.plan import plan_spectrum
from discl.generation.runner import pending_rows, run_plan
from discl.prompts import PromptBank
from discl.rundir import RunDir


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    spec = PixelDiffusionSpec(num_classes=3, sample_size=8, channels=1)
    unet = build_unet(spec)
    from discl.generation.pixel_diffusion import training_scheduler

    return PixelDiffusionGenerator(unet, dict(training_scheduler().config), spec, inference_steps=8)


@pytest.fixture(scope="module")
def sources():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (5, 3, 16, 16), generator=g, dtype=torch.uint8)
    return {f"src {i}/x": images[i] for i in range(5)}


def _plan(sources, name):
    hard = pd.DataFrame({"sample_id": list(sources), "label": [0, 1, 2, 0, 1], "class_name": ["a", "b", "c", "a", "b"]})
    return plan_spectrum(hard, [0.3, 0.6, 1.0], [10, 20, 30], 2.0, PromptBank("{name}"), name)


def _read_all(run, plan):
    return {sid: np.asarray(Image.open(run.resolve(p))) for sid, p in zip(plan.synthetic_id, plan.path)}


def test_img2img_shapes_and_range(generator, sources):
    images = torch.stack(list(sources.values()))
    out = generator.img2img(images, [0, 1, 2, 0, 1], [""] * 5, 0.5, 2.0, [1, 2, 3, 4, 5])
    assert out.shape == images.shape and out.dtype == torch.uint8
    with pytest.raises(ValueError, match="strength"):
        generator.img2img(images, [0] * 5, [""] * 5, 0.0, 2.0, [1] * 5)


@pytest.mark.parametrize("batch_sizes", [(3, 7), (4, 45)])  # batch 1: test_batch_of_one_is_bitwise_the_batch_of_64
def test_images_do_not_depend_on_batch_size(tmp_path, generator, sources, batch_sizes):
    results = []
    for batch_size in batch_sizes:
        run = RunDir(tmp_path / f"b{batch_size}")
        plan = _plan(sources, generator.name)
        assert run_plan(run, plan, generator, sources, batch_size, progress=False) == len(plan)
        results.append(_read_all(run, plan))
    assert results[0].keys() == results[1].keys()
    for key in results[0]:
        assert np.array_equal(results[0][key], results[1][key]), key


def test_seeds_and_strengths_give_different_images(tmp_path, generator, sources):
    run = RunDir(tmp_path)
    plan = _plan(sources, generator.name)
    run_plan(run, plan, generator, sources, 16, progress=False)
    images = _read_all(run, plan)
    sid = next(iter(sources))
    assert not np.array_equal(images[f"{sid}|g000|seed10"], images[f"{sid}|g000|seed20"])
    assert not np.array_equal(images[f"{sid}|g000|seed10"], images[f"{sid}|g070|seed10"])


def test_rerun_makes_only_what_is_missing(tmp_path, generator, sources):
    run = RunDir(tmp_path)
    plan = _plan(sources, generator.name)
    run_plan(run, plan, generator, sources, 8, progress=False)
    before = _read_all(run, plan)
    removed = plan.path.iloc[[0, 7, 20]]
    for p in removed:
        run.resolve(p).unlink()
    assert len(pending_rows(run, plan)) == 3
    assert run_plan(run, plan, generator, sources, 8, progress=False) == 3
    assert run_plan(run, plan, generator, sources, 8, progress=False) == 0
    after = _read_all(run, plan)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert not list(tmp_path.rglob("*.tmp"))


def test_save_and_load_give_the_same_images(tmp_path, sources):
    images = torch.stack(list(sources.values()))
    labels = torch.tensor([0, 1, 2, 0, 1])
    spec = PixelDiffusionSpec(num_classes=3)
    trained = train_pixel_diffusion(images, labels, spec, steps=5, batch_size=8, progress=False, inference_steps=6)
    trained.save(tmp_path / "gen")
    loaded = PixelDiffusionGenerator.load(tmp_path / "gen", inference_steps=6)
    assert loaded.name == trained.name
    a = trained.img2img(images, labels.tolist(), [""] * 5, 0.8, 2.0, [1, 2, 3, 4, 5])
    b = loaded.img2img(images, labels.tolist(), [""] * 5, 0.8, 2.0, [1, 2, 3, 4, 5])
    assert torch.equal(a, b)


def test_low_strength_stays_close_to_the_source(tiny_run):
    run, _ = tiny_run
    synthetic = pd.read_parquet(run.synthetic)
    hard = pd.read_parquet(run.hard).set_index("sample_id")
    diff = {}
    for strength, rows in synthetic.groupby("strength"):
        d = [np.abs(np.asarray(Image.open(run.resolve(p)), float) - np.asarray(Image.open(run.resolve(hard.loc[s, "path"])), float)).mean()
             for p, s in zip(rows.path, rows.source_id)]
        diff[round(strength, 1)] = np.mean(d)
    assert diff[0.2] < diff[0.5] < diff[1.0]


def test_batch_of_one_is_bitwise_the_batch_of_64(generator):
    """A lone image (as a resume repairs it) is bitwise what it is inside a batch of 64 (or 70): the UNet
    always runs on chunks of 16 images, the last one padded (docs/generation.md, Determinism)."""
    from discl.generation.pixel_diffusion import UNET_CHUNK

    assert 64 % UNET_CHUNK == 0 and 70 % UNET_CHUNK != 0
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (70, 3, 16, 16), generator=g, dtype=torch.uint8)
    labels, seeds = [i % 3 for i in range(70)], list(range(500, 570))
    together = generator.img2img(images, labels, [""] * 70, 0.3, 2.0, seeds)  # a full chunk and a padded one
    for i in (0, 41, 66):
        alone = generator.img2img(images[i : i + 1], labels[i : i + 1], [""], 0.3, 2.0, seeds[i : i + 1])
        assert torch.equal(alone[0], together[i]), i
