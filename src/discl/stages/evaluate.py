"""Stage `eval`: top-1 accuracy overall and per bucket on the test split, for every trained method.

Test images are streamed from disk in one pass per split for all methods at once (each batch goes
through every model), on `eval.device`. iWildCam adds WILDS's own macro F1 on the OOD (test) and
ID (id_test) splits from the same predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..artefacts import model_kind, model_record, read_meta
from ..config import RunConfig
from ..data import load_dataset_tables
from ..data.rows import ImageRows
from ..metrics import bucket_accuracy, paper_table
from ..model_cache import changed_keys, describe_changes, method_settings
from ..rundir import RunDir
from ..tables import write_table
from ..training.methods import TrainInputs, load_inputs
from ..training.stream import Predictions, predict_rows
from ..training.task_registry import task_kinds, task_type_of_kind


def is_trained(folder) -> bool:
    """Whether ``folder`` holds a model of a kind some registered task type saves (training/task_registry.py)."""
    return model_kind(folder) in task_kinds()


def trained_methods(run: RunDir, cfg: RunConfig) -> list[str]:
    return [m for m in cfg.train.methods if is_trained(run.method_dir(m))]


def saved_meta(folder: Path) -> dict:
    """What the task model in ``folder`` was saved with (its config in discl_model.json, or an older layout's file)."""
    return read_meta(folder)["config"]


def load_task(folder: Path):
    """The model saved in ``folder`` as a task with its evaluation transform, loaded by the task type that
    saves its kind (a timm classifier, a FLYP CLIP, ...)."""
    folder = Path(folder)
    kind = read_meta(folder)["kind"]
    loader = task_type_of_kind(kind)
    if loader is None:
        raise ValueError(f"{folder} holds a {kind} model, which no registered task type (train.task) loads")
    return loader.load(folder)


def check_current(run: RunDir, cfg: RunConfig, method: str, inputs: TrainInputs) -> None:
    """Refuse a model trained with other settings than the run's (e.g. a retrain that was interrupted), or on
    other inputs than the run now holds (e.g. `discl score` kept other images since): it would be reported as current."""
    saved = saved_meta(run.method_dir(method)).get("settings")
    if saved is None:
        return
    saved = {k: v for k, v in saved.items() if k != "held_out"}
    # A model saved before input digests were recorded is compared on its settings only.
    digests = inputs.digests(method) if "inputs" in saved else None
    current = json.loads(json.dumps(method_settings(cfg, method, inputs.train_rows, digests), default=str))
    changed = changed_keys(saved, current)
    if changed:
        raise ValueError(f"{run.method_dir(method)} holds a model trained on other inputs or settings than the run's "
                         f"(changed: {describe_changes(changed[:5])}); run `discl train {run.root}` first")


def predict_split(run: RunDir, cfg: RunConfig, tasks: dict, rows: pd.DataFrame, split: str, echo=print) -> dict[str, Predictions]:
    """Predictions of every task on ``rows``: one decoding pass per distinct evaluation transform."""
    image_rows = ImageRows.from_frame(rows, run.resolve_all)
    groups: dict[str, list[str]] = {}
    for method, task in tasks.items():
        groups.setdefault(json.dumps(task.transforms.describe(), sort_keys=True), []).append(method)
    out: dict[str, Predictions] = {}
    for methods in groups.values():
        for method, result in zip(methods, predict_rows([tasks[m] for m in methods], image_rows, cfg.eval)):
            out[method] = result
    failed = ~next(iter(out.values())).decoded
    if failed.any():
        names = rows.loc[failed, "path"].tolist()
        message = f"{int(failed.sum())} of {len(rows)} {split} images could not be read, e.g. {', '.join(names[:5])}"
        if failed.mean() > cfg.eval.max_skipped_fraction:
            raise ValueError(f"{message}; that is more than eval.max_skipped_fraction ({cfg.eval.max_skipped_fraction:g})")
        echo(f"warning: {message}; they count as errors")
    return out


def run_eval_from_env(run: RunDir, cfg: RunConfig, echo=print) -> pd.DataFrame:
    """run_eval in this process, or as one rank under torchrun: every process predicts its share of each
    split and the predictions are gathered (training/stream.py); only rank 0 echoes and writes."""
    from ..training import ddp
    from ..training.device import resolve_device

    ddp.init_from_env(resolve_device(cfg.eval.device, "eval.device"))
    try:
        return run_eval(run, cfg, echo if ddp.is_main() else (lambda *_: None), write=ddp.is_main())
    finally:
        ddp.shutdown()


def run_eval(run: RunDir, cfg: RunConfig, echo=print, write: bool = True) -> pd.DataFrame:
    dataset, classes = load_dataset_tables(run)
    test_rows = dataset[dataset["split"] == "test"].reset_index(drop=True)
    if test_rows.empty:
        raise ValueError(f"{run.dataset} has no test image")
    methods = trained_methods(run, cfg)
    if not methods:
        raise FileNotFoundError(f"no trained model under {run.train}: run `discl train` first")
    inputs = load_inputs(run, cfg, methods, echo=lambda *_: None)
    for method in methods:
        check_current(run, cfg, method, inputs)
    tasks = {m: load_task(run.method_dir(m)) for m in methods}
    made_from = {"models": {m: model_record(run.method_dir(m)) for m in methods}}
    predictions = predict_split(run, cfg, tasks, test_rows, "test", echo)
    labels = test_rows["label"].to_numpy(dtype=np.int64)
    rows, tables = [], []
    for method in methods:
        result = predictions[method]
        rows += [{"method": method, **r} for r in bucket_accuracy(result.pred, labels, classes)]
        tables.append(pd.DataFrame({"method": method, "sample_id": test_rows["sample_id"].to_numpy(), "label": labels,
                                    "pred_label": result.pred, "p_true": result.p_true}))
    metrics = pd.DataFrame(rows)
    if write:
        write_table(metrics, run.metrics, "metrics", meta=made_from)
        write_table(pd.concat(tables, ignore_index=True), run.predictions, "predictions", meta=made_from)
    if cfg.data.name == "iwildcam":
        run_wilds_eval(run, cfg, dataset, tasks, {"test": predictions}, echo, write)
    echo(paper_table(metrics))
    return metrics


def run_wilds_eval(run: RunDir, cfg: RunConfig, dataset: pd.DataFrame, tasks: dict, known: dict, echo=print,
                   write: bool = True) -> pd.DataFrame:
    """Macro F1, macro recall and accuracy on the OOD (test) and ID (id_test) splits, by WILDS's own eval;
    each split is decoded once for all methods (``known`` holds splits already predicted)."""
    from ..data.iwildcam import wilds_eval

    rows = []
    for split in ("test", "id_test"):
        split_rows = dataset[dataset["split"] == split].reset_index(drop=True)
        if split_rows.empty:
            continue
        predictions = known.get(split) or predict_split(run, cfg, tasks, split_rows, split, echo)
        for method in tasks:
            results = wilds_eval(cfg.data.root, split, split_rows["sample_id"].tolist(), predictions[method].pred)
            rows += [{"method": method, "split": split, "metric": k, "value": v} for k, v in results.items()]
            echo(f"{method} {split}: macro F1 {100 * results['F1-macro_all']:.2f}, accuracy {100 * results['acc_avg']:.2f}")
    frame = pd.DataFrame(rows, columns=["method", "split", "metric", "value"])
    if write:
        write_table(frame, run.wilds_metrics, "wilds_metrics", meta={"models": {m: model_record(run.method_dir(m)) for m in tasks}})
    return frame
