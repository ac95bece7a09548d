"""The demo's small models learn something real (at reduced training budgets, so the suite stays fast).

Each judge is independent of the model it judges: CLIP is scored against the test
labels, the generator by a linear classifier fitted on real images of every class."""

import pytest
import torch
from sklearn.linear_model import LogisticRegression

from discl.config import load_config
from discl.data import load_split, prepare_dataset
from discl.generation.pixel_diffusion import PixelDiffusionSpec, train_pixel_diffusion
from discl.rundir import RunDir
from discl.scoring.base import zero_shot_predict
from discl.scoring.tiny_clip import create_tiny_clip, tiny_clip_config, train_tiny_clip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    run = RunDir(tmp_path_factory.mktemp("quality"))
    cfg = load_config()
    dataset, classes, _ = prepare_dataset(run, cfg.data)
    foundation = load_split(run, dataset[dataset.split == "foundation"], cfg.data.image_size)
    test = load_split(run, dataset[dataset.split == "test"], cfg.data.image_size)
    return run, classes, foundation, test


def test_tiny_clip_zero_shot_beats_chance_by_far(digits):
    run, classes, (images, labels), (test_images, test_labels) = digits
    names = classes["class_name"].tolist()
    scorer = create_tiny_clip(tiny_clip_config(16), run.root / "clip")
    train_tiny_clip(scorer, images, [f"a photo of the digit {names[y]}" for y in labels], steps=250, progress=False)
    pred = zero_shot_predict(scorer, test_images, [f"a photo of the digit {n}" for n in names])
    assert (pred == test_labels).float().mean() >= 0.7  # chance: 0.1


def test_generator_makes_the_class_it_is_asked_for(digits):
    run, classes, (images, labels), (test_images, test_labels) = digits

    def flat(x):
        return x.float().mean(1).reshape(len(x), -1).numpy() / 255

    judge = LogisticRegression(max_iter=2000).fit(flat(images), labels.numpy())
    assert judge.score(flat(test_images), test_labels.numpy()) > 0.9
    generator = train_pixel_diffusion(images, labels, PixelDiffusionSpec(num_classes=10), steps=400, progress=False, inference_steps=20)
    wanted = torch.arange(10).repeat(10)
    # Strength 1.0: the source is drowned in noise, so the class must come from the conditioning.
    sources = test_images[torch.randperm(len(test_images), generator=torch.Generator().manual_seed(0))[:100]]
    out = generator.img2img(sources, wanted.tolist(), [""] * 100, 1.0, 2.0, list(range(100)))
    consistency = (judge.predict(flat(out)) == wanted.numpy()).mean()
    assert consistency >= 0.5, consistency  # chance: 0.1
