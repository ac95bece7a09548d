"""The report's spectrum grids as images: one per hard sample, its seeds as rows and its image-guidance
levels (then the real image) as columns, each synthetic image framed green where the filter kept it and
red where it dropped it. The HTML report shows the same grids as tables; loggers get these images."""

from __future__ import annotations

import pandas as pd
from PIL import Image, ImageDraw

from ..data.images import read_image
from ..generation.metadata import matching_scores
from ..rundir import RunDir
from ..tables import read_table

KEPT, DROPPED, REAL, EMPTY = (46, 139, 87), (205, 92, 92), (51, 51, 51), (244, 244, 244)


def _cell(path, size: int, frame: tuple[int, int, int] | None) -> Image.Image:
    tile = Image.new("RGB", (size, size), EMPTY)
    try:
        image = read_image(path, size - 6, "contain")
        tile.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    except (OSError, ValueError, Image.DecompressionBombError):  # one unreadable file leaves its cell empty
        ImageDraw.Draw(tile).line([(0, 0), (size, size)], fill=DROPPED, width=2)
    if frame is not None:
        ImageDraw.Draw(tile).rectangle([0, 0, size - 1, size - 1], outline=frame, width=3)
    return tile


def spectrum_grid(run: RunDir, source, cells: pd.DataFrame, levels: list[int], size: int = 64) -> Image.Image:
    """The grid of one hard sample (``source``: its row of hard.parquet; ``cells``: its synthetic rows, with
    a ``kept`` column where the images were scored)."""
    seeds = sorted(cells["seed"].unique())
    grid = Image.new("RGB", (size * (len(levels) + 1), size * max(1, len(seeds))), (255, 255, 255))
    real = _cell(run.resolve(str(source.path)), size, REAL)
    for r, seed in enumerate(seeds):
        by_level = cells[cells["seed"] == seed].set_index("image_guidance")
        for c, level in enumerate(levels):
            if level in by_level.index:
                row = by_level.loc[level]
                kept = row.get("kept")
                frame = None if kept is None or pd.isna(kept) else KEPT if bool(kept) else DROPPED
                grid.paste(_cell(run.resolve(str(row["path"])), size, frame), (c * size, r * size))
        grid.paste(real, (len(levels) * size, r * size))
    return grid


def spectrum_grids(run: RunDir, limit: int = 8, size: int = 64) -> list[tuple[str, Image.Image]]:
    """(name, grid) of up to ``limit`` hard samples, chosen as the report chooses them; none before `generate`."""
    if not (run.hard.exists() and run.synthetic.exists()):
        return []
    from .build import choose_grids

    hard = read_table(run.hard, "hard")
    synthetic = read_table(run.synthetic, "synthetic")
    scores = matching_scores(run, synthetic)  # the filter's verdicts, unless generate remade images since
    if scores is not None:
        synthetic = synthetic.merge(scores[["synthetic_id", "kept"]], on="synthetic_id", how="left")
    levels = sorted(int(lv) for lv in synthetic["image_guidance"].unique())
    by_source = {str(source): cells for source, cells in synthetic.groupby("source_id")}
    out = []
    for source in choose_grids(hard, limit).itertuples(index=False):
        cells = by_source.get(str(source.sample_id))
        if cells is not None:
            out.append((f"{source.class_name}/{source.sample_id}", spectrum_grid(run, source, cells, levels, size)))
    return out
