"""Helpers shared by the stages."""

from __future__ import annotations

import hashlib

import pandas as pd

from ..config import ClassifierConfig
from ..rundir import RunDir
from ..training.classifier import load_classifier


def fingerprint(ids: pd.Series) -> str:
    """A short digest of which samples a model learnt from."""
    return hashlib.sha1("\n".join(sorted(map(str, ids))).encode()).hexdigest()[:16]


def base_model_dir(run: RunDir):
    return run.models / "base"


def load_base_classifier(run: RunDir):
    return load_classifier(base_model_dir(run))[0]


def classifier_settings(cfg: ClassifierConfig, image_size: int, rows: pd.DataFrame) -> dict:
    from dataclasses import asdict

    return {"classifier": asdict(cfg), "image_size": image_size, "data": fingerprint(rows["sample_id"])}
