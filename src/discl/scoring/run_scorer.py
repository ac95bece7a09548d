"""The run's CLIP scorer, shared by the stages that embed with it (score, mine's zero-shot rule, generate's
regenerate-until-good, the demo's checks): the configured model, or the demo's tiny CLIP trained once on the
foundation pool and cached in ``models/clip``; and what identifies its vectors in the embedding store."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import pandas as pd

from .. import model_cache
from ..config import RunConfig
from ..data import foundation_rows, load_dataset_tables, load_split
from ..generation.store import synthetic_digest
from ..registry import scorers
from ..rundir import RunDir
from ..tables import table_meta
from .base import Scorer
from .factory import create_scorer

TEXT_SOURCES = ("caption", "prompt")


def captions_for(classes: pd.DataFrame, template: str, names: dict[int, str] | None = None) -> dict[int, str]:
    """label -> the class's caption; ``names`` (label -> name) overrides the class names it says."""
    names = names or {}
    return {int(label): template.format(name=names.get(int(label), name)) for label, name in zip(classes["label"], classes["class_name"])}


def filter_captions(classes: pd.DataFrame, cfg: RunConfig) -> dict[int, str]:
    """The score stage's caption per label (score.caption_template with prompts.names)."""
    from ..prompts import prompt_names

    return captions_for(classes, cfg.score.caption_template, prompt_names(classes, cfg.prompts.dataset, cfg.prompts.names))


def tiny_settings(run: RunDir, cfg: RunConfig) -> dict:
    """What the demo's tiny CLIP is trained with (its cache key)."""
    s = cfg.score
    dataset, _ = load_dataset_tables(run)
    train_keys = ("caption_template", "train_steps", "train_batch_size", "train_lr", "train_seed")
    return {k: asdict(s)[k] for k in train_keys} | {"image_size": cfg.data.image_size,
                                                    "data": model_cache.fingerprint(foundation_rows(dataset)["sample_id"])}


def scorer_settings(run: RunDir, cfg: RunConfig) -> dict:
    """What decides the scorer's vectors, by config key (so a change can be named)."""
    s = cfg.score
    out = {"score.backend": s.backend, "score.precision": s.precision, "score.image_size": s.image_size}
    if s.backend == "tiny-clip":
        tiny = tiny_settings(run, cfg)
        return out | {f"score.{k}": tiny[k] for k in ("caption_template", "train_steps", "train_batch_size", "train_lr", "train_seed")} | {
            "data.image_size": cfg.data.image_size, "clip training images": tiny["data"]}
    return out | {"score.model": s.model, "score.pretrained": s.pretrained}


def scorer_key(run: RunDir, cfg: RunConfig) -> str:
    """What identifies the scorer's vectors; stored embeddings are reused only under the same key."""
    s = cfg.score
    ident: dict[str, object] = {"backend": s.backend, "precision": s.precision, "image_size": s.image_size}
    if s.backend == "tiny-clip":
        ident |= {"tiny": tiny_settings(run, cfg), "image_size": cfg.data.image_size}
    else:
        ident |= {"model": s.model, "pretrained": s.pretrained}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def ensure_scorer(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> Scorer:
    """The configured scorer. tiny-clip: trained on the foundation pool, cached in models/clip (a retrained
    model replaces the old one only once it is saved whole)."""
    s = cfg.score
    if s.backend != "auto":
        scorers.get(s.backend)  # an unknown name: the error lists the registered ones
    if s.text_source not in TEXT_SOURCES:
        raise ValueError(f"unknown score.text_source {s.text_source!r}; known: {list(TEXT_SOURCES)}")
    if s.backend != "tiny-clip":
        return create_scorer(s.model, s.pretrained, s.backend, s.batch_size, s.device, s.precision)
    from .tiny_clip import load_tiny_clip  # open_clip is imported only where a scorer is made

    settings = tiny_settings(run, cfg)
    return model_cache.train_once(run, run.scorer_model, settings, "the CLIP scorer",
                                  lambda: _train_tiny_clip(run, cfg, settings, echo, progress), load_tiny_clip, echo)


def _train_tiny_clip(run: RunDir, cfg: RunConfig, settings: dict, echo, progress: bool) -> Scorer:
    from .tiny_clip import create_tiny_clip, save_tiny_clip, tiny_clip_config, train_tiny_clip

    s = cfg.score
    dataset, classes = load_dataset_tables(run)
    pool = foundation_rows(dataset)
    echo(f"training the CLIP scorer on {len(pool)} images ({s.train_steps} steps)")
    images, labels = load_split(run, pool, cfg.data.image_size)
    captions = captions_for(classes, s.caption_template)
    new = model_cache.staging_dir(run.scorer_model)  # built beside the old model, which stays until this one is saved
    scorer = create_tiny_clip(tiny_clip_config(cfg.data.image_size), new, s.train_seed)
    scorer.batch_size = s.batch_size
    train_tiny_clip(scorer, images, [captions[int(y)] for y in labels], s.train_steps, s.train_batch_size, s.train_lr, s.train_seed, progress)
    model_cache.save_beside(run.scorer_model, lambda folder: save_tiny_clip(scorer, folder), settings, new=new)
    return scorer


def scorer_image_size(scorer, cfg: RunConfig) -> int:
    """The side of the square image files are read at for the scorer (score.image_size, else its own)."""
    if cfg.score.image_size:
        return int(cfg.score.image_size)
    if cfg.score.backend == "tiny-clip":
        return cfg.data.image_size
    return int(max(scorer.transform.size))


def scores_match(run: RunDir, synthetic: pd.DataFrame) -> bool:
    """Whether scores.parquet was computed from these synthetic images (True when it does not say)."""
    recorded = table_meta(run.scores).get("synthetic")
    return recorded is None or recorded == synthetic_digest(synthetic)
