"""Per class and per level: how many synthetic images were made and kept, how many each filter rule
dropped, and the mean similarities. Computed once, by the score stage (score_summary.parquet); the
report reads it."""

from __future__ import annotations

import pandas as pd

from ..tables import SCHEMAS

#: The rule columns every score_summary has (docs/schemas.md): a rule that is off dropped nothing there.
DOCUMENTED_DROPS = [c for c in SCHEMAS["score_summary"].names if c.startswith("dropped_")]


def drop_columns(dropped: pd.DataFrame) -> pd.DataFrame:
    """``dropped`` (one bool column per rule name) as dropped_<name> columns, the documented ones first."""
    named = dropped.add_prefix("dropped_")
    columns = list(dict.fromkeys([*DOCUMENTED_DROPS, *named.columns]))
    return named.reindex(columns=columns, fill_value=False)


def score_summary(scores: pd.DataFrame, dropped: pd.DataFrame, class_names: dict[int, str]) -> pd.DataFrame:
    """One row per (label, image_guidance), from the filters' output (``run_filters``: ``scores`` with
    ``kept``, and ``dropped`` per rule name). An image dropped by two rules counts under both."""
    drops = drop_columns(dropped)
    frame = pd.concat([scores, drops], axis=1)
    frame["text_sim_kept"] = frame["text_sim"].where(frame["kept"])
    frame["image_sim_kept"] = frame["image_sim"].where(frame["kept"])
    grouped = frame.groupby(["label", "image_guidance"], sort=True)
    out = grouped.agg(
        generated=("synthetic_id", "size"),
        kept=("kept", "sum"),
        **{c: (c, "sum") for c in drops.columns},
        mean_text_sim=("text_sim", "mean"),
        mean_image_sim=("image_sim", "mean"),
        mean_text_sim_kept=("text_sim_kept", "mean"),
        mean_image_sim_kept=("image_sim_kept", "mean"),
    ).reset_index()
    out.insert(1, "class_name", out["label"].map(lambda k: class_names.get(int(k), str(k))))
    out.insert(3, "strength", (100 - out["image_guidance"]) / 100.0)
    return out
