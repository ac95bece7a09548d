"""ImageNet-LT split files, CSV tables and WILDS iWildCam, on tiny fake trees in the real layouts."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from discl.config import DataConfig
from discl.data import prepare_dataset
from discl.data.image_folder import DatasetError
from discl.data.iwildcam import wilds_eval
from discl.rundir import RunDir


def _png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_imagenet_lt_reads_split_files_and_buckets_with_real_thresholds(tmp_path):
    root = tmp_path / "imagenet"
    counts = {"n01440764": 101, "n01443537": 20, "n01484850": 3}  # many (> 100), medium (20-100), few (< 20)
    lines = {"train": [], "val": [], "test": []}
    for label, (wnid, n) in enumerate(counts.items()):
        for i in range(n):
            _png(root / "train" / wnid / f"{wnid}_{i}.JPEG")
            lines["train"].append(f"train/{wnid}/{wnid}_{i}.JPEG {label}")
        _png(root / "val" / wnid / f"ILSVRC2012_val_{label}.JPEG")
        lines["test"].append(f"val/{wnid}/ILSVRC2012_val_{label}.JPEG {label}")
        lines["val"].append(f"train/{wnid}/{wnid}_0.JPEG {label}")
    lines["test"].append("val/n01440764/missing.JPEG 0")
    splits = tmp_path / "splits"
    splits.mkdir()
    for split, rows in lines.items():
        (splits / f"ImageNet_LT_{split}.txt").write_text("\n".join(rows) + "\n")
    run = RunDir(tmp_path / "run")
    dataset, classes, skipped = prepare_dataset(run, DataConfig(name="imagenet-lt", root=str(root), split_dir=str(splits)))
    assert dataset["split"].value_counts().to_dict() == {"train": 124, "val": 3, "test": 3}
    assert classes["class_name"].tolist() == ["tench", "goldfish", "great white shark"]  # ImageNet's names
    assert classes["class_id"].tolist() == list(counts)  # the WordNet ids stay
    assert classes["bucket"].tolist() == ["many", "medium", "few"]
    assert len(skipped) == 1 and "missing" in skipped["reason"][0]
    (splits / "ImageNet_LT_val.txt").write_text("train/n01440764/n01440764_0.JPEG\n")
    with pytest.raises(DatasetError, match="ImageNet_LT_val.txt, line 1"):
        prepare_dataset(run, DataConfig(name="imagenet-lt", root=str(root), split_dir=str(splits)))


def test_csv_with_class_names_and_splits(tmp_path):
    for i in range(6):
        _png(tmp_path / "img" / f"{i}.png", i)
    rows = ["path,label,split"] + [f"img/{i}.png,{'cat' if i < 4 else 'dog'},{'test' if i == 0 else 'train'}" for i in range(6)]
    rows.append("img/gone.png,dog,train")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    dataset, classes, skipped = prepare_dataset(RunDir(tmp_path / "run"), DataConfig(name="csv", root=str(tmp_path / "list.csv")))
    assert classes[["label", "class_name", "train_count", "bucket"]].values.tolist() == [[0, "cat", 3, "few"], [1, "dog", 2, "few"]]
    assert dataset.loc[dataset["split"] == "test", "sample_id"].tolist() == ["img/0.png"]
    assert len(skipped) == 1
    (tmp_path / "bad.csv").write_text("file,label\nimg/0.png,0\n")
    with pytest.raises(DatasetError, match="no column 'path'"):
        prepare_dataset(RunDir(tmp_path / "run"), DataConfig(name="csv", root=str(tmp_path / "bad.csv")))


def _fake_iwildcam(root):
    """The minimal iwildcam_v2.0 layout WILDS reads: RELEASE file, metadata.csv, categories.csv, train/ images."""
    data = root / "iwildcam_v2.0"
    rows = []
    splits = ["train"] * 6 + ["val", "test", "test", "id_val", "id_test", "id_test"]
    for i, split in enumerate(splits):
        name = f"img{i:02d}.jpg"
        _png(data / "train" / name, 10 * i)
        rows.append({"split": split, "y": i % 3, "filename": name, "location_remapped": i % 2, "sequence_remapped": i,
                     "datetime": "2013-06-05 10:00:00.000"})
    pd.DataFrame(rows).to_csv(data / "metadata.csv", index=False)
    pd.DataFrame({"y": [0, 1, 2], "category_id": [0, 2, 3], "name": ["empty", "tayassu pecari", "dasyprocta punctata"]}).to_csv(
        data / "categories.csv", index=False)
    (data / "RELEASE_v2.0.txt").write_text("")
    return rows


def test_iwildcam_through_wilds_with_id_and_ood_splits_and_its_macro_f1(tmp_path):
    _fake_iwildcam(tmp_path / "wilds")
    dataset, classes, _ = prepare_dataset(RunDir(tmp_path / "run"), DataConfig(name="iwildcam", root=str(tmp_path / "wilds")))
    assert dataset["split"].value_counts().to_dict() == {"train": 6, "test": 2, "id_test": 2, "val": 1, "id_val": 1}
    assert classes["class_name"].tolist() == ["empty", "white-lipped peccary", "central american agouti"]
    assert classes["class_id"].tolist() == ["empty", "tayassu pecari", "dasyprocta punctata"]
    test = dataset[dataset["split"] == "test"]  # labels 1 and 2
    right = wilds_eval(tmp_path / "wilds", "test", test["sample_id"].tolist(), test["label"].to_numpy())
    assert right["acc_avg"] == 1.0 and right["F1-macro_all"] == 1.0
    wrong = wilds_eval(tmp_path / "wilds", "test", test["sample_id"].tolist(), np.array([1, 1]))
    assert wrong["acc_avg"] == 0.5 and 0 < wrong["F1-macro_all"] < 1
    with pytest.raises(ValueError, match="no prediction"):
        wilds_eval(tmp_path / "wilds", "test", test["sample_id"].tolist()[:1], np.array([1]))
    with pytest.raises(DatasetError, match="no iwildcam_v2.0"):
        prepare_dataset(RunDir(tmp_path / "run"), DataConfig(name="iwildcam", root=str(tmp_path / "nothing")))


def test_eval_stage_reports_wilds_metrics_for_iwildcam(tmp_path):
    from discl.config import AugmentConfig, RunConfig
    from discl.stages.evaluate import load_task, run_wilds_eval
    from discl.training.classifier import create_classifier, save_classifier
    from discl.training.transforms import classifier_transforms

    _fake_iwildcam(tmp_path / "wilds")
    cfg = RunConfig()
    cfg.data = DataConfig(name="iwildcam", root=str(tmp_path / "wilds"), image_size=16)
    run = RunDir(tmp_path / "run")
    dataset, classes, _ = prepare_dataset(run, cfg.data)
    model = create_classifier("resnet10t", 3)
    save_classifier(model, run.method_dir("real-only"), "resnet10t", 3, classifier_transforms(model, AugmentConfig(), 16))
    tasks = {"real-only": load_task(run.method_dir("real-only"))}
    frame = run_wilds_eval(run, cfg, dataset, tasks, {}, echo=lambda *_: None)
    assert set(frame["split"]) == {"test", "id_test"}
    f1 = frame[frame["metric"] == "F1-macro_all"]["value"]
    assert len(f1) == 2 and f1.between(0, 1).all()
    assert (run.root / "wilds_metrics.parquet").exists()
