"""`discl compare`: every method over several seeds and losses on one run directory, and the paper's table.

Each (loss, seed, method) trains into compare/<task>/<loss>/seed<seed>/<method>/ (resumable; a finished
run is not retrained), is evaluated on the test split, and the table reports mean +- std over seeds
of many / medium / few / overall top-1 accuracy. The validation accuracy (final epoch) is reported
beside it: choose settings by that column, never by the test columns.
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
import pandas as pd

from ..artefacts import model_record
from ..atomic import atomic_write_text
from ..config import RunConfig
from ..data import load_dataset_tables
from ..data.rows import ImageRows
from ..metrics import BUCKETS, bucket_accuracy
from ..rundir import RunDir
from ..tables import write_table
from ..training import ddp
from ..training.loggers import check_installed
from ..training.methods import load_inputs, train_method
from ..training.stream import predict_rows
from ..training.task_registry import task_type

LOSS_NAMES = {"ce": "CE", "bs": "BS", "flyp": "FLYP"}


def _classifier_loss(name: str) -> Literal["ce", "bs"]:
    if name == "ce":
        return "ce"
    if name == "bs":
        return "bs"
    raise ValueError(f"unknown loss {name!r}; known: ce, bs")


def run_compare(run: RunDir, cfg: RunConfig, methods: list[str], seeds: list[int], losses: list[str],
                echo=print, progress: bool = True) -> pd.DataFrame:
    loss_names = [_classifier_loss(loss) for loss in losses]  # before any training
    check_installed(cfg.train.loggers)
    dataset, classes = load_dataset_tables(run)
    test_rows = dataset[dataset["split"] == "test"]
    if test_rows.empty:
        raise ValueError(f"{run.dataset} has no test image")
    test_images = ImageRows.from_frame(test_rows, run.resolve_all)
    id_rows = dataset[dataset["split"] == "id_test"] if cfg.data.name == "iwildcam" else dataset.iloc[:0]
    id_images = ImageRows.from_frame(id_rows, run.resolve_all)
    inputs = load_inputs(run, cfg, methods, echo)
    rows = []
    models = {}  # what each row was measured on (the digest of its weights, its settings and input digests)
    for seed in seeds:  # seed outermost: an interrupted comparison still has every row for the first seeds
        for loss in loss_names:
            for method in methods:
                c = _with_loss(cfg, loss)
                c.train.classifier.seed = seed
                folder = run.compare_method_dir(cfg.train.task, loss, seed, method)
                log, task = train_method(run, c, method, inputs, folder, echo, progress)
                if ddp.is_main():  # rank 0 saved it
                    models[f"{loss}/seed{seed}/{method}"] = model_record(folder)
                pred = predict_rows([task], test_images, cfg.eval)[0].pred
                val_acc = 100 * log[-1]["val_acc"]
                seconds = sum(r["seconds"] + r.get("eval_seconds", 0.0) for r in log)
                f1 = wilds_f1(cfg, task, test_rows, pred, id_rows, id_images)
                for r in bucket_accuracy(pred, test_images.labels, classes):
                    rows.append({"loss": loss, "method": method, "seed": seed, "val_accuracy": val_acc,
                                 "train_seconds": seconds, **f1, **r})
                extra = "".join(f", {k.replace('_', ' ')} {v:.2f}" for k, v in f1.items() if np.isfinite(v))
                echo(f"compare {loss} seed {seed} {method}: val {val_acc:.2f}%, test overall {rows[-1]['accuracy']:.2f}%{extra}")
    frame = pd.DataFrame(rows)
    # the loss each row trained with, as the task type names it (FLYP: its CLIP loss whatever classifier.loss says)
    labels = {loss: task_type(cfg.train.task).loss_label(_with_loss(cfg, loss)) for loss in loss_names}
    frame["loss"] = frame["loss"].map(labels)
    write_table(frame, run.compare_results(cfg.train.task), "compare", meta={"models": models})
    table = compare_table(frame)
    atomic_write_text(run.compare_table(cfg.train.task), table + "\n")
    echo(table)
    return frame


def _with_loss(cfg: RunConfig, loss: Literal["ce", "bs"]) -> RunConfig:
    c = copy.deepcopy(cfg)
    c.train.classifier.loss = loss
    return c


def wilds_f1(cfg: RunConfig, task, test_rows: pd.DataFrame, pred: np.ndarray, id_rows: pd.DataFrame,
             id_images: ImageRows) -> dict[str, float]:
    """iWildCam: WILDS's own macro F1 (percent) on the OOD test split and the ID test split; NaN elsewhere."""
    out = {"ood_macro_f1": float("nan"), "id_macro_f1": float("nan")}
    if cfg.data.name != "iwildcam":
        return out
    from ..data.iwildcam import wilds_eval

    out["ood_macro_f1"] = 100 * wilds_eval(cfg.data.root, "test", test_rows["sample_id"].tolist(), pred)["F1-macro_all"]
    if len(id_rows):
        id_pred = predict_rows([task], id_images, cfg.eval)[0].pred
        out["id_macro_f1"] = 100 * wilds_eval(cfg.data.root, "id_test", id_rows["sample_id"].tolist(), id_pred)["F1-macro_all"]
    return out


def _cell(values: pd.Series) -> str:
    v = values.to_numpy(dtype=float)
    std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return f"{np.mean(v):5.2f} ± {std:4.2f}"


def compare_table(frame: pd.DataFrame) -> str:
    """Rows = loss + method in the order run; columns = Many, Medium, Few, Overall (mean ± std over seeds), Val."""
    lines = []
    names = [f"{LOSS_NAMES.get(loss, loss)} {m}" for loss, m in frame[["loss", "method"]].drop_duplicates().itertuples(index=False)]
    width = max(len("Method"), *map(len, names))
    wilds = "ood_macro_f1" in frame and frame["ood_macro_f1"].notna().any()
    head = ["Many", "Medium", "Few", "Overall", "Val (overall)"] + (["OOD macro F1", "ID macro F1"] if wilds else [])
    lines.append(f"| {'Method':<{width}} | " + " | ".join(f"{h:^13}" for h in head) + " |")
    lines.append(f"|{'-' * (width + 2)}|" + "|".join("-" * 15 for _ in head) + "|")
    n_seeds = frame["seed"].nunique()
    for (loss, method), group in frame.groupby(["loss", "method"], sort=False):
        cells = [_cell(group.loc[group["bucket"] == b, "accuracy"]) for b in (*BUCKETS, "overall")]
        overall = group[group["bucket"] == "overall"]
        cells.append(_cell(overall["val_accuracy"]))
        if wilds:
            cells += [_cell(overall["ood_macro_f1"]), _cell(overall["id_macro_f1"])]
        name = f"{LOSS_NAMES.get(str(loss), str(loss))} {method}"
        lines.append(f"| {name:<{width}} | " + " | ".join(f"{c:^13}" for c in cells) + " |")
    note = "; WILDS macro F1 % on the OOD (test) and ID (id_test) splits" if wilds else ""
    lines.append(f"(top-1 %, mean ± std over {n_seeds} seeds; test split except the Val column{note})")
    return "\n".join(lines)
