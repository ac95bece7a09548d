"""data.name=hf: Hugging Face datasets written here (save_to_disk, an image folder read by `datasets`)."""

import io
import os
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from discl.cli import main
from discl.config import load_config
from discl.data import DatasetError, prepare_dataset
from discl.data.image_folder import check_image
from discl.rundir import RunDir

datasets = pytest.importorskip("datasets")

NAMES = ["tabby cat", "red fox", "barn owl"]


def _png_bytes(value: int, size=(9, 7)) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _jpeg_bytes(value: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(out, format="JPEG")
    return out.getvalue()


def _split(labels, start, broken_at=None, column="label", names=NAMES):
    images = [{"bytes": (_png_bytes(start + i) if i % 2 else _jpeg_bytes(start + i)), "path": None} for i in range(len(labels))]
    if broken_at is not None:
        images[broken_at] = {"bytes": b"\x89PNG\r\n\x1a\n truncated", "path": None}
    features = datasets.Features({"image": datasets.Image(), column: datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict({"image": images, column: labels}, features=features)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A DatasetDict with train (23 rows, one broken image) and test (7 rows), no validation split."""
    root = tmp_path_factory.mktemp("hf") / "saved"
    train_labels = [i % 3 for i in range(23)]
    dd = datasets.DatasetDict({"train": _split(train_labels, 0, broken_at=5), "test": _split([0, 1, 2, 0, 1, 2, 1], 100)})
    dd.save_to_disk(str(root))
    return root, train_labels


def _cfg(tmp_path, root, *extra):
    return load_config(None, None, ["data.name=hf", f"data.root={root}", "data.val_fraction=0.25", *extra]).data


def test_a_saved_dataset_becomes_the_run_tables(saved, tmp_path):
    root, train_labels = saved
    run = RunDir(tmp_path / "run")
    dataset, classes, skipped = prepare_dataset(run, _cfg(tmp_path, root))
    # Class names and ids from the ClassLabel feature.
    assert classes["class_name"].tolist() == NAMES and classes["label"].tolist() == [0, 1, 2]
    # The broken image is skipped and recorded; every other row is there once, with its own label.
    assert skipped["path"].tolist() == [f"{root}:train/5"]
    assert skipped["reason"].iloc[0].startswith("cannot decode image")
    assert len(dataset) == 22 + 7 and dataset["sample_id"].is_unique
    from_train = dataset[dataset["sample_id"].str.contains("/train/")]
    assert set(from_train["split"]) == {"train", "val"}  # no validation split: carved from train
    assert (dataset.loc[dataset["sample_id"].str.contains("/test/"), "split"] == "test").all()
    index = from_train["sample_id"].str.split("/").str[-1].astype(int)
    assert (from_train["label"].to_numpy() == np.array(train_labels)[index]).all()
    assert (dataset["class_name"] == dataset["label"].map(dict(enumerate(NAMES)))).all()
    # Files inside the run, the dataset's own bytes (JPEG stays JPEG), decodable.
    row = from_train[from_train["sample_id"].str.endswith("/train/4")].iloc[0]
    assert not os.path.isabs(row["path"]) and row["path"].endswith("/train/04.jpg")  # zero-padded: files sort in row order
    assert run.resolve(row["path"]).read_bytes() == _jpeg_bytes(4)
    png = dataset[dataset["sample_id"].str.endswith("/test/3")].iloc[0]
    assert np.asarray(Image.open(run.resolve(png["path"]))).mean() == 103
    assert all(check_image(run.resolve(p)) is None for p in dataset["path"])


def test_an_unlabelled_test_split_is_carved_out_of_train_instead(tmp_path):
    """A hub test split labelled -1 throughout gives no test row: the test split is carved out of the
    training split as for a dataset without one, and the skipped table says so."""
    root = tmp_path / "saved"
    unlabelled = datasets.Dataset.from_dict(
        {"image": [{"bytes": _png_bytes(i), "path": None} for i in range(4)], "label": [-1] * 4},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)}))
    datasets.DatasetDict({"train": _split([i % 3 for i in range(23)], 0), "test": unlabelled}).save_to_disk(str(root))
    dataset, _, skipped = prepare_dataset(RunDir(tmp_path / "run"), _cfg(tmp_path, root, "data.test_fraction=0.25"))
    assert (dataset["split"] == "test").sum() > 0 and dataset["sample_id"].str.contains("/train/").all()
    assert f"{root}:test" in skipped["path"].tolist()
    assert "split has no labelled image" in skipped.set_index("path").loc[f"{root}:test", "reason"]


def test_a_second_prepare_resumes_and_is_the_same(saved, tmp_path):
    root, _ = saved
    run = RunDir(tmp_path / "run")
    first, _, _ = prepare_dataset(run, _cfg(tmp_path, root))
    stamps = {p: run.resolve(p).stat().st_mtime_ns for p in first["path"]}
    victim = run.resolve(first["path"].iloc[3])
    victim.unlink()  # as if the first prepare had been killed before writing it
    again, _, _ = prepare_dataset(run, _cfg(tmp_path, root))
    pd.testing.assert_frame_equal(first, again)
    assert victim.is_file()
    assert all(run.resolve(p).stat().st_mtime_ns == t for p, t in stamps.items() if run.resolve(p) != victim)


def test_a_prepare_of_another_dataset_removes_the_old_images_once_done(saved, tmp_path):
    root, _ = saved
    run = RunDir(tmp_path / "run")
    first, _, _ = prepare_dataset(run, _cfg(tmp_path, root))
    old = list((run.images / "hf").iterdir())
    other = tmp_path / "other"
    _split([0, 1, 2, 2], 50).save_to_disk(str(other))
    dataset, _, _ = prepare_dataset(run, _cfg(tmp_path, other))
    new = list((run.images / "hf").iterdir())
    assert len(old) == len(new) == 1 and old != new
    assert all(run.resolve(p).is_file() for p in dataset["path"])
    # Rows of the same split and number in two datasets have different ids (models cached by ids are not mixed up).
    assert {s.split("/", 1)[1] for s in dataset["sample_id"]} <= {s.split("/", 1)[1] for s in first["sample_id"]}
    assert not set(dataset["sample_id"]) & set(first["sample_id"])


def test_an_image_folder_read_by_datasets_is_used_in_place(tmp_path):
    root = tmp_path / "pets"
    for split, count in (("train", 5), ("validation", 2)):
        for name in ("cat", "dog"):
            for i in range(count):
                (root / split / name).mkdir(parents=True, exist_ok=True)
                (root / split / name / f"{i}.png").write_bytes(_png_bytes(10 * i + (name == "dog")))
    (root / "train" / "dog" / "broken.png").write_bytes(b"not a png")
    run = RunDir(tmp_path / "run")
    dataset, classes, skipped = prepare_dataset(run, _cfg(tmp_path, root))
    assert classes["class_name"].tolist() == ["cat", "dog"]
    assert sorted(dataset["split"].unique()) == ["test", "train", "val"]  # val: the dataset's; test: carved out
    assert len(dataset) == 14 and not any((run.images / "hf").rglob("*.png"))  # nothing copied
    assert all(p.startswith(str(root.resolve())) for p in dataset["path"])  # the user's files, not copies
    assert all((("/dog/" in p) == (y == 1)) for p, y in zip(dataset["path"], dataset["label"]))
    assert len(skipped) == 1 and skipped["reason"].iloc[0].startswith("cannot decode image")


@pytest.fixture(scope="module")
def bad_sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    strings = datasets.Dataset.from_dict({"image": [{"bytes": _png_bytes(1), "path": None}], "label": ["cat"]},
                                         features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")}))
    strings.save_to_disk(str(base / "strings"))
    _split([0, 1], 0, column="species").save_to_disk(str(base / "species"))
    return base


@pytest.mark.parametrize("dataset_dir, extra, message", [
    ("strings", [], "data.label_column 'label' of {root} (split 'train') is Value('string'), not a ClassLabel feature"),
    ("species", [], "data.label_column 'label' is not a column of {root} (split 'train'; its columns: ['image', 'species'])"),
    ("species", ["data.image_column=picture"], "data.image_column 'picture' is not a column of {root}"),
    ("species", ["data.label_column=species", "data.hf_test_split=testing"],
     "data.hf_test_split 'testing' is not a split of {root} (its splits: ['train'])"),
    ("species", ["data.hf_revision=v2"], "data.hf_revision applies to hub ids and dataset folders; {root} was written by save_to_disk"),
])
def test_bad_datasets_fail_with_one_line_before_any_work(bad_sets, tmp_path, dataset_dir, extra, message):
    root = bad_sets / dataset_dir
    run_dir = tmp_path / "run"
    args = ["prepare", str(run_dir), "--set", "data.name=hf", "--set", f"data.root={root}"] + [a for e in extra for a in ("--set", e)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message.format(root=root) in lines[0], result.output
    assert not (run_dir / "dataset.parquet").exists() and not (run_dir / "data").exists()


def test_without_the_datasets_package_the_error_says_what_to_install(saved, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(DatasetError, match=r"pip install discl\[hf\]"):
        prepare_dataset(RunDir(tmp_path / "run"), _cfg(tmp_path, saved[0]))
    assert not (tmp_path / "run" / "data").exists()


def test_a_camera_jpeg_that_pil_reads_as_mpo_is_written_as_jpg():
    """Many cameras' JPEGs carry a second frame (PIL's format MPO): their bytes are a JPEG, and the written
    file must say so for tools that go by the extension (datasets' imagefolder among them)."""
    import io

    from PIL import Image

    from discl.data.hf_datasets import _decode_check

    data = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(data, format="MPO", save_all=True, append_images=[Image.new("RGB", (8, 8), "blue")])
    assert Image.open(io.BytesIO(data.getvalue())).format == "MPO"
    assert _decode_check(data.getvalue()) == (None, ".jpg")
