"""The recipe options of `discl train`: tail sampling per method, the real rows of a stage, model
selection on the test split, and FLYP rows per template, wired from the config into the loop."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from discl.config import load_config
from discl.curricula import Stage
from discl.rundir import RunDir
from discl.stages.train import run_train
from discl.tables import read_table
from discl.training.methods import build_method_data, load_inputs, tail_sampling


def _pool(tmp_path, hard_real):
    from discl.training.pool import RowPool

    real = pd.DataFrame({"path": [f"r{i}.png" for i in range(6)], "label": [0, 0, 1, 1, 2, 2]})
    synthetic = pd.DataFrame({"path": [f"s{i}.png" for i in range(4)], "label": [1, 1, 2, 2],
                              "image_guidance": [10, 50, 10, 50]})
    val = pd.DataFrame({"path": ["v.png"], "label": [0]})
    return RowPool(RunDir(tmp_path), real, synthetic, val, {1, 2}, hard_real=hard_real)


def test_non_hard_stage_real_leaves_out_the_hard_real_images_only_below_level_100(tmp_path):
    hard = np.array([False, False, True, False, True, True])  # rows 2, 4, 5 are hard samples
    pool = _pool(tmp_path, hard)
    at_10 = pool(Stage(level=10, epochs=1))
    assert at_10.positions.tolist() == [0, 1, 3, 6, 8]  # real 0, 1, 3 + synthetic at 10
    assert (at_10.n_real, at_10.n_synthetic) == (3, 2)
    assert at_10.tail.tolist() == [False, False, True, True, True]
    assert pool(Stage(level=100, epochs=1)).positions.tolist() == [0, 1, 2, 3, 4, 5]
    assert pool(Stage(level=None, epochs=1)).positions.tolist() == [0, 1, 2, 3, 4, 5]
    assert pool(Stage(level=None, epochs=1, levels=(10, 100))).n_real == 6
    # Per-class levels: class 1 at 50 drops its hard row 2; class 2 at 100 keeps rows 4 and 5.
    per_class = pool(Stage(level=None, epochs=1, class_levels=((1, 50), (2, 100))))
    assert per_class.positions[: per_class.n_real].tolist() == [0, 1, 3, 4, 5]
    # Without hard marks (stage_real = all) every stage keeps every real row.
    assert _pool(tmp_path, None)(Stage(level=10, epochs=1)).n_real == 6


def test_hard_marks_must_match_the_real_rows(tmp_path):
    with pytest.raises(ValueError, match="hard_real has 2 entries for 6 real rows"):
        _pool(tmp_path, np.array([True, False]))


@pytest.mark.parametrize("mode, real_only, curriculum", [("none", False, False), ("curricula", False, True),
                                                        ("all", True, True)])
def test_tail_sampling_applies_per_method(mode, real_only, curriculum):
    cfg = load_config(None, None, [f"train.curriculum.tail_sampling={mode}", "train.curriculum.tail_rule=replacement"])
    assert (tail_sampling(cfg, "real-only") is not None) == real_only
    sampler = tail_sampling(cfg, "non-adaptive")
    assert (sampler is not None) == curriculum
    if sampler is not None:
        assert sampler.rule == "replacement"


def test_stage_real_non_hard_marks_the_hard_samples_of_the_run(run_copy):
    run, cfg = run_copy
    cfg = load_config(run.root, None, ["train.curriculum.stage_real=non-hard"])
    inputs = load_inputs(run, cfg, ["non-adaptive"], echo=lambda *_: None)
    hard = set(read_table(run.hard, "hard")["sample_id"])
    assert inputs.hard_ids == hard and hard
    pool, _, _ = build_method_data(run, cfg, "non-adaptive", inputs)
    n_hard = int(inputs.train_rows["sample_id"].isin(hard).sum())
    assert pool(Stage(level=0, epochs=1)).n_real == len(inputs.train_rows) - n_hard
    assert pool(Stage(level=100, epochs=1)).n_real == len(inputs.train_rows)


def test_select_best_test_keeps_the_epoch_best_on_the_test_split(run_copy):
    run, cfg = run_copy
    cfg = load_config(run.root, None, ["train.select=best-test", "train.methods=[real-only]", "train.resume=false"])
    run_train(run, cfg, echo=lambda *_: None, progress=False)
    log = read_table(run.method_dir("real-only") / "log.parquet", "train_log")
    scores = log["select_acc"].to_numpy()
    assert np.isfinite(scores).all() and len(scores) == cfg.train.classifier.epochs
    selected = json.loads((run.method_dir("real-only") / "discl_model.json").read_text())["config"]["selected"]
    assert selected["rows"] == "test"
    assert selected["epoch"] == int(np.argmax(scores)) + 1
    assert selected["accuracy"] == pytest.approx(float(scores.max()))
    # The kept weights are that epoch's: evaluating them on the test split gives its accuracy back.
    from discl.stages.evaluate import run_eval

    metrics = run_eval(run, cfg, echo=lambda *_: None)
    overall = metrics[(metrics["method"] == "real-only") & (metrics["bucket"] == "overall")]["accuracy"].iloc[0]
    assert overall == pytest.approx(100 * selected["accuracy"], abs=1e-3)


def test_select_refuses_a_split_the_dataset_lacks(run_copy, monkeypatch):
    run, _ = run_copy
    cfg = load_config(run.root, None, ["train.select=best-val"])
    import discl.training.methods as train_stage

    real_tables = train_stage.load_dataset_tables

    def without_val(r):
        dataset, classes = real_tables(r)
        return dataset[dataset["split"] != "val"], classes

    monkeypatch.setattr(train_stage, "load_dataset_tables", without_val)
    with pytest.raises(ValueError, match="best-val needs a validation split"):
        load_inputs(run, cfg, ["real-only"], echo=lambda *_: None)


def test_a_full_disk_while_saving_leaves_the_old_model_as_it_was(tmp_path, monkeypatch):
    import errno

    import torch

    import discl.training.classifier as classifier
    from discl.config import AugmentConfig
    from discl.training.transforms import classifier_transforms

    model = classifier.create_classifier("resnet10t", 3, seed=0)
    transforms = classifier_transforms(model, AugmentConfig(), 16)
    classifier.save_classifier(model, tmp_path, "resnet10t", 3, transforms, {"method": "old"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(state, path):
        open(path, "wb").write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    import discl.artefacts as artefacts  # every model is written by artefacts.save_pretrained

    monkeypatch.setattr(artefacts, "save_file", disk_full)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(OSError, match="No space left"):
        classifier.save_classifier(model, tmp_path, "resnet10t", 3, transforms, {"method": "new"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp file left either
    assert classifier.load_classifier(tmp_path)[1]["method"] == "old"


def test_train_refuses_scores_of_other_synthetic_images(run_copy):
    from discl.tables import write_table

    run, cfg = run_copy
    synthetic = read_table(run.synthetic, "synthetic")
    write_table(synthetic.iloc[:-1], run.synthetic, "synthetic")  # as if generate had run again since `score`
    with pytest.raises(ValueError, match="scores other synthetic images than synthetic.parquet .* run `discl score"):
        load_inputs(run, cfg, ["non-adaptive"], echo=lambda *_: None)
