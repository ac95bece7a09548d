"""Stage `mine`: train (or reuse) the base classifier on the training split and flag hard samples."""

from __future__ import annotations

import pandas as pd
import torch

from ..config import MineConfig, RunConfig
from ..curriculum import RealOnly
from ..data import load_dataset_tables, load_split
from ..rundir import RunDir
from ..tables import write_table
from ..training.classifier import create_classifier, predict_proba, save_classifier
from ..training.loop import StageData, train_with_curriculum
from . import cache
from .common import base_model_dir, classifier_settings, load_base_classifier

RULES = ("few_shot", "low_true_prob", "misclassified")


def ensure_base_classifier(run: RunDir, cfg: RunConfig, progress: bool = True) -> torch.nn.Module:
    """The base model, trained on the real training split with cross-entropy; cached in models/base."""
    dataset, classes = load_dataset_tables(run)
    train_rows = dataset[dataset["split"] == "train"]
    settings = classifier_settings(cfg.mine.base, cfg.data.image_size, train_rows)
    folder = base_model_dir(run)
    if cache.is_current(folder, settings):
        return load_base_classifier(run)
    images, labels = load_split(run, train_rows, cfg.data.image_size)
    val_rows = dataset[dataset["split"] == "val"]
    val = load_split(run, val_rows, cfg.data.image_size)
    model = create_classifier(cfg.mine.base.model, len(classes), cfg.mine.base.seed)
    data = StageData(images, labels, len(labels), 0)
    train_with_curriculum(model, cfg.mine.base, RealOnly(cfg.mine.base.epochs), lambda _: data, val, "base", progress)
    save_classifier(model, folder, cfg.mine.base.model, len(classes))
    cache.mark_current(folder, settings)
    return model.eval()


def hard_rules(p_true: torch.Tensor, pred: torch.Tensor, labels: torch.Tensor, few: torch.Tensor, cfg: MineConfig) -> list[str]:
    """For each sample, the rules that flag it as hard, joined by "+" ("" = not hard)."""
    unknown = sorted(set(cfg.rules) - set(RULES))
    if unknown:
        raise ValueError(f"unknown mining rule {unknown[0]!r}; known: {list(RULES)}")
    fired = {
        "few_shot": few,
        "low_true_prob": p_true < cfg.prob_threshold,
        "misclassified": pred != labels,
    }
    return ["+".join(r for r in cfg.rules if fired[r][i]) for i in range(len(labels))]


def run_mine(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> pd.DataFrame:
    dataset, classes = load_dataset_tables(run)
    model = ensure_base_classifier(run, cfg, progress)
    train_rows = dataset[dataset["split"] == "train"].reset_index(drop=True)
    images, labels = load_split(run, train_rows, cfg.data.image_size)
    probs = predict_proba(model, images)
    p_true = probs.gather(1, labels[:, None]).squeeze(1)
    pred = probs.argmax(-1)
    bucket = train_rows["label"].map(dict(zip(classes["label"], classes["bucket"])))
    few = torch.from_numpy((bucket == "few").to_numpy(copy=True))
    reasons = hard_rules(p_true, pred, labels, few, cfg.mine)

    table = train_rows[["sample_id", "label", "class_name", "path"]].copy()
    table["bucket"] = bucket.to_numpy()
    table["p_true"] = p_true.numpy()
    table["pred_label"] = pred.numpy()
    table["reason"] = reasons
    hard = table[table["reason"] != ""].reset_index(drop=True)
    if hard.empty:
        echo("warning: no hard sample found; loosen mine.rules or mine.prob_threshold")
    write_table(hard, run.hard, "hard")
    echo(f"mine: {len(hard)} hard samples of {len(table)} training images (rules {'+'.join(cfg.mine.rules)})")
    return hard
