"""Losses, optimisers, tail sampling, checkpoints and resuming to the same result, the adaptive hook."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from discl.config import AugmentConfig, ClassifierConfig, TrainRuntime
from discl.curricula import Adaptive, CurriculumValidation, NonAdaptive
from discl.training.checkpoint import load_checkpoint
from discl.training.classifier import create_classifier
from discl.training.loop import CHECKPOINT, CURRICULUM_LOG, METRICS, train_with_curriculum
from discl.training.losses import balanced_softmax_loss, log_prior, training_loss
from discl.training.optim import create_optimizer, lr_at
from discl.training.sampling import TailSampling
from discl.training.tasks import ClassifierTask
from discl.training.transforms import classifier_transforms

from .streams import linear_task, make_data


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
    stage_task = ClassifierTask(torch.nn.Identity(), None, "bs", counts, bs_prior="stage")
    stage_task.set_stage_counts(torch.tensor([80, 15, 105]))  # e.g. synthetic images added to class 2
    want = F.cross_entropy(logits + torch.log(torch.tensor([0.4, 0.075, 0.525])), labels)
    assert torch.allclose(training_loss("bs", logits, labels, stage_task.prior_log), want)
    real_task = ClassifierTask(torch.nn.Identity(), None, "bs", counts)
    real_task.set_stage_counts(torch.tensor([80, 15, 105]))  # the default keeps the real split's prior
    assert torch.allclose(real_task.prior_log, prior)
    with pytest.raises(ValueError, match="unknown Balanced Softmax prior"):
        ClassifierTask(torch.nn.Identity(), None, "bs", counts, bs_prior="batch")
    task = ClassifierTask(torch.nn.Identity(), None, "bs", counts)
    assert torch.equal(task.logits(logits), logits)  # prediction uses plain logits


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


def test_tail_sampling_with_replacement_makes_the_tail_its_share_of_the_epoch():
    tail = np.zeros(1000, dtype=bool)
    tail[900:] = True  # 900 non-tail, 100 tail images
    order = TailSampling(0.3, 0.136, rule="replacement").order(tail, np.random.default_rng(0))
    assert (~tail[order]).sum() == 270 and len(set(order[~tail[order]].tolist())) == 270
    assert tail[order].sum() / len(order) == pytest.approx(0.136, abs=0.002)
    with pytest.raises(ValueError):
        TailSampling(0.3, 1.0)
    with pytest.raises(ValueError, match="unknown tail sampling rule 'x'"):
        TailSampling(rule="x")


def test_tail_sampling_reference_rule_keeps_every_real_tail_image_and_fills_with_synthetic_ones():
    # 900 real non-tail, 20 real tail, 200 synthetic (tail) rows
    real = np.arange(1120) < 920
    tail = np.arange(1120) >= 900
    rule = TailSampling(0.3, 0.136)
    order = rule.order(tail, np.random.default_rng(0), real, in_curriculum=True)
    keep = order[~tail[order]]
    assert len(keep) == 270 and len(set(keep.tolist())) == 270  # int(0.3 * 900), without replacement
    n_tail = int(0.136 / 0.864 * 270)  # 42, as the reference computes it
    assert tail[order].sum() == n_tail
    assert sorted(order[tail[order] & real[order]].tolist()) == list(range(900, 920))  # each real tail image once
    fill = order[~real[order]]
    assert len(fill) == n_tail - 20 and len(set(fill.tolist())) == len(fill)  # 200 in the pool: no repeats
    # a pool smaller than what is needed is drawn with replacement
    small = np.arange(930) >= 900
    order = rule.order(small, np.random.default_rng(1), np.arange(930) < 920, in_curriculum=True)
    assert (~np.isin(order, np.arange(920))).sum() == n_tail - 20 and len(set(order[order >= 920].tolist())) <= 10
    # after the curriculum: the tail share comes from the real tail images, with replacement
    order = rule.order(tail[:920], np.random.default_rng(2), real[:920], in_curriculum=False)
    assert tail[order].sum() == n_tail and (~tail[order]).sum() == 270 and len(order) == 270 + n_tail


def _validation(data):
    positions = data.val  # 6 rows: two per level
    return CurriculumValidation(positions, data.rows.labels[positions], [10, 10, 50, 50, 100, 100])


def _train(tmp_path, out_dir, stop_after=None, stop_after_steps=None, echo=None, **runtime):
    cfg = ClassifierConfig(model="resnet10t", epochs=5, batch_size=4, lr=1e-3, optimizer="adam")
    data = make_data(tmp_path / "images")
    model = create_classifier(cfg.model, 3, seed=0)
    task = ClassifierTask(model, classifier_transforms(model, AugmentConfig(), 16), "bs", torch.tensor([5.0, 4.0, 3.0]))
    curriculum = Adaptive([10, 50, 100], 4, 5, _validation(data), smoothing=0.3)
    log = train_with_curriculum(task, cfg, TrainRuntime(num_workers=0, **runtime), curriculum, data, "m", progress=False,
                                out_dir=out_dir, settings={"k": 1}, stop_after=stop_after, stop_after_steps=stop_after_steps,
                                sampling=TailSampling(0.5, 0.4), echo=echo)
    return log, model


def _drop_times(log):
    return [{k: v for k, v in r.items() if k not in ("seconds", "eval_seconds")} for r in log]


def test_stop_and_resume_gives_identical_weights_and_logs(tmp_path):
    straight_log, straight = _train(tmp_path, tmp_path / "a")
    first, _ = _train(tmp_path, tmp_path / "b", stop_after=2)
    assert len(first) == 2
    tensors, meta = load_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert meta["run"]["epoch"] == 2 and any(k.startswith("optim/") for k in tensors)
    said = []
    resumed_log, resumed = _train(tmp_path, tmp_path / "b", echo=said.append)
    assert said == [f"m: resuming after epoch 2 of 5 ({tmp_path / 'b' / CHECKPOINT})"]
    assert _drop_times(resumed_log) == _drop_times(straight_log)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    lines = [json.loads(x) for x in (tmp_path / "b" / METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2, 3, 4]
    log = pd.read_parquet(tmp_path / "b" / CURRICULUM_LOG)
    assert log.equals(pd.read_parquet(tmp_path / "a" / CURRICULUM_LOG))
    # a checkpoint made with other settings is not resumed from
    data = make_data(tmp_path / "images")
    other = train_with_curriculum(linear_task(), ClassifierConfig(epochs=1, batch_size=4), TrainRuntime(num_workers=0),
                                  NonAdaptive([10], 1, 1), data, "m", progress=False, out_dir=tmp_path / "b",
                                  settings={"k": 2}, echo=said.append)
    assert len(other) == 1 and other[0]["epoch"] == 0
    assert "settings changed" in said[-1]


def test_a_run_stopped_inside_an_epoch_resumes_to_the_same_result(tmp_path):
    straight_log, straight = _train(tmp_path, tmp_path / "a")
    # 6 steps: one epoch of 4 steps (15 images of the tail-sampled epoch, batches of 4) and 2 steps into the next
    part, _ = _train(tmp_path, tmp_path / "b", stop_after_steps=6, checkpoint_every_steps=1)
    _, meta = load_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert len(part) == 1 and meta["run"]["epoch"] == 1 and meta["run"]["batch"] == 2
    said = []
    resumed_log, resumed = _train(tmp_path, tmp_path / "b", echo=said.append, checkpoint_every_steps=1)
    assert said == [f"m: resuming after epoch 1 and 2 steps of 5 ({tmp_path / 'b' / CHECKPOINT})"]
    assert _drop_times(resumed_log) == _drop_times(straight_log)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_the_adaptive_choice_is_what_the_next_stage_trains_on(tmp_path):
    """The reference computed the adaptive choice and then ignored it; here each stage's level must be
    the level the curriculum chose at the previous stage end."""
    log, _ = _train(tmp_path, tmp_path / "c")
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


def test_selection_keeps_the_weights_of_the_epoch_best_on_the_selection_rows(tmp_path):
    from discl.training.loop import BEST

    data = make_data(tmp_path / "images")
    data.select = data.val
    cfg = ClassifierConfig(epochs=4, batch_size=8, lr=5e-2, optimizer="sgd", warmup_epochs=0.0)
    said = []
    task = linear_task()
    log = train_with_curriculum(task, cfg, TrainRuntime(num_workers=0), NonAdaptive([10], 2, 4), data, "s",
                                progress=False, out_dir=tmp_path / "out", settings={}, echo=said.append)
    accs = [r["select_acc"] for r in log]
    best = int(np.argmax(accs))  # the first of equal bests: only a strict improvement moves the choice
    assert said[-1] == f"s: keeping the weights of epoch {best + 1} (selection accuracy {100 * accs[best]:.2f}%)"
    from safetensors.torch import load_file

    kept = load_file(str(tmp_path / "out" / BEST))
    assert all(torch.equal(kept[k], v) for k, v in task.module.state_dict().items())
    _, meta = load_checkpoint(tmp_path / "out" / CHECKPOINT)
    assert meta["run"]["best"] == {"epoch": best, "accuracy": accs[best]}
