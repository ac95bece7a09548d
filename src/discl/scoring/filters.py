"""Composable filters over the scores table. Each filter names why it drops an image; an image
dropped by several rules lists them all (joined by "+") in ``drop_reason``.

Order: the per-image rules (similarities, base-model confidence) run first and independently;
the per-class cap then keeps at most N of the survivors of each (class, level), the ones with
the highest text similarity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TextSimAtLeast:
    minimum: float

    def reasons(self, scores: pd.DataFrame) -> pd.Series:
        return _reason(scores["text_sim"] < self.minimum, f"text_sim<{self.minimum:g}")


@dataclass(frozen=True)
class ImageSimInBand:
    """image_sim >= minimum, and <= maximum when given (a band: not too far from the source, not a copy)."""

    minimum: float | None = None
    maximum: float | None = None

    def reasons(self, scores: pd.DataFrame) -> pd.Series:
        out = pd.Series("", index=scores.index)
        if self.minimum is not None:
            out = _join(out, _reason(scores["image_sim"] < self.minimum, f"image_sim<{self.minimum:g}"))
        if self.maximum is not None:
            out = _join(out, _reason(scores["image_sim"] > self.maximum, f"image_sim>{self.maximum:g}"))
        return out


@dataclass(frozen=True)
class BaseModelConfidence:
    """ALIA-style: drop images the base model confidently assigns to another class (likely not
    showing their class), and/or images it already finds trivially easy (nothing to learn)."""

    confident_wrong: float | None = None  # drop if pred != label and p(pred) >= this
    too_easy: float | None = None  # drop if p(true class) >= this

    def reasons(self, scores: pd.DataFrame) -> pd.Series:
        needed = ["base_p_true", "base_pred", "base_p_pred"]
        missing = [c for c in needed if c not in scores.columns]
        if missing or scores[needed].isna().any().any():
            bad = scores.loc[scores[needed].isna().any(axis=1), "synthetic_id"].tolist()[:1] if not missing else []
            raise ValueError(f"the confidence filter needs the base model's predictions for every image; missing for {bad or missing}")
        out = pd.Series("", index=scores.index)
        if self.confident_wrong is not None:
            wrong = (scores["base_pred"] != scores["label"]) & (scores["base_p_pred"] >= self.confident_wrong)
            out = _join(out, _reason(wrong, f"confident_wrong>={self.confident_wrong:g}"))
        if self.too_easy is not None:
            out = _join(out, _reason(scores["base_p_true"] >= self.too_easy, f"too_easy>={self.too_easy:g}"))
        return out


@dataclass(frozen=True)
class ClassCap:
    """At most ``per_level`` kept images per (class, image-guidance level)."""

    per_level: int

    def reasons(self, scores: pd.DataFrame, survivors: pd.Series) -> pd.Series:
        alive = scores[survivors].sort_values(["text_sim", "synthetic_id"], ascending=[False, True], kind="stable")
        rank = alive.groupby(["label", "image_guidance"]).cumcount()
        over = pd.Series(False, index=scores.index)
        over.loc[rank.index[rank.to_numpy() >= self.per_level]] = True
        return _reason(over, f"class_cap>{self.per_level}")


def _reason(mask: pd.Series, text: str) -> pd.Series:
    return pd.Series(np.where(mask.to_numpy(), text, ""), index=mask.index)


def _join(a: pd.Series, b: pd.Series) -> pd.Series:
    both = (a != "") & (b != "")
    return a.str.cat(b, sep="").where(~both, a + "+" + b)


def check_similarities(scores: pd.DataFrame) -> None:
    nan = scores["text_sim"].isna() | scores["image_sim"].isna()
    if nan.any():
        bad = scores.loc[nan, "synthetic_id"].tolist()[:5]
        raise ValueError(f"NaN similarity for {int(nan.sum())} synthetic images, e.g. {bad}")


def apply_filters(scores: pd.DataFrame, rules: list, cap: ClassCap | None = None) -> pd.DataFrame:
    """``scores`` plus ``drop_reason`` ("" when kept) and ``kept``."""
    check_similarities(scores)
    reasons = pd.Series("", index=scores.index)
    for rule in rules:
        reasons = _join(reasons, rule.reasons(scores))
    if cap is not None:
        reasons = _join(reasons, cap.reasons(scores, reasons == ""))
    out = scores.copy()
    out["drop_reason"] = reasons.to_numpy()
    out["kept"] = out["drop_reason"] == ""
    return out


def filters_from_config(cfg) -> tuple[list, ClassCap | None]:
    """The filters a ScorerConfig asks for."""
    rules: list = [TextSimAtLeast(cfg.text_threshold)]
    if cfg.image_threshold is not None or cfg.image_max is not None:
        rules.append(ImageSimInBand(cfg.image_threshold, cfg.image_max))
    if cfg.confident_wrong is not None or cfg.too_easy is not None:
        rules.append(BaseModelConfidence(cfg.confident_wrong, cfg.too_easy))
    cap = ClassCap(cfg.max_per_class) if cfg.max_per_class is not None else None
    if cap is not None and cap.per_level < 1:
        raise ValueError(f"score.max_per_class must be >= 1, got {cap.per_level}")
    return rules, cap
