"""Stage `mine`: score every training image with a base model and flag hard samples.

The base model is trained here on the training split (cached in models/base), or loaded from
a timm name + local weights file (mine.base_weights). With mine.folds = k >= 2, each image is
judged by one of k models that did not train on it (out-of-fold). Alternatively the hard set is
imported from the reference's CSV format (mine.hard_csv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import model_cache
from ..config import RunConfig
from ..curricula import RealOnly
from ..data import load_dataset_tables
from ..data.reference_csv import match_to_dataset, read_reference_csv
from ..data.rows import ImageRows
from ..mining import RULES, drop_excluded_classes, few_shot_mask, fold_ids, hard_rules, judge_task, load_judge
from ..model_cache import classifier_settings
from ..prompts import demo_text_warning
from ..rundir import RunDir
from ..tables import write_table
from ..training.classifier import create_classifier, load_classifier, save_classifier
from ..training.loop import TrainData, train_with_curriculum
from ..training.pool import RowPool
from ..training.stream import Predictions, predict_rows
from ..training.tasks import ClassifierTask
from ..training.transforms import classifier_transforms

CLIP_RULE = "clip_misclassified"
#: Rules that need no model, so they combine with the CLIP rule.
MODEL_FREE = ("few_shot",)


def _train_classifier(run: RunDir, cfg: RunConfig, train_rows: pd.DataFrame, folder: Path, name: str,
                      progress: bool) -> ClassifierTask:
    """A base model trained on ``train_rows`` with ``mine.base.loss`` (cross-entropy or Balanced
    Softmax), streamed from disk like any task model; cached in ``folder``."""
    base = cfg.mine.base
    dataset, classes = load_dataset_tables(run)
    settings = classifier_settings(base, cfg.data.image_size, train_rows)
    if model_cache.is_current(folder, settings):
        model, _, transforms = load_classifier(folder)
        return ClassifierTask(model, transforms)
    model = create_classifier(base.model, len(classes), base.seed, base.pretrained)
    transforms = classifier_transforms(model, base.augment, cfg.data.image_size)
    # A class can be absent from an out-of-fold training split (a tail class's only image is the one
    # being judged); count it as one image, so its prior is "rarest" rather than undefined.
    labels = torch.from_numpy(train_rows["label"].to_numpy(dtype="int64", copy=True))
    counts = torch.bincount(labels, minlength=len(classes)).clamp(min=1)
    task = ClassifierTask(model, transforms, base.loss, counts, base.bs_prior)
    pool = RowPool(run, train_rows, None, dataset[dataset["split"] == "val"], set())
    data = TrainData(pool.rows, pool, pool.val, len(classes))
    train_with_curriculum(task, base, base, RealOnly(base.epochs), data, name, progress, device_key="mine.base.device")
    save_classifier(model, folder, base.model, len(classes), transforms)
    model_cache.mark_current(folder, settings)
    return task


def ensure_base_classifier(run: RunDir, cfg: RunConfig, progress: bool = True) -> ClassifierTask:
    """The base model trained on the whole real training split; cached in models/base."""
    dataset, _ = load_dataset_tables(run)
    return _train_classifier(run, cfg, dataset[dataset["split"] == "train"], run.base_model, "base", progress)


def _predict(task: ClassifierTask, run: RunDir, rows: pd.DataFrame, cfg: RunConfig) -> Predictions:
    return predict_rows([task], ImageRows.from_frame(rows, run.resolve_all), cfg.mine.base, device_key="mine.base.device")[0]


def predictions(run: RunDir, cfg: RunConfig, train_rows: pd.DataFrame, progress: bool) -> Predictions:
    """Top-1 class and p(true class) of every training image, in-sample or out-of-fold."""
    m = cfg.mine
    if m.base_weights:
        if m.folds >= 2:
            raise ValueError("mine.folds >= 2 trains k base models here; it cannot be combined with mine.base_weights")
        return _predict(judge_task(load_judge(run, cfg)), run, train_rows, cfg)
    task = ensure_base_classifier(run, cfg, progress)  # also the judge of later stages
    if m.folds < 2:
        return _predict(task, run, train_rows, cfg)
    labels = train_rows["label"].to_numpy(dtype="int64")
    folds = fold_ids(labels, m.folds, m.base.seed)
    pred = np.full(len(labels), -1, dtype=np.int64)
    p_true = np.full(len(labels), np.nan, dtype=np.float32)
    decoded = np.zeros(len(labels), dtype=bool)
    for k in range(m.folds):
        held = folds == k
        fold_task = _train_classifier(run, cfg, train_rows[~held], run.base_fold_model(k), f"base fold {k + 1}/{m.folds}", progress)
        out = _predict(fold_task, run, train_rows[held], cfg)
        pred[held], p_true[held], decoded[held] = out.pred, out.p_true, out.decoded
    return Predictions(pred, p_true, decoded)


def import_hard_csv(run: RunDir, cfg: RunConfig, train_rows: pd.DataFrame, echo=print) -> pd.DataFrame:
    if cfg.mine.hard_csv is None:
        raise ValueError("mine.hard_csv is not set: there is no hard-sample CSV to import")
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

    # 1b. The zero-shot CLIP's failures (mine.rules [clip_misclassified]): no base model.
    if CLIP_RULE in m.rules:
        return mine_with_clip(run, cfg, table, classes, echo, progress)

    # 2. Probabilities of every training image (in-sample or out-of-fold), then the rules.
    unknown = sorted(set(m.rules) - set(RULES))
    if unknown:
        raise ValueError(f"unknown mining rule {unknown[0]!r}; known: {list(RULES)}")
    no_model = set(m.rules) == {"few_shot"} and not m.train_base and not m.base_weights
    if no_model:
        # Hard = the few-shot classes' images: no model judges them.
        out = Predictions(np.full(len(train_rows), -1, dtype=np.int64), np.full(len(train_rows), np.nan, dtype=np.float32),
                          np.ones(len(train_rows), dtype=bool))
    else:
        out = predictions(run, cfg, train_rows, progress)
    if not out.decoded.all():
        bad = train_rows.loc[~out.decoded, "path"].tolist()
        echo(f"warning: mine: {len(bad)} training images could not be read and are not judged, e.g. {bad[0]}")
    labels = torch.from_numpy(train_rows["label"].to_numpy(dtype="int64", copy=True))
    p_true, pred = torch.from_numpy(np.nan_to_num(out.p_true, nan=1.0)), torch.from_numpy(out.pred)
    counts = dict(zip(classes["label"].astype(int), classes["train_count"].astype(int)))
    few = torch.from_numpy(few_shot_mask(labels.numpy(), counts, bucket_of, m.few_shot_below))
    table["p_true"] = out.p_true
    table["pred_label"] = out.pred
    reasons = hard_rules(p_true, pred, labels, few, m)
    # An image that could not be read is never hard: there is nothing to generate from.
    table["reason"] = [r if ok else "" for r, ok in zip(reasons, out.decoded)]

    # 3. The hard table.
    hard = table[table["reason"] != ""].reset_index(drop=True)
    hard = drop_excluded_classes(hard, classes, m.exclude_classes, echo)
    if hard.empty:
        echo("warning: no hard sample found; loosen mine.rules or mine.prob_threshold")
    write_table(hard, run.hard, "hard")
    judged = "no base model" if no_model else f"out-of-fold, {m.folds} folds" if m.folds >= 2 else "in-sample"
    echo(f"mine: {len(hard)} hard samples of {len(table)} training images (rules {'+'.join(m.rules)}; {judged})")
    return hard


def mine_with_clip(run: RunDir, cfg: RunConfig, table: pd.DataFrame, classes: pd.DataFrame, echo=print,
                   progress: bool = True) -> pd.DataFrame:
    """The hard table by the zero-shot CLIP (and few_shot, if listed); ``table`` holds the training
    rows with their bucket. Writes run.hard. An alternative to the authors' iWildCam CSV, which lists a
    pretrained model's failures; no base model is trained or loaded."""
    from ..scoring.zero_shot import clip_predictions  # open_clip is imported only when this rule is used

    m = cfg.mine
    others = [r for r in m.rules if r != CLIP_RULE and r not in MODEL_FREE]
    if others:
        raise ValueError(f"mine.rules: {CLIP_RULE} is judged by the zero-shot CLIP and combines only with "
                         f"{list(MODEL_FREE)}, not with {others} (rules of the base model)")
    if warning := demo_text_warning("score.caption_template", cfg.score.caption_template, cfg.data.name):
        echo(warning)
    pred, p_true = clip_predictions(run, cfg, table, classes, echo, progress)
    labels = table["label"].astype(int).to_numpy()
    counts = dict(zip(classes["label"].astype(int), classes["train_count"].astype(int)))
    buckets = dict(zip(classes["label"].astype(int), classes["bucket"]))
    fired = {CLIP_RULE: pred != labels, "few_shot": few_shot_mask(labels, counts, buckets, m.few_shot_below)}
    table = table.assign(p_true=p_true.astype(np.float32), pred_label=pred.astype(np.int32))
    table["reason"] = ["+".join(r for r in m.rules if fired[r][i]) for i in range(len(table))]
    hard = table[table["reason"] != ""].reset_index(drop=True)
    hard = drop_excluded_classes(hard, classes, m.exclude_classes, echo)
    if hard.empty:
        echo("warning: no hard sample found: the zero-shot CLIP gets every training image right")
    write_table(hard, run.hard, "hard")
    echo(f"mine: {len(hard)} hard samples of {len(table)} training images (rules {'+'.join(m.rules)}; "
         f"the zero-shot CLIP gets {float((pred == labels).mean()):.1%} right, captions {cfg.score.caption_template!r})")
    return hard
