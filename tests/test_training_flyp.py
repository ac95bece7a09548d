"""FLYP with the demo's tiny open_clip model: contrastive loss against class captions, zero-shot head, WiSE-FT."""

import open_clip
import pytest
import torch

from discl.config import ClassifierConfig
from discl.curricula import RealOnly
from discl.scoring.tiny_clip import create_tiny_clip, load_tiny_clip, save_tiny_clip, tiny_clip_config
from discl.training.flyp import FlypTask, load_flyp, save_flyp, wise_ft
from discl.training.loop import StageData, train_with_curriculum

NAMES = ["red", "green", "blue"]


def _colour_images(n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 60, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    images[torch.arange(n), labels] += 180  # the class is the dominant channel
    return images, labels


@pytest.mark.slow
def test_flyp_learns_with_clip_loss_and_predicts_with_the_zero_shot_head(tmp_path):
    scorer = create_tiny_clip(tiny_clip_config(16), tmp_path / "clip", seed=0)
    save_tiny_clip(scorer, tmp_path / "clip")
    task = FlypTask(load_tiny_clip(tmp_path / "clip"), NAMES, ["a photo of {name}.", "{name} in the wild."])
    assert isinstance(task.loss_fn, open_clip.ClipLoss)
    assert task.tokens.shape[:2] == (3, 2)
    images, labels = _colour_images(48, 0)
    val = _colour_images(30, 1)
    zero_shot = {k: v.clone() for k, v in task.module.state_dict().items()}
    before = (task.predict_proba(val[0]).argmax(-1) == val[1]).float().mean()
    cfg = ClassifierConfig(epochs=6, batch_size=16, lr=2e-3, weight_decay=0.2, optimizer="adamw", warmup_epochs=0.5)
    log = train_with_curriculum(task, cfg, RealOnly(6), lambda s: StageData(images, labels, 48, 0), val, "flyp", progress=False)
    probs = task.predict_proba(val[0])
    assert probs.shape == (30, 3) and torch.allclose(probs.sum(-1), torch.ones(30), atol=1e-5)
    after = (probs.argmax(-1) == val[1]).float().mean()
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert after >= 0.9 and after > before

    # WiSE-FT: the interpolation's end points are the two models, the middle is their average
    tuned = task.module.state_dict()
    key = next(k for k, v in tuned.items() if v.is_floating_point() and not torch.equal(v, zero_shot[k]))
    for alpha, want in ((0.0, zero_shot[key]), (1.0, tuned[key]), (0.5, (zero_shot[key] + tuned[key]) / 2)):
        assert torch.allclose(wise_ft(zero_shot, tuned, alpha)[key], want, atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        wise_ft(zero_shot, tuned, 1.5)

    save_flyp(task, tmp_path / "clip", "demo")
    again = load_flyp(tmp_path / "clip", load_tiny_clip(tmp_path / "clip"))
    assert torch.allclose(again.predict_proba(val[0]), probs, atol=1e-6)
