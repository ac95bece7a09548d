"""Run by tests/test_training_ddp.py, alone or under torchrun: train a tiny model on image files with the
discl loop and write this rank's weights and log."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from streams import linear_task, make_data

from discl.config import ClassifierConfig, TrainRuntime
from discl.curricula import NonAdaptive
from discl.training import ddp
from discl.training.loop import train_with_curriculum


def main(images: Path, out: Path) -> None:
    ddp.init_from_env("cpu")
    data = make_data(images, write=False)
    task = linear_task()
    # 30 rows per curriculum stage in global batches of 29: the last batch has one image, so one
    # process gets only a padding item there and must still take part in the step.
    cfg = ClassifierConfig(epochs=3, batch_size=29, lr=5e-2, optimizer="sgd", momentum=0.0, warmup_epochs=0.0)
    log = train_with_curriculum(task, cfg, TrainRuntime(num_workers=1), NonAdaptive([10, 20], 2, 3), data, "ddp",
                                progress=False, out_dir=out / "run", settings={"world": ddp.world_size()})
    name = f"rank{ddp.rank()}-of{ddp.world_size()}"
    save_file({k: v.contiguous() for k, v in task.module.state_dict().items()}, str(out / f"{name}.safetensors"))
    (out / f"{name}.json").write_text(json.dumps([{k: v for k, v in r.items() if "seconds" not in k} for r in log]))
    if ddp.active():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
