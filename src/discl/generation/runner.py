"""Running a spectrum plan: batches of one strength, each image written atomically, rows committed
per batch, and a rerun makes only what is missing."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data.images import save_png_atomic
from ..rundir import RunDir
from .base import Generator
from .store import PartStore, done_rows

#: (generator, source images, rows, strength, text guidance, first outputs) -> (kept outputs, updated rows)
Refine = Callable[[Generator, torch.Tensor, pd.DataFrame, float, float, torch.Tensor], tuple[torch.Tensor, pd.DataFrame]]


def pending_rows(run: RunDir, plan: pd.DataFrame, store: PartStore | None = None, size: tuple[int, int] | None = None) -> pd.DataFrame:
    """Rows of ``plan`` without a committed row of the same fingerprint whose image is a whole PNG (at ``size``)."""
    store = store or PartStore(run)
    done = done_rows(run, plan, store.rows(), size)
    return plan[~plan["synthetic_id"].isin(done["synthetic_id"])]


def batches(todo: pd.DataFrame, batch_size: int, size_of: Callable[[str], tuple[int, int]] | None = None):
    """Groups of one (strength, text guidance) and, with ``size_of`` (source_id -> its (width, height)),
    one source size, cut into batches; a source's outputs stay together."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    keys = ["strength", "text_guidance"]
    if size_of is not None:
        sizes = [size_of(s) for s in todo["source_id"]]
        todo = todo.assign(_width=[w for w, _ in sizes], _height=[h for _, h in sizes])
        keys += ["_width", "_height"]
    for _, group in todo.groupby(keys, sort=True):
        group = group.drop(columns=["_width", "_height"], errors="ignore")
        strength, text_guidance = float(group["strength"].iloc[0]), float(group["text_guidance"].iloc[0])
        for start in range(0, len(group), batch_size):
            yield strength, text_guidance, group.iloc[start : start + batch_size]


def generate_batch(
    generator: Generator, sources: Mapping[str, torch.Tensor], rows: pd.DataFrame, strength: float,
    text_guidance: float, refine: Refine | None = None,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """One pipeline call for ``rows`` (all of one strength and text guidance)."""
    images = torch.stack([sources[s] for s in rows["source_id"]])
    out = generator.img2img(
        images, rows["label"].tolist(), rows["prompt"].tolist(), strength, text_guidance, rows["noise_seed"].tolist()
    )
    if refine is not None:
        out, rows = refine(generator, images, rows, strength, text_guidance, out)
    return out, rows


def write_images(run: RunDir, rows: pd.DataFrame, images: torch.Tensor) -> None:
    for path, image in zip(rows["path"], images):
        save_png_atomic(image.permute(1, 2, 0).numpy(), run.resolve(path))


def run_plan(
    run: RunDir,
    plan: pd.DataFrame,
    generator: Generator,
    sources: Mapping[str, torch.Tensor],
    batch_size: int,
    progress: bool = True,
    store: PartStore | None = None,
    refine: Refine | None = None,
    size: tuple[int, int] | None = None,
) -> int:
    """Make every pending image of ``plan``; ``sources`` maps source_id to its uint8 (3, H, W) image
    (and, if its sources differ in size, tells each one's size by ``size_of``, as SourceImages does).
    Images first, then the batch's rows: a committed row always has its image. Returns how many were made."""
    store = store or PartStore(run)
    todo = pending_rows(run, plan, store, size)
    bar = tqdm(total=len(todo), desc="generate", unit="img", disable=not progress, leave=False)
    for strength, text_guidance, batch in batches(todo, batch_size, getattr(sources, "size_of", None)):
        out, rows = generate_batch(generator, sources, batch, strength, text_guidance, refine)
        write_images(run, rows, out)
        store.commit(rows)
        bar.update(len(batch))
    bar.close()
    return len(todo)
