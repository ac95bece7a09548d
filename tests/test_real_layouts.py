"""ImageNet-LT and iWildCam in their real layouts (tests/fakes.py), through the CLI: human class names
reach the tables, prompts, captions and generated images; mining and the reference's CSV formats work."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from discl.cli import main
from discl.generation.sources import floor_to_multiple
from discl.generation.tiny import save_tiny_pipeline
from discl.scoring.embeddings import EmbeddingStore

from .fakes import IMAGENET_CLASSES, IWILDCAM_CLASSES, write_fake_imagenet_lt, write_fake_iwildcam


def _cli(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def _sets(*pairs):
    return [x for pair in pairs for x in ("--set", pair)]


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    return write_fake_imagenet_lt(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def iwildcam(tmp_path_factory):
    return write_fake_iwildcam(tmp_path_factory.mktemp("wilds"))


def _prepare_imagenet(run, imagenet):
    return _cli("prepare", run, *_sets("data.name=imagenet-lt", f"data.root={imagenet.root}", "data.image_size=16",
                                       "data.lt_many_above=10", "data.lt_few_below=4", "mine.base.epochs=1"))


def _prepare_iwildcam(run, iwildcam):
    return _cli("prepare", run, *_sets("data.name=iwildcam", f"data.root={iwildcam.root}", "data.image_size=16",
                                       "data.lt_many_above=6", "data.lt_few_below=3", "mine.base.epochs=1"))


def test_imagenet_lt_prepare_names_classes_like_people_and_keeps_the_wordnet_ids(tmp_path, imagenet):
    out = _prepare_imagenet(tmp_path / "run", imagenet)
    classes = pd.read_parquet(tmp_path / "run" / "classes.parquet")
    assert classes["class_name"].tolist() == [c[1] for c in IMAGENET_CLASSES]
    assert classes["class_id"].tolist() == [c[0] for c in IMAGENET_CLASSES]
    assert classes["train_count"].tolist() == [c[2] for c in IMAGENET_CLASSES]
    assert classes["bucket"].tolist() == ["many", "many", "medium", "few", "few", "few"]
    dataset = pd.read_parquet(tmp_path / "run" / "dataset.parquet")
    assert dataset.loc[dataset["sample_id"] == imagenet.train_file(0), "class_name"].tolist() == ["American Staffordshire Terrier"]
    assert "n02093428 -> American Staffordshire Terrier" in out
    assert "'missile' (labels [3, 4])" in out  # ImageNet's two "missile" classes, said once


def test_iwildcam_prepare_uses_common_english_names(tmp_path, iwildcam):
    _prepare_iwildcam(tmp_path / "run", iwildcam)
    classes = pd.read_parquet(tmp_path / "run" / "classes.parquet")
    assert classes["class_name"].tolist() == [c[2] for c in IWILDCAM_CLASSES]
    assert classes["class_id"].tolist() == [c[1] for c in IWILDCAM_CLASSES]
    dataset = pd.read_parquet(tmp_path / "run" / "dataset.parquet")
    assert set(dataset["split"]) == {"train", "val", "test", "id_val", "id_test"}
    assert set(dataset["class_name"]) == {"empty", "cheetah", "white-lipped peccary", "plains zebra"}


def test_imagenet_lt_mine_prompts_generate_score_carry_human_names(tmp_path, imagenet):
    """few_shot mining, a reference-style description file (lower-cased names), the tiny SDXL refiner at
    the sources' own sizes, and CLIP captions: all with ImageNet's class names."""
    run = tmp_path / "run"
    _prepare_imagenet(run, imagenet)
    out = _cli("mine", run, *_sets("mine.rules=[few_shot]"))
    hard = pd.read_parquet(run / "hard.parquet")
    assert sorted(set(hard["class_name"])) == ["goldfish", "missile"] and len(hard) == 3 + 2 + 1
    out = _cli("prompts", run, *_sets("prompts.dataset=imagenet-lt"))
    assert "American Staffordshire Terrier: a 8k real photo: American Staffordshire Terrier" in out

    descriptions = {"missile": ["a missile on a launcher at dusk"], "goldfish": ["a goldfish in a glass bowl"]}
    (tmp_path / "prompts.json").write_text(json.dumps(descriptions))
    model = save_tiny_pipeline("sdxl-refiner", tmp_path / "refiner")
    _cli("generate", run, *_sets("generate.backend=diffusers", f"generate.model={model}", "generate.source_size=native",
                                 "generate.strengths=[0.5,1.0]", "generate.seeds=[10]", "generate.inference_steps=2",
                                 "generate.prompt_template='a 8k real photo: {description}'", f"generate.prompt_file={tmp_path / 'prompts.json'}"))
    synthetic = pd.read_parquet(run / "synthetic.parquet")
    assert len(synthetic) == 12
    assert set(synthetic["prompt"]) == {"a 8k real photo: a missile on a launcher at dusk", "a 8k real photo: a goldfish in a glass bowl"}
    source_path = dict(zip(hard["sample_id"], hard["path"]))
    for row in synthetic.itertuples():
        made = Image.open(run / row.path).size
        assert made == floor_to_multiple(*Image.open(source_path[row.source_id]).size, 2)  # the tiny VAE's multiple
    assert {Image.open(run / p).size for p in synthetic["path"]} == {(50, 36), (36, 50), (50, 32)}  # 50x37, 37x50, 50x33

    out = _cli("score", run, *_sets("score.train_steps=5", "score.text_threshold=-1", "score.caption_template=a photo of {name}"))
    assert "warning" not in out
    store = EmbeddingStore(run / "embeddings" / "clip", json.loads((run / "embeddings" / "clip" / "store.json").read_text())["key"])
    assert set(store.load("text")[0]) == {"a photo of missile", "a photo of goldfish"}


def test_imagenet_lt_reference_csv_imports_by_label_and_human_name(tmp_path, imagenet):
    run = tmp_path / "run"
    _prepare_imagenet(run, imagenet)
    # the reference's ImageNet-LT format (data_generation/ImageNet_LT/sample.csv), with its own spelling of names
    rows = [(imagenet.train_file(0, 3), 0, "American Staffordshire Terrier"), (imagenet.train_file(4, 1), 4, "missile"),
            (imagenet.train_file(2, 0), 2, "Cheetah")]
    (tmp_path / "hard.csv").write_text("filepath,image_name,label,classname\n" + "".join(
        f"data_generation/ImageNet_LT/sample_imgs/{p.split('/')[-1]},{p.split('/')[-1]},{y},{n}\n" for p, y, n in rows))
    _cli("mine", run, *_sets(f"mine.hard_csv={tmp_path / 'hard.csv'}"))
    hard = pd.read_parquet(run / "hard.parquet")
    got = {r.sample_id: (r.label, r.class_name) for r in hard.itertuples()}
    # the second "missile" class is told apart by its label
    assert got == {rows[0][0]: (0, "American Staffordshire Terrier"), rows[1][0]: (4, "missile"), rows[2][0]: (2, "cheetah")}
    # a label and a name that disagree: one clear line naming the file and row
    (tmp_path / "bad.csv").write_text("filepath,image_name,label,classname\n"
                                      f"{imagenet.train_file(0, 3)},x,2,American Staffordshire Terrier\n")
    out = _cli("mine", run, *_sets(f"mine.hard_csv={tmp_path / 'bad.csv'}", f"mine.hard_csv_root={imagenet.root}"), code=2)
    assert "bad.csv line 2: label 2 is class 'cheetah' in the dataset, but the CSV names it 'American Staffordshire Terrier'" in out


def test_iwildcam_reference_csv_imports_and_never_keeps_empty(tmp_path, iwildcam):
    run = tmp_path / "run"
    _prepare_iwildcam(run, iwildcam)
    cheetahs, empties = iwildcam.train_files(1)[:2], iwildcam.train_files(0)[:1]
    # the reference's iWildCam format (data_generation/iWildCam/sample.csv): a pandas index column, label id =
    # WILDS's y, the English name capitalised, a filepath on the authors' machine, img_name without extension
    lines = [",label id,label name,filepath,img_name"] + [
        f"{i},{y},{name},data_generation/iWildCam/sample_imgs/{f},{f.removesuffix('.jpg')}"
        for i, (y, name, f) in enumerate([(1, "Cheetah", cheetahs[0]), (1, "Cheetah", cheetahs[1]), (0, "Empty", empties[0])])]
    (tmp_path / "hard.csv").write_text("\n".join(lines) + "\n")
    out = _cli("mine", run, *_sets(f"mine.hard_csv={tmp_path / 'hard.csv'}", "mine.exclude_classes=[empty]"))
    assert "mine: imported 3 hard samples" in out and "1 hard samples of the excluded classes ['empty'] dropped" in out
    hard = pd.read_parquet(run / "hard.parquet")
    assert hard["sample_id"].tolist() == cheetahs and set(hard["class_name"]) == {"cheetah"}


def test_iwildcam_hard_samples_from_the_zero_shot_clip(tmp_path, iwildcam):
    run = tmp_path / "run"
    _prepare_iwildcam(run, iwildcam)
    caption = "a photo of {name} in the wild"
    out = _cli("mine", run, *_sets("mine.rules=[clip_misclassified,few_shot]", "mine.exclude_classes=[empty]",
                                   # A CLIP barely trained (one tiny step) gets many images wrong: hard samples by this rule.
                                   "score.train_steps=1", "score.train_lr=1.0e-7", f"score.caption_template={caption}"))
    assert "the zero-shot CLIP gets" in out and "warning: score.caption_template" not in out
    hard = pd.read_parquet(run / "hard.parquet")
    assert "empty" not in set(hard["class_name"]) and hard["p_true"].between(0, 1).all()
    assert hard["reason"].str.contains("clip_misclassified").any()
    assert set(hard["reason"]) <= {"clip_misclassified", "few_shot", "clip_misclassified+few_shot"}
    assert (hard[hard["reason"].str.contains("clip")]["pred_label"] != hard[hard["reason"].str.contains("clip")]["label"]).all()
    assert set(hard.loc[hard["class_name"] == "plains zebra", "reason"]) <= {"few_shot", "clip_misclassified+few_shot"}
    store = EmbeddingStore(run / "embeddings" / "clip", json.loads((run / "embeddings" / "clip" / "store.json").read_text())["key"])
    assert sorted(store.load("text")[0]) == sorted(caption.format(name=c[2]) for c in IWILDCAM_CLASSES)
    assert len(store.load("source")[0]) == 24  # every training image, embedded once (score reuses the hard ones)
    out = _cli("prompts", run, *_sets("prompts.dataset=iwildcam"))
    assert "cheetah: a photo of cheetah in the wild" in out
    out = _cli("mine", run, *_sets("mine.rules=[clip_misclassified,misclassified]"), code=2)
    assert "combines only with ['few_shot'], not with ['misclassified']" in out
