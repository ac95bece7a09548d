"""The image-folder adapter on real-looking folders: odd names, broken files, empty classes."""

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from discl.cli import main
from discl.data.image_folder import DatasetError, scan_image_folder


def _png(path, value=128, size=(20, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


@pytest.fixture
def messy_folder(tmp_path):
    root = tmp_path / "my photos"
    for i in range(6):
        _png(root / "red fox" / f"img {i}.png", 10 * i)
        _png(root / "chat noir é" / f"IMG_{i}.JPG".replace(".JPG", ".png"), 200 - i)
    _png(root / "red fox" / "nested" / "deep.png", 7)
    (root / "chat noir é" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "chat noir é" / "empty.png").write_bytes(b"")
    (root / "red fox" / "notes.txt").write_text("not an image")
    (root / "empty class").mkdir()
    (root / "README.md").write_text("stray file")
    (root / "red fox" / ".DS_Store").write_bytes(b"\0\0")
    return root


def test_bad_files_are_skipped_with_reasons(messy_folder):
    dataset, skipped = scan_image_folder(messy_folder, val_fraction=0.2, test_fraction=0.2)
    assert sorted(dataset["class_name"].unique()) == ["chat noir é", "red fox"]
    assert len(dataset) == 13 and dataset["sample_id"].is_unique
    assert set(dataset["split"]) <= {"train", "val", "test"}
    reasons = dict(zip(skipped["path"].map(lambda p: p.split("/")[-1]), skipped["reason"]))
    assert reasons["broken.jpg"].startswith("cannot decode image")
    assert reasons["empty.png"] == "empty file (0 bytes)"
    assert reasons["notes.txt"].startswith("not an image file")
    assert reasons["empty class"].startswith("class folder has no usable image")
    assert reasons["README.md"] == "not inside a class folder"
    assert ".DS_Store" not in reasons  # hidden files are not data


def test_an_image_over_pils_pixel_limit_is_skipped_not_fatal(messy_folder, monkeypatch):
    """PIL refuses an image of more than twice Image.MAX_IMAGE_PIXELS (a decompression bomb) with an error that
    is not an OSError: it is skipped with its reason like any other unusable file."""
    _png(messy_folder / "red fox" / "huge.png", 5, size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 1,600 pixels is over twice the limit; 240 is not
    dataset, skipped = scan_image_folder(messy_folder, val_fraction=0.2, test_fraction=0.2)
    reasons = dict(zip(skipped["path"].map(lambda p: p.split("/")[-1]), skipped["reason"]))
    assert reasons["huge.png"].startswith("cannot decode image: DecompressionBombError")
    assert len(dataset) == 13


def test_hash_split_is_stable_when_files_are_added(messy_folder):
    before, _ = scan_image_folder(messy_folder)
    _png(messy_folder / "red fox" / "new one.png", 3)
    after, _ = scan_image_folder(messy_folder)
    merged = before.merge(after, on="sample_id", suffixes=("_a", "_b"))
    assert len(merged) == len(before)
    assert (merged["split_a"] == merged["split_b"]).all()


def test_split_layout_is_used_as_given(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        for cls in ("a", "b"):
            for i in range(n):
                _png(tmp_path / split / cls / f"{i}.png")
    dataset, skipped = scan_image_folder(tmp_path)
    assert skipped.empty
    assert dataset.groupby("split").size().to_dict() == {"test": 6, "train": 8, "val": 4}


def test_unknown_class_in_test_split_is_an_error(tmp_path):
    _png(tmp_path / "train" / "a" / "0.png")
    _png(tmp_path / "test" / "zebra" / "0.png")
    with pytest.raises(DatasetError, match="zebra"):
        scan_image_folder(tmp_path)


def test_missing_or_unusable_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_image_folder(tmp_path / "nope")
    (tmp_path / "only" / "cls").mkdir(parents=True)
    (tmp_path / "only" / "cls" / "x.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="no usable image found"):
        scan_image_folder(tmp_path / "only")


def test_cli_prepare_reports_skips_without_traceback(messy_folder, tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", str(run), "--set", "data.name=image-folder", "--set", f"data.root={messy_folder}"], standalone_mode=True)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "skipped 5 files" in out and "Traceback" not in out
    skipped = pd.read_parquet(run / "skipped.parquet")
    assert len(skipped) == 5
    assert len(pd.read_parquet(run / "dataset.parquet")) == 13


def test_cli_gives_one_line_error_for_a_bad_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", str(tmp_path / "run"), "--set", "data.name=image-folder", "--set", f"data.root={tmp_path / 'missing'}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: image folder") and "does not exist" in err and "Traceback" not in err


def _names_hashed_to_test(folder, n, seed=0, test_fraction=0.2):
    """``n`` file names that the hash split sends to test when they lie in ``folder`` ("" for none)."""
    from discl.data.image_folder import _hash_fraction

    names = (f"img {i}.png" for i in range(10_000))
    return [name for name in names if _hash_fraction(f"{folder}/{name}".lstrip("/"), seed) < test_fraction][:n]


def test_every_class_of_two_or_more_images_keeps_one_for_training(tmp_path):
    """Class "Eight" has 3 images, all hashed to test: its image nearest the training range trains; the
    other images stay where the hash put them. A 1-image class left out is named in one line."""
    import warnings

    from discl.data.image_folder import _hash_fraction, hash_split

    root = tmp_path / "photos"
    eight = _names_hashed_to_test("Eight", 3)
    for name in eight:
        _png(root / "Eight" / name)
    for i in range(12):
        _png(root / "Nine" / f"n{i}.png")
    lonely = _names_hashed_to_test("One", 1)[0]
    _png(root / "One" / lonely)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw Python warning any more
        result = CliRunner().invoke(main, ["prepare", str(tmp_path / "run"), "--set", "data.name=image-folder", "--set", f"data.root={root}"])
    assert result.exit_code == 0, result.output
    dataset = pd.read_parquet(tmp_path / "run" / "dataset.parquet")
    split = dict(zip(dataset.sample_id, dataset.split))
    nearest = max(eight, key=lambda name: _hash_fraction(f"Eight/{name}", 0))
    assert [split[f"Eight/{name}"] for name in eight] == ["train" if name == nearest else "test" for name in eight]
    assert all(split[f"Nine/n{i}.png"] == hash_split(_hash_fraction(f"Nine/n{i}.png", 0), 0.1, 0.2) for i in range(12))
    assert split[f"One/{lonely}"] == "test"
    warning = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warning == ["warning: 1 classes have no training image, so no model can learn them: 'One' (1 image); "
                       "a class needs at least 2 images (one stays for training), or give it a train split"]


def test_csv_rows_without_a_split_keep_a_training_image_too(tmp_path):
    from discl.data.csv_table import scan_csv

    names = _names_hashed_to_test("", 2)
    lines = ["path,label,split"] + [f"{name},eight," for name in names] + ["given.png,eight,test"]
    for name in [*names, "given.png"]:
        _png(tmp_path / name)
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    dataset, _ = scan_csv(tmp_path / "list.csv")
    assert (dataset.split == "train").sum() == 1 and dataset.set_index("sample_id").loc["given.png", "split"] == "test"
