"""Run by tests/test_integration_transformers.py under torchrun (gloo, CPU): discl's CurriculumTrainer on the
adaptive curriculum of RUN, in global batches of 3 per process; writes this rank's batches (labels) and the
stages its curriculum chose to OUT/rank<r>.json.

    torchrun --nproc_per_node N hf_ddp_worker.py RUN OUT
"""

import json
import sys
from pathlib import Path

import torch
from torch import nn
from transformers import TrainingArguments

import discl
from discl.integrations.transformers import CurriculumTrainer


class TinyNet(nn.Module):
    """A small conv net with BatchNorm in the Trainer's calling convention; it records each batch's labels
    (tests/test_integration_transformers.py uses it too)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                 nn.Flatten(), nn.Linear(32, num_classes))
        self.batches: list[list[int]] = []

    def forward(self, pixel_values, labels=None):
        logits = self.net(pixel_values)
        if labels is None:
            return {"logits": logits}
        if self.training:
            self.batches.append(labels.tolist())
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


if __name__ == "__main__":
    run, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.manual_seed(0)
    data = discl.CurriculumData(run, "adaptive", echo=lambda *_: None)
    model = TinyNet(data.num_classes)
    args = TrainingArguments(str(out / "trainer"), per_device_train_batch_size=3, learning_rate=0.05, optim="sgd",
                             report_to="none", save_strategy="no", logging_strategy="no", use_cpu=True, seed=0,
                             disable_tqdm=True, dataloader_pin_memory=False)
    trainer = CurriculumTrainer(model=model, args=args, curriculum=data)
    trainer.train()
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    record = {"world": world, "rank": rank, "batches": model.batches, "history": [s.level for s in data.history],
              "chosen": [r["level"] for r in data.curriculum_log if r.get("chosen")],
              "last_p": data.plan.curriculum.last_p}  # p(true) per validation image at the last look (NaN: unread)
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    if torch.distributed.is_initialized():  # gloo aborts a process that exits with its group still up
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
