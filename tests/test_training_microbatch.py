"""One step's split into micro-batches and processes, FLYP's global loss under accumulation (gradient
caching), BatchNorm on a last batch of one image at a 1x1 feature map, and a batch too small for the
launched processes."""

from functools import partial

import numpy as np
import pytest
import torch
from timm.models.resnet import BasicBlock, ResNet

from discl.config import AugmentConfig, ClassifierConfig, TrainRuntime
from discl.curricula import RealOnly
from discl.data.rows import ImageRows
from discl.scoring.tiny_clip import create_tiny_clip, tiny_clip_config
from discl.training import ddp, microbatch
from discl.training.device import grad_scaler
from discl.training.flyp import FlypTask
from discl.training.loop import StageRows, TrainData, train_with_curriculum
from discl.training.microbatch import global_loss_step, step_plan
from discl.training.tasks import ClassifierTask
from discl.training.transforms import classifier_transforms

from .streams import write_pngs


def _plans(valid_global: np.ndarray, world: int, accumulate: int, monkeypatch, **kw):
    """Every process's plan of one global batch, the processes' flags exchanged as all_gather_host would."""
    n = len(valid_global)
    width = -(-n // world)
    every = np.zeros((world, width), dtype=np.int64)
    for r in range(world):
        every[r, : len(range(r, n, world))] = valid_global[r::world]
    monkeypatch.setattr(ddp, "all_gather_host", lambda flags: every)
    return [step_plan(torch.from_numpy(valid_global[r::world].copy() if r < n else np.zeros(1, bool)), n, r, world,
                      accumulate, **kw) for r in range(world)]


def test_micro_batches_are_the_global_batch_split_alike_for_any_number_of_processes(monkeypatch):
    valid = np.ones(7, dtype=bool)
    valid[4] = False  # unreadable
    one = _plans(valid, 1, 2, monkeypatch)[0]
    assert [m.tolist() for m in one.micro] == [[0, 1, 2], [3, 5, 6]] and one.n_images == 6
    for world in (2, 3):
        plans = _plans(valid, world, 2, monkeypatch)
        for j, rows in enumerate(one.micro):  # each process's share of micro-batch j, back in global positions
            joined = sorted(r + world * int(i) for r, p in enumerate(plans) for i in p.micro[j])
            assert joined == rows.tolist()
        assert sum(p.n_local for p in plans) == 6 and all(p.n_images == 6 for p in plans)
        assert plans[0].counts.tolist() == [[len(p.micro[j]) for j in range(2)] for p in plans]
    # a last batch of 2 over 3 processes: one holds nothing, and still runs every micro-batch
    plans = _plans(np.ones(2, dtype=bool), 3, 4, monkeypatch)
    assert [len(p.micro) for p in plans] == [2, 2, 2] and plans[2].n_local == 0
    # BatchNorm: a batch with one readable image is not trained on, by any process
    assert _plans(np.array([False, True, False]), 3, 1, monkeypatch, min_images=2) == [None] * 3
    assert _plans(np.array([True, True, False]), 1, 4, monkeypatch, min_images=2)[0].micro[0].tolist() == [0, 1]
    # BatchNorm per process: a process's single image of a micro-batch is left out
    plans = _plans(np.ones(5, dtype=bool), 3, 1, monkeypatch, min_images=2, min_per_process=2)
    assert [p.n_local for p in plans] == [2, 2, 0] and plans[0].n_images == 4


def _flyp(tmp_path) -> FlypTask:
    scorer = create_tiny_clip(tiny_clip_config(16), tmp_path / "clip", seed=0)
    return FlypTask(scorer, ["red", "green", "blue"], ["a photo of {name}.", "{name}."])


def test_flyp_accumulation_keeps_the_contrastive_loss_over_the_whole_batch(tmp_path):
    task = _flyp(tmp_path)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, 3, 16, 16, generator=g), torch.arange(10) % 3
    variants = torch.arange(10) % 2
    grads, sums = {}, {}
    for k in (1, 4):
        task.module.zero_grad(set_to_none=True)
        plan = step_plan(torch.ones(10, dtype=torch.bool), 10, 0, 1, k)
        assert len(plan.micro) == k
        sums[k] = torch.zeros(2)
        global_loss_step(task, task.net, plan, x, y, variants, "fp32", grad_scaler(torch.device("cpu"), "fp32"), sums[k])
        grads[k] = {n: p.grad.clone() for n, p in task.module.named_parameters() if p.grad is not None}
    assert set(grads[1]) == set(grads[4]) and "logit_scale" in grads[1]
    for name, g1 in grads[1].items():
        assert torch.allclose(grads[4][name], g1, rtol=1e-4, atol=1e-6 * float(g1.abs().max()) + 1e-9), name
    assert torch.allclose(sums[4], sums[1], rtol=1e-6)
    # what a loss per micro-batch would give instead (each image against 2 or 3 negatives, not 9): far off
    task.module.zero_grad(set_to_none=True)
    for rows in torch.arange(10).tensor_split(4):
        (task.loss(x[rows], y[rows], variants[rows])[0] / 4).backward()
    visual = next(n for n in grads[1] if n.startswith("visual") and grads[1][n].abs().max() > 0)
    per_micro = dict(task.module.named_parameters())[visual].grad
    assert not torch.allclose(per_micro, grads[1][visual], rtol=1e-2, atol=1e-3 * float(grads[1][visual].abs().max()))


def _tiny_resnet() -> ClassifierTask:
    torch.manual_seed(0)
    model = ResNet(BasicBlock, (1, 1, 1, 1), num_classes=3, channels=(8, 8, 8, 8), stem_width=8,
                   norm_layer=partial(torch.nn.BatchNorm2d))
    model.pretrained_cfg = {"mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0, "interpolation": "bilinear"}
    return ClassifierTask(model, classifier_transforms(model, AugmentConfig(mean=[0.5] * 3, std=[0.5] * 3), 16))


def test_batchnorm_at_a_1x1_feature_map_survives_a_last_batch_of_one_image(tmp_path):
    task = _tiny_resnet()
    with torch.no_grad():  # 16-pixel images reach the last blocks as 1x1 maps
        assert task.module.eval().forward_features(torch.zeros(2, 3, 16, 16)).shape[-2:] == (1, 1)
    rows = ImageRows(*write_pngs(tmp_path / "images", 9, 16))
    # 9 rows in batches of 4: 4, 4 and a last batch of 1, which BatchNorm cannot normalise
    data = TrainData(rows, lambda s: StageRows(np.arange(9), 9, 0), np.zeros(0, dtype=np.int64), 3)
    before = {k: v.clone() for k, v in task.module.state_dict().items()}
    cfg = ClassifierConfig(epochs=2, batch_size=4, lr=0.05, optimizer="sgd", momentum=0.0, warmup_epochs=0.0)
    log = train_with_curriculum(task, cfg, TrainRuntime(num_workers=0, accumulate=2), RealOnly(2), data, "bn", progress=False)
    assert [r["n_seen"] for r in log] == [9, 9] and all(np.isfinite(r["train_loss"]) for r in log)
    after = task.module.state_dict()
    assert not torch.allclose(after["fc.weight"], before["fc.weight"])
    assert int(after["bn1.num_batches_tracked"]) == 2 * 2 * 2  # 2 epochs of 2 steps of 2 micro-batches; the last batch none
    assert torch.isfinite(after["layer4.0.bn2.running_var"]).all()


def test_a_batch_smaller_than_the_launched_processes_stops_before_training(tmp_path, monkeypatch):
    from discl.config import RunConfig
    from discl.stages.train import run_train_from_env

    monkeypatch.setattr(ddp, "world_size", lambda: 3)
    monkeypatch.setattr(ddp, "init_from_env", lambda *a, **k: False)
    cfg = RunConfig()
    cfg.train.classifier.batch_size = 2
    with pytest.raises(ValueError, match=r"^train.classifier.batch_size \(2\) is smaller than the 3 processes launched"):
        run_train_from_env(None, cfg)  # type: ignore[arg-type]  (no run is read)
    with pytest.raises(ValueError, match=r"^batch_size \(2\) is smaller than the 3 processes"):
        train_with_curriculum(_tiny_resnet(), ClassifierConfig(batch_size=2), TrainRuntime(num_workers=0), RealOnly(1),
                              TrainData(ImageRows([], []), None, np.zeros(0, dtype=np.int64), 3), "x")  # type: ignore[arg-type]


def test_host_batchnorm_is_plain_batchnorm_in_one_process():
    """The CPU SyncBatchNorm falls back to BatchNorm itself where no process group is active."""
    bn = torch.nn.BatchNorm2d(4)
    sync = torch.nn.BatchNorm2d(4)
    sync.__class__ = ddp.HostSyncBatchNorm
    x = torch.randn(3, 4, 2, 2)
    assert torch.equal(bn(x), sync(x)) and torch.equal(bn.running_var, sync.running_var)
    assert microbatch.no_sync(bn, True) is not None
