"""Run by tests/test_training_ddp.py under torchrun: train a tiny model, write this rank's weights."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from discl.config import ClassifierConfig
from discl.curricula import NonAdaptive
from discl.training import ddp
from discl.training.loop import StageData, train_with_curriculum
from discl.training.tasks import ClassifierTask


def data(stage):
    g = torch.Generator().manual_seed(0 if stage.level is None else stage.level)
    images = torch.randint(0, 256, (16, 3, 8, 8), generator=g, dtype=torch.uint8)
    return StageData(images, torch.arange(16) % 4, 16, 0)


def main(out: Path) -> None:
    ddp.init_from_env("gloo")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    cfg = ClassifierConfig(epochs=3, batch_size=8, lr=1e-2, optimizer="sgd")
    val = (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]))
    train_with_curriculum(ClassifierTask(model), cfg, NonAdaptive([10, 20], 2, 3), data, val, "ddp", progress=False,
                          out_dir=out / "run", settings={"world": ddp.world_size()})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / f"rank{ddp.rank()}-of{ddp.world_size()}.safetensors"))
    if ddp.active():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
