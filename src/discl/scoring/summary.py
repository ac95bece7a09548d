"""Per class and per level: how many synthetic images were made and kept, which rule dropped the
others, and the mean similarities."""

from __future__ import annotations

import pandas as pd

RULE_COLUMNS = {
    "dropped_text": "text_sim<",
    "dropped_image": "image_sim",
    "dropped_confident_wrong": "confident_wrong",
    "dropped_too_easy": "too_easy",
    "dropped_cap": "class_cap",
}


def score_summary(scores: pd.DataFrame, class_names: dict[int, str]) -> pd.DataFrame:
    """One row per (label, image_guidance). An image dropped by two rules counts under both."""
    frame = scores.copy()
    # Few distinct reasons exist; parse each once rather than once per image.
    distinct = {r: str(r).split("+") for r in frame["drop_reason"].unique()}
    for column, prefix in RULE_COLUMNS.items():
        flag = {r: any(x.startswith(prefix) for x in parts) for r, parts in distinct.items()}
        frame[column] = frame["drop_reason"].map(flag).astype(bool)
    frame["text_sim_kept"] = frame["text_sim"].where(frame["kept"])
    frame["image_sim_kept"] = frame["image_sim"].where(frame["kept"])
    grouped = frame.groupby(["label", "image_guidance"], sort=True)
    out = grouped.agg(
        generated=("synthetic_id", "size"),
        kept=("kept", "sum"),
        **{c: (c, "sum") for c in RULE_COLUMNS},
        mean_text_sim=("text_sim", "mean"),
        mean_image_sim=("image_sim", "mean"),
        mean_text_sim_kept=("text_sim_kept", "mean"),
        mean_image_sim_kept=("image_sim_kept", "mean"),
    ).reset_index()
    out.insert(1, "class_name", out["label"].map(lambda k: class_names.get(int(k), str(k))))
    out.insert(3, "strength", (100 - out["image_guidance"]) / 100.0)
    return out
