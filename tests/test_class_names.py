"""Class names: ImageNet's and iWildCam's lists, a user's mapping file (data.class_names), and the
settings and files that name classes (mine.exclude_classes, prompt files, captions)."""

import json

import numpy as np
import pandas as pd
import pytest

from discl.config import DataConfig
from discl.data import prepare_dataset
from discl.data.class_names import imagenet_1k_names, imagenet_name, iwildcam_english_names, normalise_name
from discl.data.image_folder import DatasetError
from discl.mining import drop_excluded_classes, excluded_labels
from discl.prompts import PromptBank, PromptError, caption_for, demo_text_warning
from discl.rundir import RunDir
from discl.scoring.zero_shot import zero_shot

from .fakes import IMAGENET_CLASSES, write_fake_imagenet_lt


def test_imagenet_names_are_the_reference_list_in_imagenet_order():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    names = imagenet_1k_names()
    assert len(names) == 1000 and list(names.values()) == list(IMAGENET_CLASSNAMES)
    assert list(names) == sorted(names)  # ImageNet's label order is the sorted WordNet ids
    assert list(names)[180] == "n02093428" and names["n02093428"] == "American Staffordshire Terrier"  # label 180
    assert names["n01440764"] == "tench" and names["n03126707"] == "construction crane"
    assert imagenet_name("n00004475") == "organism"  # outside ImageNet-1k: its first WordNet lemma
    assert imagenet_name("n99999999") == "n99999999"


def test_iwildcam_names_are_lower_cased_common_names_for_all_182_wilds_classes():
    table = iwildcam_english_names()
    assert table["y"].tolist() == list(range(182)) and table["category_id"].is_unique
    english = dict(zip(table["category_id"], table["english"]))
    assert english[122] == "cheetah" and english[0] == "empty" and english[24] == "jaguar"
    assert (table["english"] == table["english"].str.lower()).all() and (table["english"] != "").all()


def test_names_compare_case_insensitively_with_underscores_as_spaces():
    assert normalise_name("  American_Staffordshire   Terrier ") == normalise_name("american staffordshire terrier")


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    return write_fake_imagenet_lt(tmp_path_factory.mktemp("imagenet"))


def _classes(tmp_path, imagenet, mapping):
    cfg = DataConfig(name="imagenet-lt", root=str(imagenet.root), class_names=str(mapping))
    return prepare_dataset(RunDir(tmp_path / "run"), cfg)


@pytest.mark.parametrize("name,text", [
    ("names.csv", "label,name\n0,pit bull\n4,cruise missile\n"),
    ("names.csv", "class_id,name,notes\nn02093428,pit bull,x\nn04008634, cruise  missile ,y\n"),
    ("names.json", json.dumps({"American Staffordshire Terrier": "pit bull", "4": "cruise missile"})),
    ("names.json", json.dumps({"n02093428": "pit bull", "n04008634": "cruise missile"})),
    ("names.json", json.dumps(["pit bull", "tench", "cheetah", "missile", "cruise missile", "goldfish"])),
])
def test_class_names_file_renames_by_label_id_or_class_id(tmp_path, imagenet, name, text):
    (tmp_path / name).write_text(text)
    dataset, classes, _ = _classes(tmp_path, imagenet, tmp_path / name)
    assert classes["class_name"].tolist() == ["pit bull", "tench", "cheetah", "missile", "cruise missile", "goldfish"]
    assert classes["class_id"].tolist() == [c[0] for c in IMAGENET_CLASSES]  # the ids stay
    assert set(dataset.loc[dataset["label"] == 0, "class_name"]) == {"pit bull"}


@pytest.mark.parametrize("name,text,message", [
    ("a.csv", "label,name\n0,pit bull\n7,zebra\n12,horse\n", r"a.csv: 2 keys name no class of the dataset: '7' \(line 3\), '12' \(line 4\)"),
    ("b.csv", "label,name\n0,pit bull\n0,terrier\n", r"b.csv line 3: label '0' is listed twice \(first on line 2\)"),
    ("c.csv", "label,name\nzero,pit bull\n", r"c.csv line 2: label 'zero' is not a label id"),
    ("d.csv", "id,display\n0,pit bull\n", r"d.csv: expected a header with a 'name' column and one of 'label' or 'class_id', got \['id', 'display'\]"),
    ("e.csv", "label,name\n0,\n", r"e.csv line 2: the name of '0' must be a non-empty string"),
    ("f.json", json.dumps({"missile": "rocket"}), r"f.json: 1 keys name several classes; use label ids: 'missile' \(key 'missile': labels \[3, 4\]\)"),
    ("g.json", "{not json", r"g.json: not valid JSON"),
    ("h.json", json.dumps({"n01440764": 3}), r"h.json key 'n01440764': the name of 'n01440764' must be a non-empty string, got 3"),
    ("missing.csv", None, r"data.class_names: file .*missing.csv not found"),
])
def test_bad_class_names_files_name_the_file_row_and_value(tmp_path, imagenet, name, text, message):
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(DatasetError, match=message):
        _classes(tmp_path, imagenet, tmp_path / name)


def test_excluded_classes_by_name_id_or_label():
    classes = pd.DataFrame({"label": [0, 1, 2], "class_name": ["empty", "cheetah", "plains zebra"],
                            "class_id": ["empty", "acinonyx jubatus", "equus quagga"]})
    assert excluded_labels(classes, ["Empty"]) == {0}
    assert excluded_labels(classes, ["acinonyx_jubatus", "2"]) == {1, 2}
    with pytest.raises(ValueError, match=r"mine.exclude_classes: \['emtpy', '7'\] name no class of the dataset"):
        excluded_labels(classes, ["emtpy", "7"])
    hard = pd.DataFrame({"sample_id": ["a", "b", "c"], "label": [0, 1, 0]})
    said = []
    kept = drop_excluded_classes(hard, classes, ["empty"], said.append)
    assert kept["sample_id"].tolist() == ["b"] and said == ["mine: 2 hard samples of the excluded classes ['empty'] dropped (mine.exclude_classes)"]
    assert drop_excluded_classes(hard, classes, [], said.append) is hard


def test_zero_shot_probabilities_follow_the_nearest_caption():
    texts = np.eye(3, dtype=np.float32)
    images = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]], dtype=np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    probs = zero_shot(images, texts)
    assert probs.argmax(1).tolist() == [0, 2] and np.allclose(probs.sum(1), 1) and probs[0, 0] > 0.99


def test_prompt_files_match_class_names_case_insensitively(tmp_path):
    bank = PromptBank("a 8k real photo: {description}", {"american staffordshire terrier": ["a dog on a beach"]})
    assert bank.prompt("American Staffordshire Terrier", 10) == "a 8k real photo: a dog on a beach"
    assert bank.prompt("tench", 10) == "a 8k real photo: tench"
    (tmp_path / "p.json").write_text(json.dumps({"Cheetah": ["a"], "cheetah": ["b"]}))
    with pytest.raises(PromptError, match="classes 'Cheetah' and 'cheetah' are the same name"):
        PromptBank.from_json(tmp_path / "p.json")


def test_captions_per_dataset_and_the_demo_caption_warning():
    assert caption_for("imagenet-lt") == "a photo of {name}"
    assert caption_for("iwildcam") == "a photo of {name} in the wild"
    assert caption_for("image-folder") == "a photo of {name}"
    assert demo_text_warning("score.caption_template", "a photo of the digit {name}", "digits-lt") is None
    assert demo_text_warning("score.caption_template", "a photo of {name} in the wild", "iwildcam") is None
    assert demo_text_warning("score.caption_template", "a photo of the digit {name}", "iwildcam") == (
        "warning: score.caption_template is the demo's 'a photo of the digit {name}' on dataset 'iwildcam'; "
        "the reference uses 'a photo of {name} in the wild' there (set score.caption_template)")
