"""discl.integrations.lightning: a Lightning Trainer trains on the curriculum's epochs (the stages `discl train`
visits), an adaptive curriculum looks at the LightningModule, and a run resumed from an epoch-end checkpoint
trains the same epochs and weights as one that was not stopped."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

import discl

pl = pytest.importorskip("lightning.pytorch")
from discl.integrations.lightning import CurriculumDataModule  # noqa: E402

from .curriculum_helpers import assert_resumed_alike, check_three_processes  # noqa: E402
from .lightning_ddp_worker import TinyNet  # noqa: E402


def trainer(tmp_path, epochs, **options):
    options = {"max_epochs": epochs, "reload_dataloaders_every_n_epochs": 1, "accelerator": "cpu", "devices": 1,
               "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
               "default_root_dir": str(tmp_path)} | options
    return pl.Trainer(**options)


def test_a_lightning_trainer_visits_the_stages_discl_train_visits(run_copy, tmp_path):
    run, _ = run_copy
    data = discl.CurriculumData(run.root, "non-adaptive", echo=lambda *_: None)
    model = TinyNet(data.num_classes)
    batch = 7  # divides no epoch's size
    trainer(tmp_path, data.epochs_total, enable_checkpointing=False).fit(model, datamodule=CurriculumDataModule(data, batch))
    trained = pd.read_parquet(run.method_dir("non-adaptive") / "log.parquet")  # `discl train` on this run
    seen = pd.DataFrame(model.seen)
    assert seen["level"].tolist() == trained["level"].tolist() and len(set(seen["level"])) >= 3
    assert seen["images"].tolist() == (trained["n_real"] + trained["n_synthetic"]).tolist()
    assert seen["batches"].tolist() == [math.ceil(n / batch) for n in seen["images"]]


def test_an_adaptive_curriculum_resumed_from_a_checkpoint_trains_the_same_epochs(run_copy, tmp_path):
    run, _ = run_copy
    quiet = {"echo": lambda *_: None}

    def fit(folder, epochs, resume=None):
        pl.seed_everything(0)
        data = discl.CurriculumData(run.root, "adaptive", **quiet)
        model = TinyNet(data.num_classes)
        saver = pl.callbacks.ModelCheckpoint(dirpath=folder, save_top_k=-1, filename="{epoch}")
        trainer(folder, epochs, callbacks=[saver], deterministic=True).fit(model, datamodule=CurriculumDataModule(data, 6),
                                                                           ckpt_path=resume)
        return data, model

    whole_data, whole = fit(tmp_path / "whole", 4)
    chosen = [r["level"] for r in whole_data.curriculum_log if r.get("chosen")]
    assert len(chosen) == 4  # a look at each of the 4 stage ends, the last one when fit ends, as `discl train` takes them
    assert [s["level"] for s in whole.seen] == [0, *chosen[:2], -1]  # first candidate, the looks' choices, real data

    first_data, _ = fit(tmp_path / "cut", 2)  # stopped after 2 epochs, checkpoint at each epoch end
    resumed_data, resumed = fit(tmp_path / "cut", 4, resume=str(tmp_path / "cut" / "epoch=1.ckpt"))
    assert [s["level"] for s in resumed.seen] == [s["level"] for s in whole.seen][2:]
    assert_resumed_alike(whole_data, whole, resumed_data, resumed)


def test_a_trainer_that_would_not_follow_the_curriculum_is_refused(run_copy, tmp_path):
    run, _ = run_copy
    data = discl.CurriculumData(run.root, "non-adaptive", echo=lambda *_: None)
    with pytest.raises(ValueError, match="max_epochs=4 or fewer"):
        trainer(tmp_path, 10).fit(TinyNet(data.num_classes), datamodule=CurriculumDataModule(data, 8))
    with pytest.raises(ValueError, match="reload_dataloaders_every_n_epochs=1"):
        trainer(tmp_path, 4, reload_dataloaders_every_n_epochs=0).fit(TinyNet(data.num_classes), datamodule=CurriculumDataModule(data, 8))


@pytest.mark.slow
def test_three_ddp_processes_read_the_slices_of_each_global_batch_and_choose_the_same_stages(run_copy, tmp_path):
    """torchrun with 3 gloo processes and Lightning's ddp strategy, global batches of 9: every process makes the
    same choices (one at each stage end but the last), and at every step the processes' batches are the
    slices of one global batch of the curriculum."""
    run, _ = run_copy
    check_three_processes(Path(__file__).with_name("lightning_ddp_worker.py"), run.root, tmp_path, stages_ended=4)
