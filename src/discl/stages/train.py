"""Stage `train`: the task classifier for each method (real-only baseline, DisCL curricula)."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import torch

from ..config import RunConfig
from ..curriculum import create_curriculum
from ..data import load_dataset_tables, load_split
from ..data.images import load_images
from ..rundir import RunDir
from ..tables import read_table, write_table
from ..training.classifier import create_classifier, save_classifier
from ..training.loop import StageData, train_with_curriculum


def kept_synthetic(run: RunDir) -> pd.DataFrame:
    """Synthetic images that passed the filter, with their image-guidance level."""
    synthetic = read_table(run.synthetic, "synthetic")
    scores = read_table(run.scores, "scores")
    kept = scores.loc[scores["kept"], ["synthetic_id"]]
    return synthetic.merge(kept, on="synthetic_id", how="inner")


def level_data(run: RunDir, cfg: RunConfig, real: tuple[torch.Tensor, torch.Tensor], synthetic: pd.DataFrame | None):
    """A function level -> StageData: the real training data plus the kept synthetic images of that level."""
    cache: dict[int | None, StageData] = {}

    def data_for_level(level: int | None) -> StageData:
        if level not in cache:
            rows = synthetic[synthetic["image_guidance"] == level] if synthetic is not None and level is not None else None
            if rows is None or rows.empty:
                cache[level] = StageData(real[0], real[1], len(real[1]), 0)
            else:
                images = load_images([run.resolve(p) for p in rows["path"]], cfg.data.image_size)
                labels = torch.from_numpy(rows["label"].to_numpy(dtype="int64", copy=True))
                cache[level] = StageData(torch.cat([real[0], images]), torch.cat([real[1], labels]), len(real[1]), len(rows))
        return cache[level]

    return data_for_level


def run_train(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> pd.DataFrame:
    t = cfg.train
    dataset, classes = load_dataset_tables(run)
    real = load_split(run, dataset[dataset["split"] == "train"], cfg.data.image_size)
    val = load_split(run, dataset[dataset["split"] == "val"], cfg.data.image_size)
    needs_synthetic = any(m != "real-only" for m in t.methods)
    synthetic = kept_synthetic(run) if needs_synthetic else None
    if synthetic is not None:
        present = set(synthetic["image_guidance"])
        missing = [lv for lv in t.levels if lv != 100 and lv not in present]
        if missing:
            echo(f"warning: no kept synthetic image at levels {missing}; those stages train on real data only")
    data_for_level = level_data(run, cfg, real, synthetic)

    logs = []
    for method in t.methods:
        curriculum = create_curriculum(method, t.classifier.epochs, t.levels, t.curriculum_epochs)
        model = create_classifier(t.classifier.model, len(classes), t.classifier.seed)
        log = train_with_curriculum(model, t.classifier, curriculum, data_for_level, val, method, progress)
        folder = run.method_dir(method)
        save_classifier(model, folder, t.classifier.model, len(classes), {"method": method, "train": asdict(t)})
        frame = pd.DataFrame(log)
        write_table(frame, folder / "log.parquet", "train_log")
        logs.append(frame)
        echo(f"train {method}: {len(log)} epochs, final val accuracy {100 * log[-1]['val_acc']:.2f}%")
    return pd.concat(logs, ignore_index=True)
