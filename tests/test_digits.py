import numpy as np
from PIL import Image

from discl.config import load_config
from discl.data import prepare_dataset
from discl.data.buckets import bucket_of, class_table
from discl.data.digits import CLASS_NAMES, build_digits_lt, long_tail_counts
from discl.rundir import RunDir


def test_long_tail_profile_is_exponential():
    counts = long_tail_counts(10, 50, 50.0)
    assert counts[0] == 50 and counts[-1] == 1
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert long_tail_counts(10, 100, 1.0) == [100] * 10


def test_splits_are_disjoint_balanced_and_long_tailed(tmp_path):
    frame = build_digits_lt(tmp_path / "d", image_size=16, max_per_class=40, imbalance_ratio=40, val_per_class=10, test_per_class=20)
    assert frame["sample_id"].is_unique
    per_split = frame.groupby(["split", "label"]).size().unstack(0)
    assert (per_split["test"] == 20).all() and (per_split["val"] == 10).all()
    assert per_split["foundation"].nunique() == 1 and per_split["foundation"].iloc[0] > 0
    assert per_split["train"].tolist() == long_tail_counts(10, 40, 40)
    assert sorted(frame["class_name"].unique()) == sorted(CLASS_NAMES)
    image = Image.open(frame["path"].iloc[0])
    assert image.mode == "RGB" and image.size == (16, 16)


def test_changing_the_tail_keeps_evaluation_splits(tmp_path):
    a = build_digits_lt(tmp_path / "a", imbalance_ratio=50)
    b = build_digits_lt(tmp_path / "b", imbalance_ratio=100)
    for split in ("test", "val", "foundation"):
        assert set(a[a.split == split].sample_id) == set(b[b.split == split].sample_id)
    assert set(b[b.split == "train"].sample_id) < set(a[a.split == "train"].sample_id)


def test_same_seed_same_images(tmp_path):
    a = build_digits_lt(tmp_path / "a", seed=3)
    b = build_digits_lt(tmp_path / "b", seed=3)
    assert a["sample_id"].tolist() == b["sample_id"].tolist()
    assert np.array_equal(np.asarray(Image.open(a.path.iloc[5])), np.asarray(Image.open(b.path.iloc[5])))
    c = build_digits_lt(tmp_path / "c", seed=4)
    assert a[a.split == "test"].sample_id.tolist() != c[c.split == "test"].sample_id.tolist()


def test_buckets_from_training_counts(tmp_path):
    assert [bucket_of(n, 20, 6) for n in (21, 20, 6, 5, 0)] == ["many", "medium", "medium", "few", "few"]
    run = RunDir(tmp_path / "run")
    dataset, classes, skipped = prepare_dataset(run, load_config().data)
    assert skipped.empty
    assert classes["train_count"].sum() == (dataset.split == "train").sum()
    assert classes.set_index("class_name").loc["zero", "bucket"] == "many"
    assert classes.set_index("class_name").loc["nine", "bucket"] == "few"
    # Paths are relative, so the run directory can move.
    assert not dataset["path"].str.startswith("/").any()
    assert all(run.resolve(p).exists() for p in dataset["path"])


def test_class_table_rejects_overlapping_thresholds(tmp_path):
    frame = build_digits_lt(tmp_path / "d")
    try:
        class_table(frame, many_above=5, few_below=10)
    except ValueError as err:
        assert "few_below" in str(err)
    else:
        raise AssertionError("overlapping thresholds were accepted")
