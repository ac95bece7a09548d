"""The shipped recipes from the command line: `discl recipes`, `--recipe NAME` under --config and --set,
and the two settings the recipes lean on (mine.train_base, a prompt file inside the run directory)."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner

from discl.cli import main
from discl.config import load_config
from discl.recipes import recipe_names, recipe_path
from discl.rundir import RunDir

from .conftest import TINY


def test_recipes_lists_and_prints_the_shipped_files():
    listed = CliRunner().invoke(main, ["recipes"])
    assert listed.exit_code == 0, listed.output
    assert recipe_names() == ["imagenet-lt", "iwildcam"]
    for name in recipe_names():
        assert listed.output.count(f"{name}: ") == 1
    shown = CliRunner().invoke(main, ["recipes", "iwildcam"])
    assert shown.exit_code == 0
    assert yaml.safe_load(shown.output) == yaml.safe_load(recipe_path("iwildcam").read_text())


def test_unknown_recipe_is_one_line_naming_the_known_ones(tmp_path):
    result = CliRunner().invoke(main, ["prepare", str(tmp_path / "run"), "--recipe", "imagenet"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: unknown recipe 'imagenet'; known: ['imagenet-lt', 'iwildcam'] "
                                     "(`discl recipes` lists them)")
    assert not (tmp_path / "run").exists()


def test_recipe_sits_over_the_saved_config_and_under_config_and_set(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"classifier": {"lr": 0.5, "seed": 7}}}))
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"train": {"classifier": {"batch_size": 64}}}))
    cfg = load_config(run, extra, ["train.classifier.epochs=3", "train.curriculum_epochs=2",
                                   "train.curriculum.stage_epochs=[1,1]"], recipe="imagenet-lt")
    c = cfg.train.classifier
    assert (c.lr, c.seed) == (0.001, 7)  # the recipe's lr over the saved one; the saved seed kept
    assert (c.batch_size, c.epochs, c.model) == (64, 3, "resnet10")
    assert cfg.train.curriculum.tail_sampling == "curricula"


def test_prepare_with_a_recipe_saves_it_in_the_run_config(tmp_path):
    # digits-lt in place of ImageNet: the recipe's other settings are saved as they are.
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["prepare", str(run), "--recipe", "iwildcam", "--set", "data.name=digits-lt",
                                       "--set", "data.image_size=16", "--no-progress"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["task"] == "flyp" and saved["train"]["flyp"]["templates"] == ["a photo of {name}.", "{name} in the wild."]
    assert saved["score"]["text_threshold"] == 0.25 and saved["mine"]["exclude_classes"] == ["empty"]


def test_few_shot_alone_without_train_base_trains_no_model(run_copy):
    import shutil

    run, _ = run_copy
    root = run.root
    assert (root / "models" / "base").is_dir()  # the tiny run trained one with its own rules
    shutil.rmtree(root / "models" / "base")
    args = ["mine", str(root), "--no-progress", "--set", "mine.rules=[few_shot]", "--set", "mine.train_base=false"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "no base model" in result.output
    assert not (root / "models" / "base").exists()
    hard = __import__("pandas").read_parquet(root / "hard.parquet")
    assert (hard["reason"] == "few_shot").all() and hard["p_true"].isna().all() and len(hard)


def test_a_relative_prompt_file_is_read_from_the_run_directory(run_copy, monkeypatch, tmp_path):
    from discl.generation.run_generator import prompt_bank

    run, _ = run_copy
    classes = __import__("pandas").read_parquet(run.root / "classes.parquet")
    name = classes["class_name"].iloc[0]
    (run.root / "prompts.json").write_text(json.dumps({name: ["a digit drawn in chalk"]}))
    monkeypatch.chdir(tmp_path)  # not the run directory: the file is found there all the same
    cfg = load_config(run.root, None, TINY + ["generate.prompt_file=prompts.json",
                                              "generate.prompt_template=a 8k real photo: {description}"])
    assert prompt_bank(RunDir(run.root), cfg).prompt(name, 10) == "a 8k real photo: a digit drawn in chalk"

