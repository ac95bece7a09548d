"""The paper's two recipes end to end, in miniature: `discl prepare --recipe NAME` on fake datasets in their
real layouts (tests/fakes.py), then every stage through the CLI with tiny local models built from config
(an SDXL-refiner-like img2img pipeline, a transformers CLIP scorer, an open_clip CLIP for FLYP). The --set
overrides only scale the recipes down to CPU size; every other value is the recipe's. The checks follow
the human class names from the dataset to the tables, prompts, captions, models, predictions and report."""

from __future__ import annotations

import json
import math

import open_clip
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

from discl.cli import main
from discl.generation.tiny import save_tiny_pipeline, write_clip_tokenizer
from discl.scoring.embeddings import EmbeddingStore

from .fakes import IWILDCAM_CLASSES, write_fake_imagenet_lt, write_fake_iwildcam

# A long tail whose few-shot classes have names that a lower-casing or id-keyed step would spoil.
IMAGENET_TAIL = [
    ("n01440764", "tench", 10),
    ("n02130308", "cheetah", 6),
    ("n02093428", "American Staffordshire Terrier", 3),
    ("n01608432", "kite (bird of prey)", 2),
]
FEW_SHOT_BELOW = 4  # the last two classes are few-shot: 5 hard samples
OPEN_CLIP_NAME = "discl-test-clip"  # a tiny open_clip architecture registered in-process, as tests/test_scoring_backends.py does


def _cli(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash, not a handled error: show its traceback
    assert result.exit_code == code, result.output
    return result.output


def _sets(*pairs):
    return [x for pair in pairs for x in ("--set", pair)]


def save_tiny_hf_clip(folder):
    """A random transformers CLIP (32-pixel ViT, real OpenAI tokenizer) saved like a hub model."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tok = write_clip_tokenizer(folder)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                         max_position_embeddings=77, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def save_tiny_open_clip(folder):
    """A tiny open_clip architecture (registered under OPEN_CLIP_NAME) and its random weights as a local
    file: the recipe's "architecture name + pretrained weights" path, with a file in place of "openai"."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (folder / f"{OPEN_CLIP_NAME}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder / f"{OPEN_CLIP_NAME}.json")
    torch.manual_seed(1)
    weights = folder / "weights.pt"
    torch.save(open_clip.create_model(OPEN_CLIP_NAME, pretrained=None).state_dict(), weights)
    return weights


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"refiner": save_tiny_pipeline("sdxl-refiner", root / "refiner"), "clip": save_tiny_hf_clip(root / "hf-clip"),
            "open_clip": save_tiny_open_clip(root / "open-clip")}


def cpu_scale(models):
    """What every stage needs to run in seconds on a CPU, whatever the recipe: the tiny models, few and
    small images, few steps and epochs, no worker processes."""
    return _sets(
        "data.image_size=32",
        f"generate.model={models['refiner']}", "generate.device=cpu", "generate.dtype=fp32",
        "generate.seeds=[10]", "generate.inference_steps=4", "generate.batch_size=8",
        f"score.model={models['clip']}", "score.device=cpu", "score.batch_size=16",
        "score.text_threshold=-1",  # a random CLIP: keep every image so the curricula have synthetic data
        "train.device=cpu", "train.num_workers=0", "train.eval_batch_size=16", "train.classifier.batch_size=8",
        "eval.device=cpu", "eval.num_workers=0", "eval.eval_batch_size=16",
    )


def saved_config(run) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def clip_captions(run) -> set[str]:
    """The caption texts the score stage (and the CLIP mining rule) embedded."""
    folder = run / "embeddings" / "clip"
    store = EmbeddingStore(folder, json.loads((folder / "store.json").read_text())["key"])
    return set(store.load("text")[0])


def predicted_names(run) -> pd.DataFrame:
    """predictions.parquet with the class names of its true and predicted labels."""
    names = pd.read_parquet(run / "classes.parquet").set_index("label")["class_name"]
    predictions = pd.read_parquet(run / "predictions.parquet")
    return predictions.assign(true_name=predictions["label"].map(names), pred_name=predictions["pred_label"].map(names))


def test_imagenet_lt_recipe_end_to_end(tmp_path, models):
    imagenet = write_fake_imagenet_lt(tmp_path / "imagenet", val_per_class=1, test_per_class=2, classes=IMAGENET_TAIL)
    splits = tmp_path / "splits"  # data.split_dir apart from the images, as people keep ImageNet-LT's files
    splits.mkdir()
    for split in ("train", "val", "test"):
        (imagenet.root / f"ImageNet_LT_{split}.txt").rename(splits / f"ImageNet_LT_{split}.txt")
    run = tmp_path / "run"
    names = [c[1] for c in IMAGENET_TAIL]
    tail = names[2:]

    _cli("prepare", run, "--recipe", "imagenet-lt", *_sets(f"data.root={imagenet.root}", f"data.split_dir={splits}"),
         *cpu_scale(models), *_sets(
             "data.lt_many_above=7", "data.lt_few_below=4", f"mine.few_shot_below={FEW_SHOT_BELOW}",
             "generate.source_size=square",
             "generate.strengths=[0.5,0.7,0.9]",  # image guidance 50, 30, 10: the recipe's levels [10, 30, 50, 100]
             "generate.regenerate_tries=1",  # the recipe regenerates; once is enough to run that path
             "train.classifier.epochs=5", "train.curriculum_epochs=4", "train.curriculum.stage_epochs=[1,1,1,1]",
             # 64, not 32: a ResNet maps 32 pixels to 1x1, where BatchNorm cannot train on a last batch of one image
             "train.classifier.augment.input_size=64"))
    config = saved_config(run)
    # the recipe's own values, under the scaling
    assert config["train"]["curriculum"]["tail_sampling"] == "curricula" and config["train"]["classifier"]["model"] == "resnet10"
    assert config["train"]["methods"] == ["real-only", "non-adaptive"] and config["train"]["levels"] == [10, 30, 50, 100]
    assert config["generate"]["prompt_template"] == "a 8k real photo: {description}" and config["generate"]["regenerate"] is True
    assert config["mine"]["train_base"] is False and config["score"]["caption_template"] == "a photo of {name}"
    classes = pd.read_parquet(run / "classes.parquet")
    assert classes["class_name"].tolist() == names and classes["class_id"].tolist() == [c[0] for c in IMAGENET_TAIL]

    _cli("mine", run)
    hard = pd.read_parquet(run / "hard.parquet")
    assert sorted(set(hard["class_name"])) == sorted(tail) and len(hard) == 3 + 2
    assert not (run / "models" / "base").exists()  # few_shot alone decides: no base model trained

    # The reference's description file, {class name: [descriptions]}, lower-cased names, in the run directory
    # where the recipe's relative prompt_file (prompts.json) is read from.
    descriptions = {"american staffordshire terrier": ["an American Staffordshire Terrier asleep on a porch"],
                    "kite (bird of prey)": ["a kite (bird of prey) gliding over a field"]}
    (run / "prompts.json").write_text(json.dumps(descriptions))
    _cli("generate", run)
    synthetic = pd.read_parquet(run / "synthetic.parquet")
    assert len(synthetic) == 5 * 3 and sorted(set(synthetic["class_name"])) == sorted(tail)
    assert set(synthetic["prompt"]) == {f"a 8k real photo: {d[0]}" for d in descriptions.values()}
    assert set(synthetic["image_guidance"]) == {10, 30, 50}
    assert synthetic["gen_text_sim"].notna().all() and synthetic["attempts"].between(1, 2).all()  # the recipe regenerates

    _cli("score", run)
    # every class's caption: the regenerate pass and the filter use the same scorer and captions
    assert {f"a photo of {n}" for n in tail} <= clip_captions(run)
    assert pd.read_parquet(run / "scores.parquet")["kept"].all()

    _cli("train", run)
    log = pd.read_parquet(run / "train" / "non-adaptive" / "log.parquet")
    assert log["level"].tolist() == [10, 30, 50, 100, -1] and (log.loc[log["level"].isin([10, 30, 50]), "n_synthetic"] == 5).all()
    _cli("eval", run)
    predictions = predicted_names(run)
    assert set(predictions["method"]) == {"real-only", "non-adaptive"}
    assert set(predictions["true_name"]) == set(names) and predictions["pred_name"].notna().all()
    _cli("report", run)
    html = (run / "report.html").read_text()
    assert all(n in html for n in ("American Staffordshire Terrier", "kite (bird of prey)", "tench"))

    # The reference's hard-sample CSV (filepath,image_name,label,classname) on the same run: a row with label and
    # name, one matched by name alone (lower-cased), one by label alone.
    rows = [(imagenet.train_file(2, 0), "2", "American Staffordshire Terrier"),
            (imagenet.train_file(3, 1), "", "kite (bird of prey)".upper()),
            (imagenet.train_file(1, 4), "1", "")]
    (tmp_path / "hard.csv").write_text("filepath,image_name,label,classname\n" + "".join(
        f"data_generation/ImageNet_LT/sample_imgs/{p.split('/')[-1]},{p.split('/')[-1]},{y},{n}\n" for p, y, n in rows))
    out = _cli("mine", run, "--hard-csv", tmp_path / "hard.csv")
    assert "imported 3 hard samples" in out and "imagenet-lt format" in out
    hard = pd.read_parquet(run / "hard.parquet")
    assert dict(zip(hard["sample_id"], hard["class_name"])) == {
        rows[0][0]: "American Staffordshire Terrier", rows[1][0]: "kite (bird of prey)", rows[2][0]: "cheetah"}


def test_iwildcam_recipe_end_to_end(tmp_path, models):
    iwildcam = write_fake_iwildcam(tmp_path / "wilds")
    run = tmp_path / "run"
    english = [c[2] for c in IWILDCAM_CLASSES]

    _cli("prepare", run, "--recipe", "iwildcam", f"--set=data.root={iwildcam.root}", *cpu_scale(models), *_sets(
        "data.lt_many_above=6", "data.lt_few_below=3",
        "generate.resize=[32,18]",  # the recipe's [480, 270], a fifteenth
        "generate.strengths=[0.3,0.5]", "train.levels=[50,70,100]",  # image guidance 70 and 50, above the recipe's min_level 50
        "train.curriculum.val_sources=1", "train.classifier.epochs=3", "train.curriculum_epochs=2",
        f"train.flyp.model={OPEN_CLIP_NAME}", f"train.flyp.pretrained={models['open_clip']}",
        # the base model: a small timm ResNet (BatchNorm) from scratch in place of the ImageNet ResNet-50
        "mine.base.model=resnet10t", "mine.base.pretrained=null", "mine.base.augment.input_size=32",
        "mine.base.epochs=1", "mine.base.batch_size=8", "mine.base.device=cpu", "mine.base.num_workers=0",
        "mine.base.eval_batch_size=16"))
    config = saved_config(run)
    assert config["train"]["task"] == "flyp" and config["train"]["methods"] == ["real-only", "adaptive"]
    curriculum = config["train"]["curriculum"]
    assert curriculum["min_level"] == 50 and curriculum["stage_real"] == "unreplaced" and curriculum["progress_start"] == "zero"
    assert config["train"]["epoch_length"] == "real" and curriculum["val_image"] == "random"
    assert config["mine"]["rules"] == ["misclassified"] and config["mine"]["exclude_classes"] == ["empty"]
    assert pd.read_parquet(run / "classes.parquet")["class_name"].tolist() == english

    out = _cli("mine", run)
    assert "in-sample" in out
    hard = pd.read_parquet(run / "hard.parquet")
    assert len(hard) and "empty" not in set(hard["class_name"]) and set(hard["reason"]) == {"misclassified"}
    assert (run / "models" / "base").exists()

    _cli("generate", run)
    synthetic = pd.read_parquet(run / "synthetic.parquet")
    assert len(synthetic) == 2 * len(hard)
    assert set(synthetic["prompt"]) == {f"a photo of {n} in the wild" for n in set(hard["class_name"])}
    _cli("score", run)
    _cli("train", run)
    for method in ("real-only", "adaptive"):
        meta = json.loads((run / "train" / method / "discl_model.json").read_text())
        flyp = meta["config"]
        assert meta["kind"] == "flyp" and flyp["model"] == OPEN_CLIP_NAME and flyp["class_names"] == english
        assert flyp["templates"] == ["a photo of {name}.", "{name} in the wild."]
    log = pd.read_parquet(run / "train" / "adaptive" / "log.parquet")
    # the adaptive curriculum starts at the lowest candidate level (>= min_level 50), then picks among 50, 70 and
    # 100 (100: the hard sources' real images); then real data; every image once per FLYP template
    levels = log["level"].tolist()
    assert levels[0] == 50 and levels[1] in (50, 70, 100) and levels[-1] == -1 and len(levels) == 3
    synthetic_stage = log["level"].isin([50, 70])
    assert (log["n_synthetic"][synthetic_stage] > 0).all()
    # epoch_length real: every epoch is int(real rows x 2 templates / batch 8) full batches, whatever the stage holds
    n_real = int(log["n_real"].iloc[-1])
    assert (log["n_seen"] == (2 * n_real // 8) * 8).all()
    real_only = pd.read_parquet(run / "train" / "real-only" / "log.parquet")
    assert (real_only["n_seen"] == (2 * int(real_only["n_real"].iloc[0]) // 8) * 8).all()
    held_out = json.loads((run / "train" / "adaptive" / "discl_model.json").read_text())["config"]["held_out_sources"]
    assert len(held_out) == 1 and set(held_out) <= set(hard["sample_id"])  # val_sources 1: the curriculum's validation source
    # FLYP started from the local weights file (a few small steps away from it), not from a random CLIP
    start = torch.load(models["open_clip"], weights_only=True)
    tuned = load_file(run / "train" / "real-only" / "open_clip_model.safetensors")
    assert (tuned["visual.conv1.weight"] - start["visual.conv1.weight"]).abs().max() < 1e-2

    _cli("eval", run)
    predictions = predicted_names(run)
    assert set(predictions["method"]) == {"real-only", "adaptive"} and set(predictions["true_name"]) == set(english)
    wilds = pd.read_parquet(run / "wilds_metrics.parquet")
    f1 = wilds[wilds["metric"] == "F1-macro_all"]
    assert set(zip(f1["method"], f1["split"])) == {(m, s) for m in ("real-only", "adaptive") for s in ("test", "id_test")}
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in f1["value"])
    _cli("report", run)
    html = (run / "report.html").read_text()
    assert all(n in html for n in ("white-lipped peccary", "plains zebra"))

    # The zero-shot CLIP rule stays one setting away (no base model).
    out = _cli("mine", run, "--set", "mine.rules=[clip_misclassified]")
    assert "the zero-shot CLIP gets" in out
    assert set(pd.read_parquet(run / "hard.parquet")["reason"]) == {"clip_misclassified"}
    assert {f"a photo of {n} in the wild" for n in english} == clip_captions(run)

    # The reference's iWildCam CSV (a pandas index column, label id = WILDS's y, capitalised English names).
    zebra, empty = iwildcam.train_files(3)[0], iwildcam.train_files(0)[0]
    lines = [",label id,label name,filepath,img_name",
             f"0,3,Plains Zebra,data_generation/iWildCam/sample_imgs/{zebra},{zebra.removesuffix('.jpg')}",
             f"1,0,Empty,data_generation/iWildCam/sample_imgs/{empty},{empty.removesuffix('.jpg')}"]
    (tmp_path / "hard.csv").write_text("\n".join(lines) + "\n")
    out = _cli("mine", run, "--hard-csv", tmp_path / "hard.csv")
    assert "iwildcam format" in out and "excluded classes ['empty']" in out
    hard = pd.read_parquet(run / "hard.parquet")
    assert hard["sample_id"].tolist() == [zebra] and hard["class_name"].tolist() == ["plains zebra"]
