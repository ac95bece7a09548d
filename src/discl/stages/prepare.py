"""Stage `prepare`: build the dataset tables of the run directory."""

from __future__ import annotations

from ..config import RunConfig
from ..data import prepare_dataset
from ..data.class_names import shared_names
from ..rundir import RunDir


def run_prepare(run: RunDir, cfg: RunConfig, echo=print) -> None:
    dataset, classes, skipped = prepare_dataset(run, cfg.data)
    counts = dataset["split"].value_counts().to_dict()
    echo(f"dataset {cfg.data.name}: {len(classes)} classes, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    renamed = classes[classes["class_id"] != classes["class_name"]]
    if len(renamed):
        echo("class names: " + ", ".join(f"{r.class_id} -> {r.class_name}" for r in renamed.head(3).itertuples())
             + (f" (and {len(renamed) - 3} more)" if len(renamed) > 3 else ""))
    shared = shared_names(classes)
    if shared:
        echo(f"note: {len(shared)} names are shared by several classes: "
             + ", ".join(f"{name!r} (labels {labels})" for name, labels in list(shared.items())[:5])
             + "; prompt files keyed by name apply to all of them (data.class_names can rename them)")
    echo("buckets: " + ", ".join(f"{b} {n}" for b, n in classes["bucket"].value_counts().sort_index().items()))
    untrainable = classes[classes["train_count"] == 0]
    if len(untrainable):
        images = dataset.groupby("label").size()
        names = ", ".join(f"{n!r} ({images[y]} image{'s' if images[y] != 1 else ''})" for y, n in zip(untrainable["label"], untrainable["class_name"]))
        echo(f"warning: {len(untrainable)} classes have no training image, so no model can learn them: {names}; "
             "a class needs at least 2 images (one stays for training), or give it a train split")
    if len(skipped):
        echo(f"skipped {len(skipped)} files (listed in {run.skipped}):")
        for row in skipped.head(10).itertuples():
            echo(f"  {row.path}: {row.reason}")
