"""Stage `mine`: score every training image with a base model and flag hard samples.

The base model is trained here on the training split (cached in models/base), or loaded from
a timm name + local weights file (mine.base_weights). With mine.folds = k >= 2, each image is
judged by one of k models that did not train on it (out-of-fold). Alternatively the hard set is
imported from the reference's CSV format (mine.hard_csv)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import RunConfig
from ..curricula import RealOnly
from ..data import load_dataset_tables, load_split
from ..data.reference_csv import match_to_dataset, read_reference_csv
from ..mining import RULES, Judge, drop_excluded_classes, few_shot_mask, fold_ids, hard_rules, load_timm_judge, timm_judge_key  # noqa: F401 (RULES, hard_rules re-exported)
from ..rundir import RunDir
from ..tables import write_table
from ..training.classifier import create_classifier, predict_proba, save_classifier
from ..training.loop import StageData, train_with_curriculum
from ..training.tasks import ClassifierTask
from . import cache
from .common import base_model_dir, classifier_settings, load_base_classifier


def _train_classifier(run: RunDir, cfg: RunConfig, train_rows: pd.DataFrame, folder: Path, name: str, progress: bool) -> torch.nn.Module:
    """A base model trained on ``train_rows`` with ``mine.base.loss`` (cross-entropy or Balanced
    Softmax); cached in ``folder``."""
    dataset, classes = load_dataset_tables(run)
    settings = classifier_settings(cfg.mine.base, cfg.data.image_size, train_rows)
    if cache.is_current(folder, settings):
        from ..training.classifier import load_classifier

        return load_classifier(folder)[0]
    images, labels = load_split(run, train_rows, cfg.data.image_size)
    val = load_split(run, dataset[dataset["split"] == "val"], cfg.data.image_size)
    model = create_classifier(cfg.mine.base.model, len(classes), cfg.mine.base.seed)
    data = StageData(images, labels, len(labels), 0)
    # A class can be absent from an out-of-fold training split (a tail class's only image is the one
    # being judged); count it as one image, so its prior is "rarest" rather than undefined.
    counts = torch.bincount(labels, minlength=len(classes)).clamp(min=1)
    task = ClassifierTask(model, cfg.mine.base.loss, counts, cfg.mine.base.bs_prior)
    train_with_curriculum(task, cfg.mine.base, RealOnly(cfg.mine.base.epochs), lambda _: data, val, name, progress)
    save_classifier(model, folder, cfg.mine.base.model, len(classes))
    cache.mark_current(folder, settings)
    return model.eval()


def ensure_base_classifier(run: RunDir, cfg: RunConfig, progress: bool = True) -> torch.nn.Module:
    """The base model trained on the whole real training split; cached in models/base."""
    dataset, _ = load_dataset_tables(run)
    return _train_classifier(run, cfg, dataset[dataset["split"] == "train"], base_model_dir(run), "base", progress)


def load_judge(run: RunDir, cfg: RunConfig, load: bool = True) -> Judge:
    """The base model as a judge of images: loaded weights if configured, else the one trained by
    `discl mine`. With ``load=False`` only its identity (``key``) is filled in, no model is built."""
    m = cfg.mine
    _, classes = load_dataset_tables(run)
    if m.base_weights:
        if not load:
            weights = Path(m.base_weights)
            if not weights.exists():
                raise FileNotFoundError(f"base model weights {weights} not found")
            return Judge(None, timm_judge_key(m.base.model, weights, m.base_image_size), 0)
        return load_timm_judge(m.base.model, Path(m.base_weights), len(classes), m.base_image_size, cfg.data.image_size)
    folder = base_model_dir(run)
    if not (folder / "model.json").exists():
        raise FileNotFoundError(f"no base model in {folder}: run `discl mine` first (or set mine.base_weights)")
    settings = cache.settings_path(folder)
    key = hashlib.sha1(settings.read_bytes() if settings.exists() else b"untracked").hexdigest()[:16]
    return Judge(load_base_classifier(run) if load else None, f"trained:{key}", cfg.data.image_size)


def predictions(run: RunDir, cfg: RunConfig, train_rows: pd.DataFrame, progress: bool) -> torch.Tensor:
    """Class probabilities of every training image, in-sample or out-of-fold."""
    m = cfg.mine
    if m.base_weights:
        if m.folds >= 2:
            raise ValueError("mine.folds >= 2 trains k base models here; it cannot be combined with mine.base_weights")
        judge = load_judge(run, cfg)
        size = judge.image_size
        images, _ = load_split(run, train_rows, size)
        return judge.predict_proba(images)
    model = ensure_base_classifier(run, cfg, progress)  # also the judge of later stages
    images, labels = load_split(run, train_rows, cfg.data.image_size)
    if m.folds < 2:
        return predict_proba(model, images)
    folds = fold_ids(labels.numpy(), m.folds, m.base.seed)
    probs = torch.full((len(labels), len(load_dataset_tables(run)[1])), float("nan"))
    for k in range(m.folds):
        held = torch.from_numpy(folds == k)
        fold_model = _train_classifier(run, cfg, train_rows[~held.numpy()], run.models / f"base-fold{k}", f"base fold {k + 1}/{m.folds}", progress)
        probs[held] = predict_proba(fold_model, images[held])
    return probs


def import_hard_csv(run: RunDir, cfg: RunConfig, train_rows: pd.DataFrame, echo=print) -> pd.DataFrame:
    csv_rows, fmt = read_reference_csv(Path(cfg.mine.hard_csv))
    root = Path(cfg.mine.hard_csv_root) if cfg.mine.hard_csv_root else None
    classes = load_dataset_tables(run)[1]
    matched = match_to_dataset(csv_rows, train_rows, Path(cfg.mine.hard_csv), root, run.resolve, dict(zip(classes["label"], classes["class_id"])))
    echo(f"mine: imported {len(matched)} hard samples from {cfg.mine.hard_csv} ({fmt} format)")
    return matched


def run_mine(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> pd.DataFrame:
    m = cfg.mine
    dataset, classes = load_dataset_tables(run)
    train_rows = dataset[dataset["split"] == "train"].reset_index(drop=True)
    bucket_of = dict(zip(classes["label"].astype(int), classes["bucket"]))
    table = train_rows[["sample_id", "label", "class_name", "path"]].copy()
    table["bucket"] = table["label"].map(bucket_of).to_numpy()

    # 1. The hard set from the reference's CSV: no model needed.
    if m.hard_csv:
        hard = import_hard_csv(run, cfg, train_rows, echo)
        hard = table[table["sample_id"].isin(set(hard["sample_id"]))].copy()
        hard["p_true"], hard["pred_label"], hard["reason"] = np.nan, -1, "csv"
        hard = drop_excluded_classes(hard, classes, m.exclude_classes, echo)
        write_table(hard.reset_index(drop=True), run.hard, "hard")
        return hard.reset_index(drop=True)

    # 1b. The zero-shot CLIP's failures (mine.rules [clip_misclassified]): no base model (stages/mine_clip.py).
    if "clip_misclassified" in m.rules:
        from .mine_clip import mine_with_clip

        return mine_with_clip(run, cfg, table, classes, echo, progress)

    # 2. Probabilities of every training image (in-sample or out-of-fold), then the rules.
    unknown = sorted(set(m.rules) - set(RULES))
    if unknown:
        raise ValueError(f"unknown mining rule {unknown[0]!r}; known: {list(RULES)}")
    probs = predictions(run, cfg, train_rows, progress)
    labels = torch.from_numpy(train_rows["label"].to_numpy(dtype="int64", copy=True))
    if int(labels.max()) >= probs.shape[1]:
        raise ValueError(f"the base model knows {probs.shape[1]} classes but the dataset has label {int(labels.max())}")
    p_true = probs.gather(1, labels[:, None]).squeeze(1)
    pred = probs.argmax(-1)
    counts = dict(zip(classes["label"].astype(int), classes["train_count"].astype(int)))
    few = torch.from_numpy(few_shot_mask(labels.numpy(), counts, bucket_of, m.few_shot_below))
    table["p_true"] = p_true.numpy()
    table["pred_label"] = pred.numpy()
    table["reason"] = hard_rules(p_true, pred, labels, few, m)

    # 3. The hard table.
    hard = table[table["reason"] != ""].reset_index(drop=True)
    hard = drop_excluded_classes(hard, classes, m.exclude_classes, echo)
    if hard.empty:
        echo("warning: no hard sample found; loosen mine.rules or mine.prob_threshold")
    write_table(hard, run.hard, "hard")
    judged = f"out-of-fold, {m.folds} folds" if m.folds >= 2 else "in-sample"
    echo(f"mine: {len(hard)} hard samples of {len(table)} training images (rules {'+'.join(m.rules)}; {judged})")
    return hard
