import math

import numpy as np
import pandas as pd

from discl.metrics import bucket_accuracy, paper_table


def test_bucket_accuracy_by_hand():
    classes = pd.DataFrame({"label": [0, 1, 2], "bucket": ["many", "medium", "few"]})
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0, 0, 0])
    rows = {r["bucket"]: r for r in bucket_accuracy(pred, labels, classes)}
    assert rows["many"]["accuracy"] == 50.0 and rows["many"]["n_images"] == 2
    assert rows["medium"]["accuracy"] == 100.0
    assert rows["few"]["accuracy"] == 25.0
    assert rows["overall"]["accuracy"] == 50.0 and rows["overall"]["n_images"] == 8


def test_empty_bucket_is_nan_not_zero():
    classes = pd.DataFrame({"label": [0], "bucket": ["many"]})
    rows = {r["bucket"]: r for r in bucket_accuracy(np.array([0]), np.array([0]), classes)}
    assert math.isnan(rows["few"]["accuracy"]) and rows["few"]["n_images"] == 0


def test_paper_table_has_one_row_per_method_in_order():
    metrics = pd.DataFrame(
        [{"method": m, "bucket": b, "accuracy": a} for m, a in (("real-only", 10.0), ("DisCL", 20.5)) for b in ("many", "medium", "few", "overall")]
    )
    lines = paper_table(metrics).splitlines()
    assert "Many" in lines[0] and "Overall" in lines[0]
    assert lines[2].startswith("| real-only") and lines[3].startswith("| DisCL")
    assert lines[3].count("20.50") == 4
