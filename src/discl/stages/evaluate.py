"""Stage `eval`: top-1 accuracy overall and per bucket on the test split, for every trained method."""

from __future__ import annotations

import pandas as pd

from ..config import RunConfig
from ..data import load_dataset_tables, load_split
from ..metrics import bucket_accuracy, paper_table
from ..rundir import RunDir
from ..tables import write_table
from ..training.classifier import load_classifier, predict_proba


def is_trained(folder) -> bool:
    return (folder / "model.json").exists() or (folder / "flyp.json").exists()


def trained_methods(run: RunDir, cfg: RunConfig) -> list[str]:
    return [m for m in cfg.train.methods if is_trained(run.method_dir(m))]


def load_predictor(folder):
    """images -> class probabilities of the model saved in ``folder`` (a timm classifier or a FLYP CLIP)."""
    if (folder / "flyp.json").exists():
        import json

        from ..training.flyp import create_open_clip, load_flyp

        meta = json.loads((folder / "flyp.json").read_text())
        if meta["model"] == "demo":
            from ..scoring.tiny_clip import load_tiny_clip

            scorer = load_tiny_clip(folder)
        else:
            scorer = create_open_clip(meta["model"], None)
        return load_flyp(folder, scorer).predict_proba
    model, _ = load_classifier(folder)
    return lambda images: predict_proba(model, images)


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
        probs = load_predictor(run.method_dir(method))(images)
        pred = probs.argmax(-1).numpy()
        rows += [{"method": method, **r} for r in bucket_accuracy(pred, labels.numpy(), classes)]
        predictions.append(pd.DataFrame({
            "method": method, "sample_id": test_rows["sample_id"].to_numpy(), "label": labels.numpy(),
            "pred_label": pred, "p_true": probs.gather(1, labels[:, None]).squeeze(1).numpy(),
        }))
    metrics = pd.DataFrame(rows)
    write_table(metrics, run.metrics, "metrics")
    write_table(pd.concat(predictions, ignore_index=True), run.predictions, "predictions")
    if cfg.data.name == "iwildcam":
        run_wilds_eval(run, cfg, dataset, methods, echo)
    echo(paper_table(metrics))
    return metrics


def run_wilds_eval(run: RunDir, cfg: RunConfig, dataset: pd.DataFrame, methods: list[str], echo=print) -> pd.DataFrame:
    """Macro F1, macro recall and accuracy on the OOD (test) and ID (id_test) splits, by WILDS's own eval."""
    from ..data.iwildcam import wilds_eval

    rows = []
    for method in methods:
        predict = load_predictor(run.method_dir(method))
        for split in ("test", "id_test"):
            split_rows = dataset[dataset["split"] == split]
            if split_rows.empty:
                continue
            images, _ = load_split(run, split_rows, cfg.data.image_size)
            results = wilds_eval(cfg.data.root, split, split_rows["sample_id"].tolist(), predict(images).argmax(-1).numpy())
            rows += [{"method": method, "split": split, "metric": k, "value": v} for k, v in results.items()]
            echo(f"{method} {split}: macro F1 {100 * results['F1-macro_all']:.2f}, accuracy {100 * results['acc_avg']:.2f}")
    frame = pd.DataFrame(rows, columns=["method", "split", "metric", "value"])
    write_table(frame, run.root / "wilds_metrics.parquet", "wilds_metrics")
    return frame
