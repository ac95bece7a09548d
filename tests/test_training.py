import torch

from discl.config import ClassifierConfig
from discl.curricula import NonAdaptive
from discl.training.classifier import create_classifier
from discl.training.loop import StageData, cosine_lr, random_shift, train_with_curriculum


def test_cosine_lr_warms_up_then_decays_to_zero():
    lrs = [cosine_lr(s, 100, 1.0, warmup=10) for s in range(101)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert abs(lrs[100]) < 1e-12


def test_random_shift_moves_content_without_changing_it():
    images = torch.zeros(8, 3, 6, 6, dtype=torch.uint8)
    images[:, :, 2:4, 2:4] = torch.arange(1, 9, dtype=torch.uint8)[:, None, None, None]
    shifted = random_shift(images, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    assert torch.equal(shifted.sum((1, 2, 3)), images.sum((1, 2, 3)))
    assert not torch.equal(shifted, images)
    assert torch.equal(shifted, random_shift(images, torch.Generator().manual_seed(0)))


def _data(stage):
    level = stage.level
    g = torch.Generator().manual_seed(0 if level is None else level + 1)
    n_syn = 0 if level in (None, 100) else 6
    images = torch.randint(0, 256, (10 + n_syn, 3, 16, 16), generator=g, dtype=torch.uint8)
    return StageData(images, torch.arange(10 + n_syn) % 3, 10, n_syn)


def test_loop_follows_the_curriculum_and_is_deterministic():
    cfg = ClassifierConfig(model="resnet10t", epochs=5, batch_size=4, lr=1e-3)
    val = (torch.zeros(3, 3, 16, 16, dtype=torch.uint8), torch.tensor([0, 1, 2]))
    runs = []
    for _ in range(2):
        model = create_classifier(cfg.model, 3, seed=0)
        log = train_with_curriculum(model, cfg, NonAdaptive([50, 10], 4, 5), _data, val, "x", progress=False)
        runs.append((log, model))
    log = runs[0][0]
    assert [r["level"] for r in log] == [10, 10, 50, 50, -1]
    assert [r["stage"] for r in log] == [0, 0, 1, 1, 2]
    assert [r["n_synthetic"] for r in log] == [6, 6, 6, 6, 0]
    assert all(0 <= r["val_acc"] <= 1 and r["train_loss"] > 0 for r in log)
    assert [r["train_loss"] for r in log] == [r["train_loss"] for r in runs[1][0]]
    for a, b in zip(runs[0][1].state_dict().values(), runs[1][1].state_dict().values()):
        assert torch.equal(a, b)
