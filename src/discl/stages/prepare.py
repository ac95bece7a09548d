"""Stage `prepare`: build the dataset tables of the run directory."""

from __future__ import annotations

from ..config import RunConfig
from ..data import prepare_dataset
from ..rundir import RunDir


def run_prepare(run: RunDir, cfg: RunConfig, echo=print) -> None:
    dataset, classes, skipped = prepare_dataset(run, cfg.data)
    counts = dataset["split"].value_counts().to_dict()
    echo(f"dataset {cfg.data.name}: {len(classes)} classes, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    echo("buckets: " + ", ".join(f"{b} {n}" for b, n in classes["bucket"].value_counts().sort_index().items()))
    if len(skipped):
        echo(f"skipped {len(skipped)} files (listed in {run.skipped}):")
        for row in skipped.head(10).itertuples():
            echo(f"  {row.path}: {row.reason}")
