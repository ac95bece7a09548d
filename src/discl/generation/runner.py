"""Running a spectrum plan: batches of one strength, each image written atomically, resumable."""

from __future__ import annotations

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data.images import save_png_atomic
from ..rundir import RunDir
from .base import Generator


def pending_rows(run: RunDir, plan: pd.DataFrame) -> pd.DataFrame:
    """Rows whose image is not on disk yet (images are written atomically, so a present file is complete)."""
    done = plan["path"].map(lambda p: run.resolve(p).exists())
    return plan[~done]


def run_plan(
    run: RunDir,
    plan: pd.DataFrame,
    generator: Generator,
    sources: dict[str, torch.Tensor],
    batch_size: int,
    progress: bool = True,
) -> int:
    """Make every pending image of ``plan``; ``sources`` maps source_id to its uint8 (3, H, W) image.
    Returns how many images were made."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    todo = pending_rows(run, plan)
    bar = tqdm(total=len(todo), desc="generate", unit="img", disable=not progress, leave=False)
    for (strength, text_guidance), group in todo.groupby(["strength", "text_guidance"], sort=True):
        for start in range(0, len(group), batch_size):
            batch = group.iloc[start : start + batch_size]
            images = torch.stack([sources[s] for s in batch["source_id"]])
            out = generator.img2img(
                images,
                batch["label"].tolist(),
                batch["prompt"].tolist(),
                float(strength),
                float(text_guidance),
                batch["noise_seed"].tolist(),
            )
            for path, image in zip(batch["path"], out):
                save_png_atomic(image.permute(1, 2, 0).numpy(), run.resolve(path))
            bar.update(len(batch))
    bar.close()
    return len(todo)
