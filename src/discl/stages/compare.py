"""`discl compare`: every method over several seeds and losses on one run directory, and the paper's table.

Each (loss, seed, method) trains into compare/<task>/<loss>/seed<seed>/<method>/ (resumable; a finished
run is not retrained), is evaluated on the test split, and the table reports mean +- std over seeds
of many / medium / few / overall top-1 accuracy. The validation accuracy (final epoch) is reported
beside it: choose settings by that column, never by the test columns.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..data import load_dataset_tables
from ..data.rows import ImageRows
from ..metrics import BUCKETS, bucket_accuracy
from ..rundir import RunDir
from ..tables import write_table
from ..training.stream import predict_rows
from .train import load_inputs, train_method

LOSS_NAMES = {"ce": "CE", "bs": "BS", "flyp": "FLYP"}


def compare_dir(run: RunDir, task: str, loss: str, seed: int, method: str):
    return run.root / "compare" / task / loss / f"seed{seed}" / method


def run_compare(run: RunDir, cfg: RunConfig, methods: list[str], seeds: list[int], losses: list[str],
                echo=print, progress: bool = True) -> pd.DataFrame:
    dataset, classes = load_dataset_tables(run)
    test_rows = dataset[dataset["split"] == "test"]
    if test_rows.empty:
        raise ValueError(f"{run.dataset} has no test image")
    test_images = ImageRows.from_frame(test_rows, run.resolve_all)
    inputs = load_inputs(run, cfg, methods, echo)
    rows = []
    for seed in seeds:  # seed outermost: an interrupted comparison still has every row for the first seeds
        for loss in losses:
            for method in methods:
                c = copy.deepcopy(cfg)
                c.train.classifier.loss, c.train.classifier.seed = loss, seed
                log, task = train_method(run, c, method, inputs, compare_dir(run, cfg.train.task, loss, seed, method), echo, progress)
                pred = predict_rows([task], test_images, cfg.eval)[0].pred
                val_acc = 100 * log[-1]["val_acc"]
                seconds = sum(r["seconds"] + r.get("eval_seconds", 0.0) for r in log)
                for r in bucket_accuracy(pred, test_images.labels, classes):
                    rows.append({"loss": loss, "method": method, "seed": seed, "val_accuracy": val_acc,
                                 "train_seconds": seconds, **r})
                echo(f"compare {loss} seed {seed} {method}: val {val_acc:.2f}%, test overall {rows[-1]['accuracy']:.2f}%")
    frame = pd.DataFrame(rows)
    if cfg.train.task == "flyp":
        frame["loss"] = "flyp"  # FLYP trains with the CLIP loss whatever classifier.loss says
    out = run.root / "compare" / cfg.train.task
    write_table(frame, out / "results.parquet", "compare")
    table = compare_table(frame)
    (out / "table.md").write_text(table + "\n")
    echo(table)
    return frame


def _cell(values: pd.Series) -> str:
    v = values.to_numpy(dtype=float)
    std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return f"{np.mean(v):5.2f} ± {std:4.2f}"


def compare_table(frame: pd.DataFrame) -> str:
    """Rows = loss + method in the order run; columns = Many, Medium, Few, Overall (mean ± std over seeds), Val."""
    lines = []
    names = [f"{LOSS_NAMES.get(l, l)} {m}" for l, m in frame[["loss", "method"]].drop_duplicates().itertuples(index=False)]
    width = max(len("Method"), *map(len, names))
    head = ["Many", "Medium", "Few", "Overall", "Val (overall)"]
    lines.append(f"| {'Method':<{width}} | " + " | ".join(f"{h:^13}" for h in head) + " |")
    lines.append(f"|{'-' * (width + 2)}|" + "|".join("-" * 15 for _ in head) + "|")
    n_seeds = frame["seed"].nunique()
    for (loss, method), group in frame.groupby(["loss", "method"], sort=False):
        cells = [_cell(group.loc[group["bucket"] == b, "accuracy"]) for b in (*BUCKETS, "overall")]
        cells.append(_cell(group.loc[group["bucket"] == "overall", "val_accuracy"]))
        name = f"{LOSS_NAMES.get(loss, loss)} {method}"
        lines.append(f"| {name:<{width}} | " + " | ".join(f"{c:^13}" for c in cells) + " |")
    lines.append(f"(top-1 %, mean ± std over {n_seeds} seeds; test split except the last column)")
    return "\n".join(lines)
