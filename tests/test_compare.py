"""`discl compare` on the tiny run: every (loss, seed, method) trained, the table in the paper's format,
and `discl train` with adaptive curricula writing its logs."""

import shutil

import numpy as np
import pandas as pd
import pytest

from discl.cli import main
from discl.config import RunConfig
from discl.rundir import RunDir
from discl.stages.compare import compare_table, run_compare


@pytest.mark.slow
def test_compare_command_writes_the_table(tiny_run, tmp_path):
    run, _ = tiny_run
    root = tmp_path / "run"
    shutil.copytree(run.root, root)
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(root), "--seeds", "0,1", "--losses", "ce", "--losses", "bs", "--methods", "real-only adaptive",
              "--no-progress", "--set", "train.classifier.epochs=2", "--set", "train.curriculum_epochs=2"])
    assert exit_info.value.code == 0
    results = pd.read_parquet(root / "compare" / "classifier" / "results.parquet")
    assert len(results) == 2 * 2 * 2 * 4  # losses x seeds x methods x buckets
    for loss in ("ce", "bs"):
        for seed in (0, 1):
            assert (root / "compare" / "classifier" / loss / f"seed{seed}" / "adaptive" / "curriculum_log.parquet").exists()
    table = (root / "compare" / "classifier" / "table.md").read_text().splitlines()
    assert table[0].split("|")[1].strip() == "Method" and "Overall" in table[0]
    row = next(line for line in table if line.startswith("| BS adaptive"))
    overall = results.query("loss == 'bs' and method == 'adaptive' and bucket == 'overall'")["accuracy"].to_numpy()
    cell = row.split("|")[5].strip()
    assert cell == f"{overall.mean():5.2f} ± {np.std(overall, ddof=1):4.2f}".strip()
    # the held-out curriculum-validation sources never reach the adaptive model's training data
    log = pd.read_parquet(root / "compare" / "classifier" / "ce" / "seed0" / "adaptive" / "log.parquet")
    plain = pd.read_parquet(root / "compare" / "classifier" / "ce" / "seed0" / "real-only" / "log.parquet")
    assert (log["n_real"] < plain["n_real"].iloc[0]).all()


def test_compare_table_mean_and_std():
    frame = pd.DataFrame([
        {"loss": "ce", "method": "m", "seed": s, "bucket": b, "accuracy": acc, "n_images": 1, "val_accuracy": 50.0 + s,
         "train_seconds": 1.0}
        for s, acc in ((0, 10.0), (1, 20.0), (2, 30.0)) for b in ("many", "medium", "few", "overall")
    ])
    lines = compare_table(frame).splitlines()
    assert "| CE m" in lines[2] and lines[2].count("20.00 ± 10.00") == 4 and "51.00 ± 1.00" in lines[2]
    assert "3 seeds" in lines[-1]


def test_compare_refuses_an_unknown_loss_before_training(tmp_path):
    # checked before the run directory is read: nothing is trained for the losses named before it
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        run_compare(RunDir(tmp_path), RunConfig(), ["real-only"], [0], ["ce", "focal"])
