"""Top-1 accuracy overall and per long-tail bucket, and the paper's table format."""

from __future__ import annotations

import numpy as np
import pandas as pd

BUCKETS = ("many", "medium", "few")


def bucket_accuracy(pred: np.ndarray, labels: np.ndarray, classes: pd.DataFrame) -> list[dict]:
    """Rows of (bucket, accuracy in percent, n_images); a bucket with no test image gets NaN."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    bucket_of = dict(zip(classes["label"], classes["bucket"]))
    buckets = np.array([bucket_of[int(y)] for y in labels]) if len(labels) else np.array([], dtype=str)
    rows = []
    for bucket in (*BUCKETS, "overall"):
        mask = np.ones(len(labels), bool) if bucket == "overall" else buckets == bucket
        n = int(mask.sum())
        acc = float((pred[mask] == labels[mask]).mean() * 100) if n else float("nan")
        rows.append({"bucket": bucket, "accuracy": acc, "n_images": n})
    return rows


def paper_table(metrics: pd.DataFrame) -> str:
    """Rows = methods, columns = Many, Medium, Few, Overall (top-1 %), as in the paper."""
    wide = metrics.pivot_table(index="method", columns="bucket", values="accuracy", sort=False)
    width = max([len("Method"), *map(len, wide.index)])
    lines = [
        f"| {'Method':<{width}} | {'Many':>6} | {'Medium':>6} | {'Few':>6} | {'Overall':>7} |",
        f"|{'-' * (width + 2)}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 9}|",
    ]
    for method, row in wide.iterrows():
        cells = [f"{row.get(b, float('nan')):6.2f}" for b in BUCKETS]
        lines.append(f"| {method:<{width}} | {cells[0]} | {cells[1]} | {cells[2]} | {row.get('overall', float('nan')):7.2f} |")
    return "\n".join(lines)


def macro_f1(pred: np.ndarray, labels: np.ndarray) -> float:
    """Macro-averaged F1 in percent over the classes present in ``labels`` or ``pred`` (scikit-learn)."""
    from sklearn.metrics import f1_score

    return float(f1_score(np.asarray(labels), np.asarray(pred), average="macro", zero_division=0) * 100)
