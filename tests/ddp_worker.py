"""Run by tests/test_training_ddp.py, alone or under torchrun (gloo): train the two shipped kinds of task
model at tiny sizes with the discl loop, predict as `discl eval` does, and write this rank's weights,
epoch logs, curriculum log and predictions.

- a timm ResNet with BatchNorm whose last feature maps are 1x1 (16-pixel images), under the adaptive
  curriculum (its evaluations at every stage end), with 2 micro-batches per batch;
- the demo's tiny open_clip ViT CLIP trained with FLYP's contrastive loss, with 2 micro-batches
  (gradient caching) and with one.

23 training rows (one of them an unreadable file) in global batches of 7: per-process slices of 4/3
(2 processes) and 3/2/2 (3 processes), a last batch of 2 that leaves a process without any image
(3 processes) and one image on the others."""

import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from timm.models.resnet import BasicBlock, ResNet

from discl.config import AugmentConfig, ClassifierConfig, DeviceConfig, TrainRuntime
from discl.curricula import Adaptive, CurriculumValidation, RealOnly
from discl.data.rows import ImageRows
from discl.scoring.tiny_clip import create_tiny_clip, tiny_clip_config
from discl.training import ddp
from discl.training.flyp import FlypTask
from discl.training.loop import StageRows, TrainData, train_with_curriculum
from discl.training.stream import predict_rows
from discl.training.tasks import ClassifierTask
from discl.training.transforms import classifier_transforms

N_REAL, N_SYNTHETIC, N_VAL, SIZE = 17, 6, 8, 16
BROKEN = 5  # the unreadable training row


def rows_of(images: Path) -> ImageRows:
    paths = [str(images / f"{i:03d}.png") for i in range(N_REAL + N_SYNTHETIC + N_VAL)]
    labels = [i % 3 for i in range(len(paths))]
    return ImageRows(paths, labels)


def write_images(images: Path) -> None:
    from PIL import Image

    images.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    for i, path in enumerate(rows_of(images).paths(range(N_REAL + N_SYNTHETIC + N_VAL))):
        pixels = g.integers(0, 90, (SIZE, SIZE, 3), dtype=np.uint8)
        pixels[..., i % 3] += 150
        Image.fromarray(pixels).save(path)
    Path(rows_of(images).paths([BROKEN])[0]).write_bytes(b"not an image")


def data(images: Path) -> TrainData:
    def stage_rows(stage) -> StageRows:
        extra = 0 if stage.level in (None, 100) else N_SYNTHETIC
        return StageRows(np.arange(N_REAL + extra, dtype=np.int64), N_REAL, extra)

    return TrainData(rows_of(images), stage_rows, np.arange(N_REAL + N_SYNTHETIC, N_REAL + N_SYNTHETIC + N_VAL), 3)


def tiny_resnet() -> ClassifierTask:
    torch.manual_seed(0)
    # BatchNorm eps 0.1 (timm's default 1e-5): over 2 or 3 values per channel at a 1x1 map, BatchNorm's
    # gradient grows like 1/sqrt(eps), and with 1e-5 a 1e-6 relative change of the initial weights moves
    # the weights trained here by up to 6e-3: float rounding, the only thing in which N processes differ
    # from one, would be amplified past any tolerance. With 0.1 that change is 5e-5 relative.
    model = ResNet(BasicBlock, (1, 1, 1, 1), num_classes=3, channels=(8, 8, 8, 8), stem_width=8,
                   norm_layer=partial(torch.nn.BatchNorm2d, eps=0.1))
    model.pretrained_cfg = {"mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0, "interpolation": "bilinear"}
    return ClassifierTask(model, classifier_transforms(model, AugmentConfig(mean=[0.5] * 3, std=[0.5] * 3), SIZE))


def tiny_flyp(folder: Path) -> FlypTask:
    scorer = create_tiny_clip(tiny_clip_config(SIZE), folder / f"clip-rank{ddp.rank()}", seed=0)
    return FlypTask(scorer, ["red", "green", "blue"], ["a photo of {name}.", "{name}."])


def main(images: Path, out: Path, kinds: list[str]) -> None:
    ddp.init_from_env("cpu")
    train_data = data(images)
    runtime = dict(num_workers=0, eval_batch_size=4, max_skipped_fraction=0.1, accumulate=2)
    cfg = ClassifierConfig(epochs=3, batch_size=7, lr=0.05, optimizer="sgd", momentum=0.9, warmup_epochs=0.0)
    # curriculum validation: the 6 synthetic rows at levels 10 and the real rows 0..5 at 100 (row 5 unreadable)
    validation = CurriculumValidation(np.r_[np.arange(N_REAL, N_REAL + N_SYNTHETIC), np.arange(6)],
                                      train_data.rows.labels[np.r_[np.arange(N_REAL, N_REAL + N_SYNTHETIC), np.arange(6)]],
                                      [10] * N_SYNTHETIC + [100] * 6)
    tasks = {
        "resnet": (tiny_resnet(), cfg, Adaptive([10, 100], 2, 3, validation)),
        "flyp": (tiny_flyp(out), ClassifierConfig(epochs=2, batch_size=7, lr=0.05, optimizer="sgd", momentum=0.9,
                                                  warmup_epochs=0.0), RealOnly(2)),
        # one pass without micro-batches (no gradient caching): a process without any image of the last batch
        "flyp-k1": (tiny_flyp(out), ClassifierConfig(epochs=1, batch_size=7, lr=0.05, optimizer="sgd", momentum=0.9,
                                                     warmup_epochs=0.0), RealOnly(1)),
    }
    name = f"rank{ddp.rank()}-of{ddp.world_size()}"
    for kind, (task, optim, curriculum) in tasks.items():
        if kind not in kinds:
            continue
        accumulate = 1 if kind == "flyp-k1" else 2
        log = train_with_curriculum(task, optim, TrainRuntime(**(runtime | {"accumulate": accumulate})), curriculum,
                                    train_data, kind, progress=False,
                                    out_dir=out / kind, settings={"world": ddp.world_size()})
        val = ImageRows(train_data.rows.paths(train_data.val), train_data.rows.labels[train_data.val])
        pred = predict_rows([task], val, DeviceConfig(num_workers=0, eval_batch_size=4))[0]  # as `discl eval` does
        save_file({k: v.contiguous() for k, v in task.module.state_dict().items()}, str(out / f"{kind}-{name}.safetensors"))
        result = {"log": [{k: v for k, v in r.items() if "seconds" not in k} for r in log],
                  "curriculum": getattr(curriculum, "state_dict", dict)() if kind == "resnet" else None,
                  "pred": pred.pred.tolist(), "p_true": pred.p_true.tolist()}
        (out / f"{kind}-{name}.json").write_text(json.dumps(result))
    if ddp.active():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[1] == "--write":
        write_images(Path(sys.argv[2]))
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:] or ["resnet", "flyp", "flyp-k1"])
