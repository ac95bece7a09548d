"""Stage `eval`: top-1 accuracy overall and per bucket on the test split, for every trained method."""

from __future__ import annotations

import pandas as pd

from ..config import RunConfig
from ..data import load_dataset_tables, load_split
from ..metrics import bucket_accuracy, paper_table
from ..rundir import RunDir
from ..tables import write_table
from ..training.classifier import load_classifier, predict_proba


def trained_methods(run: RunDir, cfg: RunConfig) -> list[str]:
    return [m for m in cfg.train.methods if (run.method_dir(m) / "model.json").exists()]


def run_eval(run: RunDir, cfg: RunConfig, echo=print) -> pd.DataFrame:
    dataset, classes = load_dataset_tables(run)
    test_rows = dataset[dataset["split"] == "test"]
    if test_rows.empty:
        raise ValueError(f"{run.dataset} has no test image")
    methods = trained_methods(run, cfg)
    if not methods:
        raise FileNotFoundError(f"no trained model under {run.root / 'train'}: run `discl train` first")
    images, labels = load_split(run, test_rows, cfg.data.image_size)
    rows, predictions = [], []
    for method in methods:
        model, _ = load_classifier(run.method_dir(method))
        probs = predict_proba(model, images)
        pred = probs.argmax(-1).numpy()
        rows += [{"method": method, **r} for r in bucket_accuracy(pred, labels.numpy(), classes)]
        predictions.append(pd.DataFrame({
            "method": method, "sample_id": test_rows["sample_id"].to_numpy(), "label": labels.numpy(),
            "pred_label": pred, "p_true": probs.gather(1, labels[:, None]).squeeze(1).numpy(),
        }))
    metrics = pd.DataFrame(rows)
    write_table(metrics, run.metrics, "metrics")
    write_table(pd.concat(predictions, ignore_index=True), run.predictions, "predictions")
    echo(paper_table(metrics))
    return metrics
