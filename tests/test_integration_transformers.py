"""discl.integrations.transformers: the Hugging Face Trainer trains on the curriculum's epochs (the stages `discl
train` visits, every batch), an adaptive curriculum looks at the model, and a run resumed from a checkpoint in the
middle of an epoch trains the same batches and weights as one that was not stopped."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

import discl

pytest.importorskip("accelerate")
from transformers import TrainingArguments  # noqa: E402

from discl.integrations.transformers import STATE_FILE, CurriculumTrainer  # noqa: E402

from .curriculum_helpers import assert_resumed_alike, check_three_processes  # noqa: E402
from .hf_ddp_worker import TinyNet  # noqa: E402


def args(folder, **options):
    options = {"output_dir": str(folder), "per_device_train_batch_size": 7, "learning_rate": 0.05, "optim": "sgd",
               "report_to": "none", "save_strategy": "no", "logging_strategy": "no", "use_cpu": True, "seed": 0,
               "disable_tqdm": True, "dataloader_pin_memory": False} | options
    return TrainingArguments(**options)


def test_the_trainer_visits_every_batch_of_the_stages_discl_train_visits(run_copy, tmp_path):
    run, _ = run_copy
    data = discl.CurriculumData(run.root, "non-adaptive", echo=lambda *_: None)
    expected = [epoch.labels.tolist() for epoch in discl.CurriculumData(run.root, "non-adaptive", echo=lambda *_: None).epochs()]
    model = TinyNet(data.num_classes)
    trainer = CurriculumTrainer(model=model, args=args(tmp_path), curriculum=data)
    steps = len(trainer.get_train_dataloader())
    result = trainer.train()
    trained = pd.read_parquet(run.method_dir("non-adaptive") / "log.parquet")  # `discl train` on this run
    sizes = (trained["n_real"] + trained["n_synthetic"]).tolist()
    assert steps == sum(math.ceil(n / 7) for n in sizes) == result.global_step  # exact for a fixed schedule
    assert sum(model.batches, []) == sum(expected, [])  # every image of every epoch, in the curriculum's order
    # Every stage ended, the last one too (counted as trained when training ends), as `discl train` logged them.
    assert [-1 if s.level is None else s.level for s in data.history] == trained["level"].tolist()
    assert data.epoch == len(trained) and not data.handed_out
    assert trainer.lr_scheduler.get_last_lr()[0] < 1e-3  # cosine over the curriculum's epochs, down to ~0 at the end


def test_an_adaptive_run_resumed_mid_epoch_trains_the_same_batches_and_weights(run_copy, tmp_path):
    run, _ = run_copy

    def train(folder, resume=None, **options):
        torch.manual_seed(0)
        data = discl.CurriculumData(run.root, "adaptive", echo=lambda *_: None)
        model = TinyNet(data.num_classes)
        trainer = CurriculumTrainer(model=model, args=args(folder, **options), curriculum=data)
        trainer.train(resume_from_checkpoint=resume)
        return data, model

    whole_data, whole = train(tmp_path / "whole")
    chosen = [r["level"] for r in whole_data.curriculum_log if r.get("chosen")]
    assert len(chosen) == 4 and [s.level for s in whole_data.history] == [0, *chosen[:2], None]

    cut = tmp_path / "cut"
    train(cut, save_strategy="steps", save_steps=5, max_steps=5)  # stops within the first epoch's second half
    assert (cut / "checkpoint-5" / STATE_FILE).is_file()
    resumed_data, resumed = train(cut, resume=str(cut / "checkpoint-5"))
    assert resumed.batches == whole.batches[5:]
    assert_resumed_alike(whole_data, whole, resumed_data, resumed)


def test_a_trainer_that_would_not_follow_the_curriculum_is_refused_before_training(run_copy, tmp_path):
    run, _ = run_copy
    data = discl.CurriculumData(run.root, "non-adaptive", echo=lambda *_: None)
    (tmp_path / "checkpoint-3").mkdir()
    trainer = CurriculumTrainer(model=TinyNet(data.num_classes), args=args(tmp_path), curriculum=data)
    with pytest.raises(ValueError, match=f"checkpoint-3 has no {STATE_FILE}"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    with pytest.raises(ValueError, match="pass curriculum=, not train_dataset="):
        CurriculumTrainer(model=TinyNet(data.num_classes), args=args(tmp_path), curriculum=data, train_dataset=[1])
    adaptive = discl.CurriculumData(run.root, "adaptive", echo=lambda *_: None)
    with pytest.raises(ValueError, match=r"use gradient_accumulation_steps=1 \(it has 2\)"):
        CurriculumTrainer(model=TinyNet(data.num_classes), args=args(tmp_path, gradient_accumulation_steps=2), curriculum=adaptive)


@pytest.mark.slow
def test_three_processes_read_the_slices_of_each_global_batch_and_choose_the_same_stages(run_copy, tmp_path):
    """torchrun with 3 gloo processes, 3 images each: every process makes the same choices (one at each stage
    end), and at every step the processes' batches are the slices of one global batch of the curriculum."""
    run, _ = run_copy
    check_three_processes(Path(__file__).with_name("hf_ddp_worker.py"), run.root, tmp_path, stages_ended=4)
