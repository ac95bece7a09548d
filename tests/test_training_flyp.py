"""FLYP with the demo's tiny open_clip model: contrastive loss against class captions, zero-shot head, WiSE-FT."""

import numpy as np
import open_clip
import pytest
import torch

from discl.config import ClassifierConfig, DeviceConfig, TrainRuntime
from discl.curricula import RealOnly
from discl.data.rows import ImageRows
from discl.scoring.tiny_clip import create_tiny_clip, load_tiny_clip, save_tiny_clip, tiny_clip_config
from discl.training.flyp import FlypTask, load_flyp, save_flyp, wise_ft
from discl.training.loop import StageRows, TrainData, train_with_curriculum
from discl.training.stream import predict_rows

from .streams import write_pngs

NAMES = ["red", "green", "blue"]


@pytest.mark.slow
def test_flyp_learns_with_clip_loss_and_predicts_with_the_zero_shot_head(tmp_path):
    scorer = create_tiny_clip(tiny_clip_config(16), tmp_path / "clip", seed=0)
    save_tiny_clip(scorer, tmp_path / "clip")
    task = FlypTask(load_tiny_clip(tmp_path / "clip"), NAMES, ["a photo of {name}.", "{name} in the wild."])
    assert isinstance(task.loss_fn, open_clip.ClipLoss)
    assert task.tokens.shape[:2] == (3, 2)
    rows = ImageRows(*write_pngs(tmp_path / "images", 78, 16))  # 48 to train on, 30 to validate
    val = ImageRows(rows.paths(range(48, 78)), rows.labels[48:])
    runtime = DeviceConfig(num_workers=0)
    zero_shot = {k: v.clone() for k, v in task.module.state_dict().items()}
    before = predict_rows([task], val, runtime)[0].accuracy(val.labels)
    cfg = ClassifierConfig(epochs=6, batch_size=16, lr=2e-3, weight_decay=0.2, optimizer="adamw", warmup_epochs=0.5)
    data = TrainData(rows, lambda s: StageRows(np.arange(48), 48, 0), np.arange(48, 78), 3)
    log = train_with_curriculum(task, cfg, TrainRuntime(num_workers=0), RealOnly(6), data, "flyp", progress=False)
    out = predict_rows([task], val, runtime)[0]
    after = out.accuracy(val.labels)
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert after >= 0.9 and after > before
    assert log[-1]["val_acc"] == pytest.approx(after)

    # WiSE-FT: the interpolation's end points are the two models, the middle is their average
    tuned = task.module.state_dict()
    key = next(k for k, v in tuned.items() if v.is_floating_point() and not torch.equal(v, zero_shot[k]))
    for alpha, want in ((0.0, zero_shot[key]), (1.0, tuned[key]), (0.5, (zero_shot[key] + tuned[key]) / 2)):
        assert torch.allclose(wise_ft(zero_shot, tuned, alpha)[key], want, atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        wise_ft(zero_shot, tuned, 1.5)

    save_flyp(task, tmp_path / "clip", "demo")
    again = load_flyp(tmp_path / "clip", load_tiny_clip(tmp_path / "clip"))
    reloaded = predict_rows([again], val, runtime)[0]
    assert np.array_equal(reloaded.pred, out.pred) and np.allclose(reloaded.p_true, out.p_true, atol=1e-6)
