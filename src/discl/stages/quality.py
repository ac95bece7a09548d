"""Checks that the demo's small models learnt something."""

from __future__ import annotations

from ..config import RunConfig
from ..data import load_dataset_tables, load_split
from ..data.images import load_images
from ..rundir import RunDir
from ..scoring.base import zero_shot_predict
from ..tables import read_table
from ..training.classifier import predict_proba
from .common import load_base_classifier
from .score import captions_for, ensure_scorer


def clip_zero_shot_accuracy(run: RunDir, cfg: RunConfig) -> float:
    """Top-1 of the CLIP scorer on the test split, classifying by the nearest class caption."""
    dataset, classes = load_dataset_tables(run)
    images, labels = load_split(run, dataset[dataset["split"] == "test"], cfg.data.image_size)
    captions = captions_for(classes, cfg.score.caption_template)
    pred = zero_shot_predict(ensure_scorer(run, cfg, progress=False), images, [captions[k] for k in sorted(captions)])
    return float((pred == labels).float().mean())


def class_consistency(run: RunDir, cfg: RunConfig, strength: float = 1.0) -> tuple[float, int]:
    """Fraction of synthetic images of ``strength`` (1.0 = pure class-conditional generation)
    that the base classifier assigns to their prompt's class, and how many were judged."""
    synthetic = read_table(run.synthetic, "synthetic")
    rows = synthetic[(synthetic["strength"] - strength).abs() < 1e-6]
    if rows.empty:
        return float("nan"), 0
    images = load_images([run.resolve(p) for p in rows["path"]], cfg.data.image_size)
    pred = predict_proba(load_base_classifier(run), images).argmax(-1).numpy()
    return float((pred == rows["label"].to_numpy()).mean()), len(rows)
