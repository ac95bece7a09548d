"""Helpers shared by the stages."""

from __future__ import annotations

import hashlib

import pandas as pd

from ..config import ClassifierConfig
from ..rundir import RunDir
from ..training.classifier import load_classifier

# Settings that change how fast a model trains or what is printed, never its weights: a checkpoint
# written under other values of these is resumed from, and a saved model stays valid.
RESULT_NEUTRAL = ("methods", "resume", "device", "num_workers", "eval_batch_size", "eval_every",
                  "checkpoint_every_steps", "max_skipped_fraction", "compile")


def fingerprint(ids: pd.Series) -> str:
    """A short digest of which samples a model learnt from."""
    return hashlib.sha1("\n".join(sorted(map(str, ids))).encode()).hexdigest()[:16]


def base_model_dir(run: RunDir):
    return run.models / "base"


def load_base_classifier(run: RunDir):
    """The base model trained by `discl mine`, with its evaluation transform."""
    model, _, transforms = load_classifier(base_model_dir(run))
    return model, transforms


def classifier_settings(cfg: ClassifierConfig, image_size: int, rows: pd.DataFrame) -> dict:
    from dataclasses import asdict

    classifier = {k: v for k, v in asdict(cfg).items() if k not in RESULT_NEUTRAL}
    return {"classifier": classifier, "image_size": image_size, "data": fingerprint(rows["sample_id"])}


def method_settings(cfg, method: str, train_rows: pd.DataFrame) -> dict:
    """What determines a method's trained weights (besides its held-out sources): compared with a
    checkpoint before resuming, and with a saved model before evaluating it."""
    from dataclasses import asdict

    train = {k: v for k, v in asdict(cfg.train).items() if k not in RESULT_NEUTRAL}
    return {"method": method, "train": train, "image_size": cfg.data.image_size, "data": fingerprint(train_rows["sample_id"])}


def changed_keys(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested settings dicts."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out
