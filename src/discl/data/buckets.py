"""Many/medium/few-shot class buckets from training counts."""

from __future__ import annotations

import pandas as pd


def bucket_of(count: int, many_above: int, few_below: int) -> str:
    if count > many_above:
        return "many"
    if count < few_below:
        return "few"
    return "medium"


def class_table(dataset: pd.DataFrame, many_above: int, few_below: int) -> pd.DataFrame:
    """One row per class: label, class_name, class_id (default: the class name), train_count, bucket."""
    if few_below > many_above + 1:
        raise ValueError(f"few_below ({few_below}) must not exceed many_above + 1 ({many_above + 1})")
    columns = ["label", "class_name", "class_id"] if "class_id" in dataset.columns else ["label", "class_name"]
    classes = dataset[columns].drop_duplicates().sort_values("label")
    if "class_id" not in classes.columns:
        classes["class_id"] = classes["class_name"]
    counts = dataset[dataset["split"] == "train"]["label"].value_counts()
    classes["train_count"] = classes["label"].map(counts).fillna(0).astype("int32")
    classes["bucket"] = [bucket_of(n, many_above, few_below) for n in classes["train_count"]]
    return classes.reset_index(drop=True)
