"""Losses, optimisers, tail sampling, checkpoints and resuming to the same result, the adaptive hook."""

import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from discl.config import ClassifierConfig
from discl.curricula import Adaptive, CurriculumValidation, NonAdaptive
from discl.training.checkpoint import load_checkpoint
from discl.training.classifier import create_classifier
from discl.training.loop import CHECKPOINT, CURRICULUM_LOG, METRICS, StageData, TailSampling, train_with_curriculum
from discl.training.losses import balanced_softmax_loss, log_prior, training_loss
from discl.training.optim import create_optimizer, lr_at
from discl.training.tasks import ClassifierTask


def test_balanced_softmax_adds_the_log_prior_in_training_only():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    labels = torch.tensor([0, 2])
    counts = torch.tensor([80.0, 15.0, 5.0])
    prior = log_prior(counts)
    assert torch.allclose(prior.exp(), torch.tensor([0.8, 0.15, 0.05]))
    expected = F.cross_entropy(logits + torch.log(torch.tensor([0.8, 0.15, 0.05])), labels)
    assert torch.allclose(balanced_softmax_loss(logits, labels, prior), expected)
    assert torch.allclose(training_loss("ce", logits, labels), F.cross_entropy(logits, labels))
    # the tail class is penalised more when it is the label: BS loss > CE loss for label 2
    assert training_loss("bs", logits[1:], labels[1:], prior) > training_loss("ce", logits[1:], labels[1:])
    with pytest.raises(ValueError, match="classes \\[1\\] have none"):
        log_prior(torch.tensor([3.0, 0.0]))
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        training_loss("focal", logits, labels)
    stage_task = ClassifierTask(torch.nn.Identity(), "bs", counts, bs_prior="stage")
    stage_task.set_stage_counts(torch.tensor([80, 15, 105]))  # e.g. synthetic images added to class 2
    want = F.cross_entropy(logits + torch.log(torch.tensor([0.4, 0.075, 0.525])), labels)
    assert torch.allclose(training_loss("bs", logits, labels, stage_task.prior_log), want)
    real_task = ClassifierTask(torch.nn.Identity(), "bs", counts)
    real_task.set_stage_counts(torch.tensor([80, 15, 105]))  # the default keeps the real split's prior
    assert torch.allclose(real_task.prior_log, prior)
    with pytest.raises(ValueError, match="unknown Balanced Softmax prior"):
        ClassifierTask(torch.nn.Identity(), "bs", counts, bs_prior="batch")
    task = ClassifierTask(torch.nn.Identity(), "bs", counts)
    probs = task.predict_proba(torch.zeros(1, 3, dtype=torch.uint8))  # prediction uses plain logits
    assert torch.allclose(probs, torch.full((1, 3), 1 / 3))


def test_optimizers_and_schedule():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert type(create_optimizer("sgd", p, 0.1, 0.0)).__name__ == "SGD"
    assert type(create_optimizer("adam", p, 0.1, 0.0)).__name__ == "Adam"
    assert type(create_optimizer("adamw", p, 0.1, 0.0)).__name__ == "AdamW"
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        create_optimizer("lamb", p, 0.1, 0.0)
    # warm-up over the first epoch, peak after it, zero at the end; independent of batches per epoch
    assert lr_at(0, 0, 10, 10, 1.0, 1.0) == pytest.approx(0.001)
    assert lr_at(1, 0, 10, 10, 1.0, 1.0) == pytest.approx(1.0)
    assert lr_at(5, 5, 10, 10, 1.0, 1.0) == lr_at(5, 50, 100, 10, 1.0, 1.0)
    assert lr_at(9, 999, 1000, 10, 1.0, 1.0) < 1e-4


def test_tail_sampling_makes_the_tail_its_share_of_the_epoch():
    tail = torch.zeros(1000, dtype=torch.bool)
    tail[900:] = True  # 900 non-tail, 100 tail images
    order = TailSampling(0.3, 0.136).order(tail, torch.Generator().manual_seed(0))
    n_tail = int(tail[order].sum())
    assert (~tail[order]).sum() == 270 and len(set(order[~tail[order]].tolist())) == 270
    assert n_tail / len(order) == pytest.approx(0.136, abs=0.002)
    with pytest.raises(ValueError):
        TailSampling(0.3, 1.0)


def _data(stage):
    level = -1 if stage.level is None else stage.level
    g = torch.Generator().manual_seed(level + 2)
    n_syn = 0 if stage.level in (None, 100) else 6
    images = torch.randint(0, 256, (12 + n_syn, 3, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.arange(12 + n_syn) % 3
    return StageData(images, labels, 12, n_syn, torch.arange(12 + n_syn) >= 8)


VAL = (torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(9)),
       torch.tensor([0, 1, 2, 0, 1, 2]))


def _validation():
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    return CurriculumValidation(images, torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([10, 10, 50, 50, 100, 100]))


def _train(out_dir, stop_after=None, curriculum=None, cfg=None, echo=None):
    cfg = cfg or ClassifierConfig(model="resnet10t", epochs=5, batch_size=4, lr=1e-3, optimizer="adam")
    model = create_classifier(cfg.model, 3, seed=0)
    curriculum = curriculum or Adaptive([10, 50, 100], 4, 5, _validation(), smoothing=0.3)
    log = train_with_curriculum(ClassifierTask(model, "bs", torch.tensor([5.0, 4.0, 3.0])), cfg, curriculum, _data, VAL,
                                "m", progress=False, out_dir=out_dir, settings={"k": 1}, stop_after=stop_after,
                                sampling=TailSampling(0.5, 0.4), echo=echo)
    return log, model


def test_stop_and_resume_gives_identical_weights_and_logs(tmp_path):
    straight_log, straight = _train(tmp_path / "a")
    first, _ = _train(tmp_path / "b", stop_after=2)
    assert len(first) == 2
    tensors, meta = load_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert meta["run"]["epoch"] == 2 and any(k.startswith("optim/") for k in tensors)
    said = []
    resumed_log, resumed = _train(tmp_path / "b", echo=said.append)
    assert said == [f"m: resuming after epoch 2 of 5 ({tmp_path / 'b' / CHECKPOINT})"]
    drop = lambda log: [{k: v for k, v in r.items() if k not in ("seconds", "eval_seconds")} for r in log]
    assert drop(resumed_log) == drop(straight_log)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    lines = [json.loads(x) for x in (tmp_path / "b" / METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2, 3, 4]
    log = pd.read_parquet(tmp_path / "b" / CURRICULUM_LOG)
    assert log.equals(pd.read_parquet(tmp_path / "a" / CURRICULUM_LOG))
    # a checkpoint made with other settings is not resumed from
    other = train_with_curriculum(create_classifier("resnet10t", 3), ClassifierConfig(epochs=1, batch_size=4), NonAdaptive([10], 1, 1),
                                  _data, VAL, "m", progress=False, out_dir=tmp_path / "b", settings={"k": 2}, echo=said.append)
    assert len(other) == 1 and other[0]["epoch"] == 0
    assert "settings changed" in said[-1]


def test_the_adaptive_choice_is_what_the_next_stage_trains_on(tmp_path):
    """The reference computed the adaptive choice and then ignored it; here each stage's level must be
    the level the curriculum chose at the previous stage end."""
    log, _ = _train(tmp_path / "c")
    curr = pd.read_parquet(tmp_path / "c" / CURRICULUM_LOG)
    assert set(curr["stage"]) == {0, 1, 2, 3, 4}  # the evaluation before training only sets the baseline
    chosen = curr[curr["chosen"]].groupby("stage")["level"].first()
    by_stage = {r["stage"]: r["level"] for r in log}
    assert by_stage[0] == 10  # starts at the lowest level
    for stage in (1, 2, 3):
        assert by_stage[stage] == chosen[stage - 1]
    assert by_stage[4] == -1  # then real data only
    assert (curr.loc[curr.stage >= 0, "n_images"] == 2).all()


def test_weights_load_at_the_edge_from_a_local_file(tmp_path):
    from safetensors.torch import save_file

    source = create_classifier("resnet10t", 5, seed=1)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    model = create_classifier("resnet10t", 3, seed=2, pretrained=str(tmp_path / "w.safetensors"))
    assert torch.equal(model.state_dict()["conv1.0.weight"], source.state_dict()["conv1.0.weight"])
    assert model.get_classifier().out_features == 3  # the head is sized for the task, not loaded
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        create_classifier("resnet10t", 3, pretrained=str(tmp_path / "nothing.safetensors"))
