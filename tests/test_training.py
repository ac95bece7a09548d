"""The training loop on image rows streamed from disk: curriculum stages, determinism whatever the
number of loader workers, mixed precision, accumulation, unreadable files."""

import numpy as np
import pytest
import torch

from discl.config import AugmentConfig, ClassifierConfig, TrainRuntime
from discl.curricula import NonAdaptive, RealOnly
from discl.data.rows import ImageRows
from discl.training.classifier import create_classifier
from discl.training.loop import SkippedImagesError, train_with_curriculum
from discl.training.optim import cosine_lr
from discl.training.tasks import ClassifierTask
from discl.training.transforms import classifier_transforms

from .streams import linear_task, make_data


def test_cosine_lr_warms_up_then_decays_to_zero():
    lrs = [cosine_lr(s, 100, 1.0, warmup=10) for s in range(101)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert abs(lrs[100]) < 1e-12


def test_image_rows_are_compact_and_round_trip_odd_paths():
    paths = ["/data/a b/ünïcode.png", "/x/y.jpg", "rel/z'q.png", ""]
    rows = ImageRows(paths, [3, 1, 2, 0])
    assert [rows.path(i) for i in range(4)] == paths and rows.labels.tolist() == [3, 1, 2, 0]
    both = ImageRows.concat([rows, ImageRows(["/other.png"], [7])])
    assert both.paths(range(5)) == paths + ["/other.png"] and both.labels.tolist() == [3, 1, 2, 0, 7]
    assert rows.nbytes() < 200  # one buffer and two arrays, no per-path Python object
    with pytest.raises(ValueError, match="2 paths but 1 labels"):
        ImageRows(["a", "b"], [1])


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train(tmp_path, workers=0, epochs=4, **runtime):
    data = make_data(tmp_path / "images")
    cfg = ClassifierConfig(model="resnet10t", epochs=epochs, batch_size=8, lr=1e-3, optimizer="adam", seed=3)
    model = create_classifier("resnet10t", 3, seed=0)
    task = ClassifierTask(model, classifier_transforms(model, AugmentConfig(), 16))
    log = train_with_curriculum(task, cfg, TrainRuntime(num_workers=workers, **runtime), NonAdaptive([50, 10], 3, epochs),
                                data, "x", progress=False)
    return log, model


def test_loop_follows_the_curriculum_and_gives_the_same_weights_whatever_the_number_of_workers(tmp_path):
    log, model = _train(tmp_path, workers=0)
    assert [r["level"] for r in log] == [10, 10, 50, -1]  # the even split gives the remainder to the first stage
    assert [r["stage"] for r in log] == [0, 0, 1, 2]
    assert [r["n_synthetic"] for r in log] == [6, 6, 6, 0] and [r["n_seen"] for r in log] == [30, 30, 30, 24]
    assert all(r["train_loss"] > 0 and r["n_skipped"] == 0 for r in log)
    assert all(0 <= r["val_acc"] <= 1 for r in log)
    log2, model2 = _train(tmp_path, workers=2)
    assert [r["train_loss"] for r in log2] == [r["train_loss"] for r in log]
    for (k, a), b in zip(_weights(model).items(), _weights(model2).values()):
        assert torch.equal(a, b), k


def test_eval_every_skips_validation_passes_but_not_the_last(tmp_path):
    log, _ = _train(tmp_path, eval_every=3, epochs=4)
    assert [np.isnan(r["val_acc"]) for r in log] == [True, True, False, False]


def _run_linear(tmp_path, **runtime):
    data = make_data(tmp_path / "images")
    task = linear_task()
    cfg = ClassifierConfig(epochs=2, batch_size=10, lr=1e-2, optimizer="sgd", momentum=0.0, warmup_epochs=0.0)
    log = train_with_curriculum(task, cfg, TrainRuntime(num_workers=0, **runtime), RealOnly(2), data, "lin", progress=False)
    return log, task.module


def test_accumulation_splits_the_batch_without_changing_the_step(tmp_path):
    _, one = _run_linear(tmp_path)
    _, three = _run_linear(tmp_path, accumulate=3)
    for (k, a), b in zip(_weights(one).items(), _weights(three).values()):
        assert torch.allclose(a, b, atol=1e-6), k


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_under_autocast(tmp_path, precision):
    full, full_model = _run_linear(tmp_path)
    log, model = _run_linear(tmp_path, precision=precision)
    assert all(np.isfinite(r["train_loss"]) for r in log)
    assert abs(log[-1]["train_loss"] - full[-1]["train_loss"]) < 0.1  # close to fp32, not identical
    start = linear_task().module.fc.weight
    assert not torch.allclose(model.fc.weight, start)  # fp16's gradient scaler let the step through


def test_an_unreadable_image_is_skipped_and_counted_until_there_are_too_many(tmp_path, capsys):
    data = make_data(tmp_path / "images")
    broken = data.rows.path(5)
    with open(broken, "wb") as f:
        f.write(b"not a png")
    said = []
    task = linear_task()
    cfg = ClassifierConfig(epochs=1, batch_size=10, lr=1e-2, optimizer="sgd")
    log = train_with_curriculum(task, cfg, TrainRuntime(num_workers=0, max_skipped_fraction=0.1), RealOnly(1), data, "lin",
                                progress=False, echo=said.append)
    assert log[0]["n_skipped"] == 1 and log[0]["n_seen"] == 23
    assert any(broken in s and "1 of 24 images of epoch 1 could not be read" in s for s in said)
    (tmp_path / "images" / "img 006 é.png").unlink()  # a missing file counts the same way
    with pytest.raises(SkippedImagesError, match=r"2 of 24 images of epoch 1 could not be read.*img 005.*img 006"):
        train_with_curriculum(linear_task(), cfg, TrainRuntime(num_workers=0, max_skipped_fraction=0.05), RealOnly(1),
                              data, "lin", progress=False)


def test_transforms_come_from_timm_with_the_models_own_normalisation():
    model = create_classifier("resnet10t", 3)
    t = classifier_transforms(model, AugmentConfig(input_size=224, crop_pct=0.875, scale=[0.08, 1.0], ratio=[0.75, 4 / 3],
                                                   hflip=0.5, color_jitter=0.4, interpolation="bilinear"), 16)
    names = [type(x).__name__ for x in t.eval.transforms]
    assert names[:2] == ["Resize", "CenterCrop"] and t.eval.transforms[0].size == 256  # 224 / 0.875
    assert [type(x).__name__ for x in t.train.transforms][:3] == ["RandomResizedCropAndInterpolation",
                                                                  "RandomHorizontalFlip", "ColorJitter"]
    assert t.mean == (0.485, 0.456, 0.406) and t.input_size == 224  # ImageNet's, from the model's config
    custom = classifier_transforms(model, AugmentConfig(mean=[0.5] * 3, std=[0.25] * 3), 16)
    assert custom.mean == (0.5, 0.5, 0.5) and custom.std == (0.25, 0.25, 0.25) and custom.input_size == 16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_cuda_where_there_is_none_is_one_clear_line(run_copy, capsys):
    from discl.cli import main

    run, _ = run_copy
    for stage, key in (("train", "train.device"), ("eval", "eval.device"), ("mine", "mine.base.device")):
        with pytest.raises(SystemExit) as exit_info:
            main([stage, str(run.root), "--no-progress", "--set", f"{key}=cuda", "--set", "mine.base.epochs=1"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: {key} is 'cuda' but no CUDA device is available here (torch.cuda.is_available() is "
                       "False); use auto or cpu"], stage
