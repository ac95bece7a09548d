"""Run by tests/test_integration_lightning.py under torchrun (gloo, CPU): a Lightning Trainer with the ddp
strategy on the adaptive curriculum of RUN, global batches of 9; writes this rank's batches (labels) and the
stages its curriculum chose to OUT/rank<r>.json.

    torchrun --nproc_per_node N lightning_ddp_worker.py RUN OUT
"""

import json
import os
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn

import discl
from discl.integrations.lightning import CurriculumDataModule


class TinyNet(pl.LightningModule):
    """A small conv net with BatchNorm that records the curriculum epochs (level, images, batches) and the
    batches (labels) it trained on (tests/test_integration_lightning.py uses it too)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                 nn.Flatten(), nn.Linear(32, num_classes))
        self.seen: list[dict] = []
        self.batches: list[list[int]] = []

    def forward(self, x):
        return self.net(x)

    def on_train_epoch_start(self):
        epoch = self.trainer.datamodule.epoch
        self.seen.append({"epoch": epoch.index, "level": epoch.level, "images": len(epoch.dataset), "batches": 0})

    def training_step(self, batch, _):
        images, labels = batch
        self.seen[-1]["batches"] += 1
        self.batches.append(labels.tolist())
        return nn.functional.cross_entropy(self(images), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


if __name__ == "__main__":
    run, out = Path(sys.argv[1]), Path(sys.argv[2])
    pl.seed_everything(0)
    data = discl.CurriculumData(run, "adaptive", echo=lambda *_: None)
    model = TinyNet(data.num_classes)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    trainer = pl.Trainer(max_epochs=data.epochs_total, reload_dataloaders_every_n_epochs=1, accelerator="cpu", devices=world,
                         strategy="ddp" if world > 1 else "auto", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(out))
    trainer.fit(model, datamodule=CurriculumDataModule(data, 9))
    record = {"world": trainer.world_size, "rank": trainer.global_rank, "batches": model.batches,
              "history": [s.level for s in data.history], "chosen": [r["level"] for r in data.curriculum_log if r.get("chosen")],
              "last_p": data.plan.curriculum.last_p}  # p(true) per validation image at the last look (NaN: unread)
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
    if torch.distributed.is_initialized():  # gloo aborts a process that exits with its group still up
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
