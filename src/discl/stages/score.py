"""Stage `score`: CLIP image-image and image-text similarity of every synthetic image, and the filter."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from ..config import RunConfig
from ..data import foundation_rows, load_dataset_tables, load_split
from ..data.images import load_images
from ..rundir import RunDir
from ..scoring.base import Scorer
from ..scoring.filter import apply_thresholds, similarity_table
from ..scoring.tiny_clip import create_tiny_clip, load_tiny_clip, save_tiny_clip, tiny_clip_config, train_tiny_clip
from ..tables import read_table, write_table
from . import cache
from .common import fingerprint

SCORERS = ("tiny-clip",)


def scorer_dir(run: RunDir):
    return run.models / "clip"


def captions_for(classes: pd.DataFrame, template: str) -> dict[int, str]:
    return {int(label): template.format(name=name) for label, name in zip(classes["label"], classes["class_name"])}


def ensure_scorer(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> Scorer:
    """The demo's tiny CLIP, trained on the foundation pool; cached in models/clip."""
    s = cfg.score
    if s.backend not in SCORERS:
        raise ValueError(f"unknown scorer backend {s.backend!r}; known: {list(SCORERS)}")
    dataset, classes = load_dataset_tables(run)
    pool = foundation_rows(dataset)
    train_keys = ("caption_template", "train_steps", "train_batch_size", "train_lr", "train_seed")
    settings = {k: asdict(s)[k] for k in train_keys} | {"image_size": cfg.data.image_size, "data": fingerprint(pool["sample_id"])}
    folder = scorer_dir(run)
    if cache.is_current(folder, settings):
        return load_tiny_clip(folder)
    echo(f"training the CLIP scorer on {len(pool)} images ({s.train_steps} steps)")
    images, labels = load_split(run, pool, cfg.data.image_size)
    captions = captions_for(classes, s.caption_template)
    scorer = create_tiny_clip(tiny_clip_config(cfg.data.image_size), folder, s.train_seed)
    scorer.batch_size = s.batch_size
    train_tiny_clip(scorer, images, [captions[int(y)] for y in labels], s.train_steps, s.train_batch_size, s.train_lr, s.train_seed, progress)
    save_tiny_clip(scorer, folder)
    cache.mark_current(folder, settings)
    return scorer


def run_score(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> pd.DataFrame:
    s = cfg.score
    synthetic = read_table(run.synthetic, "synthetic")
    hard = read_table(run.hard, "hard")
    _, classes = load_dataset_tables(run)
    missing = [p for p in synthetic["path"] if not run.resolve(p).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} synthetic images listed in {run.synthetic} are missing, e.g. {missing[0]}; rerun `discl generate`")
    scorer = ensure_scorer(run, cfg, echo, progress)

    # Each real source and each caption is embedded once; synthetic images in batches.
    source_images, _ = load_split(run, hard, cfg.data.image_size)
    source_embeddings = dict(zip(hard["sample_id"], scorer.embed_images(source_images)))
    captions = captions_for(classes, s.caption_template)
    caption_embeddings = dict(zip(captions, scorer.embed_texts(list(captions.values()))))
    synthetic_images = load_images([run.resolve(p) for p in synthetic["path"]], cfg.data.image_size)
    image_embeddings = scorer.embed_images(synthetic_images)

    scores = apply_thresholds(
        similarity_table(synthetic, image_embeddings, source_embeddings, caption_embeddings), s.text_threshold, s.image_threshold
    )
    write_table(scores, run.scores, "scores")
    echo(f"score: kept {int(scores['kept'].sum())} of {len(scores)} synthetic images "
         f"(text_sim >= {s.text_threshold:g}, image_sim >= {s.image_threshold:g})")
    return scores
