"""Checks that the demo's small models learnt something."""

from __future__ import annotations

import torch

from ..config import RunConfig
from ..data import load_dataset_tables, load_split
from ..data.images import load_images
from ..data.rows import ImageRows
from ..mining import load_base_classifier
from ..rundir import RunDir
from ..scoring.base import zero_shot_predict
from ..scoring.run_scorer import captions_for, ensure_scorer
from ..tables import read_table
from ..training.stream import predict_rows
from ..training.tasks import ClassifierTask


def clip_zero_shot_accuracy(run: RunDir, cfg: RunConfig) -> float:
    """Top-1 of the CLIP scorer on the test split, classifying by the nearest class caption."""
    dataset, classes = load_dataset_tables(run)
    images, labels = load_split(run, dataset[dataset["split"] == "test"], cfg.data.image_size)
    captions = captions_for(classes, cfg.score.caption_template)
    pred = zero_shot_predict(ensure_scorer(run, cfg, progress=False), images, [captions[k] for k in sorted(captions)])
    return float((pred == labels).float().mean())


def class_consistency(run: RunDir, cfg: RunConfig, strength: float = 1.0) -> dict:
    """How often synthetic images of ``strength`` (1.0 = generation from the class alone) show
    their prompt's class, by two judges:
    - ``base``: the base classifier (trained on the long-tailed split, so weak on the tail
      classes that most hard samples come from); ``base_on_real`` is the same judge's
      accuracy on real test images of the same classes, the most it could be expected to see;
    - ``clip``: the CLIP scorer's zero-shot prediction, a judge that knows every class."""
    synthetic = read_table(run.synthetic, "synthetic")
    rows = synthetic[(synthetic["strength"] - strength).abs() < 1e-6]
    if rows.empty:
        return {"base": float("nan"), "base_on_real": float("nan"), "clip": float("nan"), "n_images": 0}
    images = load_images([run.resolve(p) for p in rows["path"]], cfg.data.image_size)
    wanted = torch.from_numpy(rows["label"].to_numpy(dtype="int64", copy=True))
    base = ClassifierTask(*load_base_classifier(run))
    dataset, classes = load_dataset_tables(run)
    test = dataset[(dataset["split"] == "test") & dataset["label"].isin(rows["label"].unique())]
    captions = captions_for(classes, cfg.score.caption_template)
    clip_pred = zero_shot_predict(ensure_scorer(run, cfg, progress=False), images, [captions[k] for k in sorted(captions)])
    judged = ImageRows.concat([ImageRows.from_frame(rows, run.resolve_all), ImageRows.from_frame(test, run.resolve_all)])
    out = predict_rows([base], judged, cfg.mine.base, device_key="mine.base.device")[0]
    right = out.pred == judged.labels
    return {
        "base": float(right[: len(rows)].mean()),
        "base_on_real": float(right[len(rows):].mean()),
        "clip": float((clip_pred == wanted).float().mean()),
        "n_images": len(rows),
    }
