"""Composable filters over the scores table. Each rule names itself and says which images it keeps
(a ``Check``: name, reason, keep mask); an image dropped by several rules lists them all (joined by "+")
in ``drop_reason``, and the summary counts each rule's drops under ``dropped_<name>``, so its columns
follow from the rules, not from the spelling of their reasons.

Each rule registers its name (discl.registry.filters) with a ``from_config`` that reads its own score.*
settings and returns the rule, or None when those settings turn it off. Order: the per-image rules
(similarities, base-model confidence) run first and independently, in registration order; the rules
registered with ``survivors=True`` (the per-class cap: at most N of the survivors of each (class,
level), the ones with the highest text similarity) then run on what the others kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..registry import filters


@dataclass(frozen=True)
class Check:
    """One rule's verdict on every image. ``name`` is the rule's (its drops are counted under
    ``dropped_<name>``); ``reason`` is how ``drop_reason`` spells it, threshold included."""

    name: str
    reason: str
    keep: pd.Series  # False where the rule drops the image


@filters.register("text-similarity", settings=("text_threshold",))
@dataclass(frozen=True)
class TextSimAtLeast:
    """Drop images whose CLIP similarity to their text (caption or prompt) is below score.text_threshold."""

    minimum: float

    @classmethod
    def from_config(cls, cfg) -> TextSimAtLeast:
        return cls(cfg.text_threshold)

    def checks(self, scores: pd.DataFrame) -> list[Check]:
        return [Check("text", f"text_sim<{self.minimum:g}", ~(scores["text_sim"] < self.minimum))]


@filters.register("image-similarity", settings=("image_threshold", "image_max"))
@dataclass(frozen=True)
class ImageSimInBand:
    """Keep images whose CLIP similarity to their source is >= score.image_threshold and <= score.image_max
    when given (a band: not too far from the source, not a copy)."""

    minimum: float | None = None
    maximum: float | None = None

    @classmethod
    def from_config(cls, cfg) -> ImageSimInBand | None:
        on = cfg.image_threshold is not None or cfg.image_max is not None
        return cls(cfg.image_threshold, cfg.image_max) if on else None

    def checks(self, scores: pd.DataFrame) -> list[Check]:
        out = []
        if self.minimum is not None:
            out.append(Check("image", f"image_sim<{self.minimum:g}", ~(scores["image_sim"] < self.minimum)))
        if self.maximum is not None:
            out.append(Check("image", f"image_sim>{self.maximum:g}", ~(scores["image_sim"] > self.maximum)))
        return out


@filters.register("base-confidence", settings=("confident_wrong", "too_easy"))
@dataclass(frozen=True)
class BaseModelConfidence:
    """ALIA-style: drop images the base model confidently assigns to another class (likely not
    showing their class), and/or images it already finds trivially easy (nothing to learn)."""

    confident_wrong: float | None = None  # drop if pred != label and p(pred) >= this
    too_easy: float | None = None  # drop if p(true class) >= this

    @classmethod
    def from_config(cls, cfg) -> BaseModelConfidence | None:
        on = cfg.confident_wrong is not None or cfg.too_easy is not None
        return cls(cfg.confident_wrong, cfg.too_easy) if on else None

    def checks(self, scores: pd.DataFrame) -> list[Check]:
        needed = ["base_p_true", "base_pred", "base_p_pred"]
        missing = [c for c in needed if c not in scores.columns]
        if missing or scores[needed].isna().any().any():
            bad = scores.loc[scores[needed].isna().any(axis=1), "synthetic_id"].tolist()[:1] if not missing else []
            raise ValueError(f"the confidence filter needs the base model's predictions for every image; missing for {bad or missing}")
        out = []
        if self.confident_wrong is not None:
            wrong = (scores["base_pred"] != scores["label"]) & (scores["base_p_pred"] >= self.confident_wrong)
            out.append(Check("confident_wrong", f"confident_wrong>={self.confident_wrong:g}", ~wrong))
        if self.too_easy is not None:
            out.append(Check("too_easy", f"too_easy>={self.too_easy:g}", ~(scores["base_p_true"] >= self.too_easy)))
        return out


@filters.register("class-cap", survivors=True, settings=("max_per_class",))
@dataclass(frozen=True)
class ClassCap:
    """At most score.max_per_class kept images per (class, image-guidance level), the most text-similar."""

    per_level: int

    @classmethod
    def from_config(cls, cfg) -> ClassCap | None:
        if cfg.max_per_class is None:
            return None
        if cfg.max_per_class < 1:
            raise ValueError(f"score.max_per_class must be >= 1, got {cfg.max_per_class}")
        return cls(cfg.max_per_class)

    def checks(self, scores: pd.DataFrame, survivors: pd.Series) -> list[Check]:
        alive = scores[survivors].sort_values(["text_sim", "synthetic_id"], ascending=[False, True], kind="stable")
        rank = alive.groupby(["label", "image_guidance"]).cumcount()
        over = pd.Series(False, index=scores.index)
        over.loc[rank.index[rank.to_numpy() >= self.per_level]] = True
        return [Check("cap", f"class_cap>{self.per_level}", ~over)]


@dataclass(frozen=True)
class Filtered:
    """What the filters did: ``scores`` plus ``drop_reason`` ("" when kept) and ``kept``; ``dropped`` has
    one bool column per rule name, in rule order (True where that rule dropped the image), including
    the rules that ran and dropped nothing."""

    scores: pd.DataFrame
    dropped: pd.DataFrame


def _drop_reasons(checks: list[Check], index: pd.Index) -> pd.Series:
    """Per image, the reasons of the checks that drop it, in check order, joined by "+"."""
    reasons = pd.Series("", index=index)
    for check in checks:
        reasons = _join(reasons, pd.Series(np.where(check.keep.to_numpy(), "", check.reason), index=index))
    return reasons


def _join(a: pd.Series, b: pd.Series) -> pd.Series:
    both = (a != "") & (b != "")
    return a.str.cat(b, sep="").where(~both, a + "+" + b)


def _dropped_by_rule(checks: list[Check], index: pd.Index) -> pd.DataFrame:
    """One bool column per check name, in check order; checks of one name (both sides of a band) share it."""
    columns = list(dict.fromkeys(c.name for c in checks))
    dropped = pd.DataFrame({name: np.zeros(len(index), dtype=bool) for name in columns}, index=index)
    for check in checks:
        dropped[check.name] |= ~check.keep.to_numpy(dtype=bool)
    return dropped


def check_similarities(scores: pd.DataFrame) -> None:
    nan = scores["text_sim"].isna() | scores["image_sim"].isna()
    if nan.any():
        bad = scores.loc[nan, "synthetic_id"].tolist()[:5]
        raise ValueError(f"NaN similarity for {int(nan.sum())} synthetic images, e.g. {bad}")


def run_filters(scores: pd.DataFrame, rules: list, cap=None) -> Filtered:
    """Every rule on ``scores``, then the survivors' rules (``cap``: one, a list, or None) on what they kept."""
    check_similarities(scores)
    checks = [check for rule in rules for check in rule.checks(scores)]
    for last in [] if cap is None else cap if isinstance(cap, list) else [cap]:
        survivors = pd.Series(True, index=scores.index)
        for check in checks:
            survivors &= check.keep.to_numpy(dtype=bool)
        checks += last.checks(scores, survivors)
    out = scores.copy()
    out["drop_reason"] = _drop_reasons(checks, scores.index).to_numpy()
    out["kept"] = out["drop_reason"] == ""
    return Filtered(out, _dropped_by_rule(checks, scores.index))


def apply_filters(scores: pd.DataFrame, rules: list, cap=None) -> pd.DataFrame:
    """``scores`` plus ``drop_reason`` ("" when kept) and ``kept``."""
    return run_filters(scores, rules, cap).scores


def filters_from_config(cfg) -> tuple[list, list]:
    """The filters a ScorerConfig turns on, in the registry's order: the per-image rules, and the rules
    that run on their survivors."""
    made = [(entry, entry.target.from_config(cfg)) for entry in filters.entries()]
    return ([rule for entry, rule in made if rule is not None and not entry.survivors],
            [rule for entry, rule in made if rule is not None and entry.survivors])
