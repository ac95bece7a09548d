import dataclasses
import re

import pytest
import yaml

from discl import config
from discl.config import ConfigError, RunConfig, config_from_dict, load_config, parse_override, save_config


def test_defaults_follow_the_method():
    cfg = RunConfig()
    assert cfg.generate.strengths == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert cfg.train.levels == [10, 30, 50, 100]
    assert 50 <= cfg.data.imbalance_ratio <= 100


def test_defaults_are_valid_and_round_trip_through_a_dict():
    cfg = RunConfig()
    assert config_from_dict(cfg.to_dict()) == cfg
    assert [f.name for f in dataclasses.fields(config.BaseModelConfig)][:3] == ["device", "precision", "num_workers"]
    assert dataclasses.asdict(cfg.mine.base)["loss"] == "bs"


def test_layers_file_then_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"train": {"levels": [0, 100], "classifier": {"epochs": 7}}, "generate": {"seeds": [1]}}))
    cfg = load_config(None, path, ["train.classifier.epochs=9", "train.curriculum_epochs=5", "generate.text_guidance=3"])
    assert cfg.train.levels == [0, 100]
    assert cfg.train.classifier.epochs == 9
    assert cfg.train.classifier.lr == RunConfig().train.classifier.lr  # untouched keys keep defaults
    assert cfg.generate.seeds == [1]
    assert cfg.generate.text_guidance == 3.0 and isinstance(cfg.generate.text_guidance, float)


def test_saved_config_is_the_base_of_later_stages(tmp_path):
    save_config(load_config(None, None, ["mine.prob_threshold=0.2"]), tmp_path)
    assert load_config(tmp_path).mine.prob_threshold == 0.2
    assert load_config(tmp_path, None, ["mine.prob_threshold=0.3"]).mine.prob_threshold == 0.3
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # written via a temp file, none left


def test_parse_override_reads_yaml_values_but_text_fields_as_written():
    assert parse_override("train.levels=[10, 50]") == {"train": {"levels": [10, 50]}}
    assert parse_override("data.root=/a b/c") == {"data": {"root": "/a b/c"}}
    assert parse_override("data.root=null") == {"data": {"root": None}}  # optional text: null spellings are None
    assert parse_override("generate.negative_prompt=") == {"generate": {"negative_prompt": ""}}
    # The prompts stage's own hint: a colon and braces are text, not a YAML mapping.
    template = "a 8k real photo: {description}"
    assert load_config(None, None, [f"generate.prompt_template={template}"]).generate.prompt_template == template
    assert load_config(None, None, [f"generate.prompt_template='{template}'"]).generate.prompt_template == template  # YAML-quoted
    assert parse_override('generate.negative_prompt="it\'s"') == {"generate": {"negative_prompt": "it's"}}
    assert load_config(None, None, ["score.model=123", "score.backend=open_clip"]).score.model == "123"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown config key 'train.epoch'; known keys here: ['accumulate',"),
        ("nosuch.key=1", "unknown config key 'nosuch'"),
        ("noequals", "must look like section.key=value"),
        ("train.classifier.epochs=many", "train.classifier.epochs = 'many': must be a valid integer (from --set)"),
        ("generate.seeds=3", "generate.seeds = 3: must be a valid list (from --set)"),
        # the tries of issue 13, each one line naming the key, the value and what is allowed
        ("train.classifier.epochs=0", "train.classifier.epochs = 0: must be greater than or equal to 1 (from --set)"),
        ("data.image_size=yes", "data.image_size = True: must be a valid integer (from --set)"),
        ("mine.rules=[]", "mine.rules = []: must have at least 1 item, not 0 (from --set)"),
        ("mine.rules=[few_shot, hard]", "mine.rules[1] = 'hard': must be 'few_shot', 'low_true_prob', 'misclassified', 'hardest_k' or 'clip_misclassified'"),
        ("mine.base.epochs=0", "mine.base.epochs = 0: must be greater than or equal to 1"),
        ("generate.train_steps=-10", "generate.train_steps = -10: must be greater than or equal to 1"),
        ("score.text_threshold=.nan", "score.text_threshold = nan: must be a finite number"),
        ("score.text_threshold=2", "score.text_threshold = 2: must be less than or equal to 1"),
        ("generate.text_guidance=.nan", "generate.text_guidance = nan: must be a finite number"),
        ("generate.text_guidance=.inf", "generate.text_guidance = inf: must be a finite number"),
        ("generate.batch_size=2.7", "generate.batch_size = 2.7: must be a valid integer"),
        ("generate.batch_size=0", "generate.batch_size = 0: must be greater than or equal to 1"),
        ("generate.strengths=[0.5,1.5]", "generate.strengths[1] = 1.5: must be less than or equal to 1"),
        ("generate.strengths=[0.5,0.5]", "generate.strengths = [0.5, 0.5]: must not repeat a value"),
        ("generate.seeds=[]", "generate.seeds = []: must have at least 1 item, not 0"),
        ("generate.seeds=[1, true]", "generate.seeds[1] = True: must be a valid integer"),
        ("generate.inference_steps=0", "generate.inference_steps = 0: must be greater than or equal to 1"),
        ("generate.prompt_template=a {nme}", "generate.prompt_template = 'a {nme}': must be a template whose only placeholders are {name} and {description}"),
        ("generate.channels=2", "generate.channels = 2: must be 1 (grey) or 3 (colour)"),
        ("generate.backend=diffusers", "generate.model = None: backend 'diffusers' needs a model"),
        ("generate.device=auto", "generate.device = 'auto': must be cpu, cuda, cuda:N or mps"),
        ("score.backend=clip", "score.backend = 'clip': must be one of: auto, tiny-clip, transformers, open_clip"),
        ("score.caption_template=a {description}", "score.caption_template = 'a {description}': must be a template whose only placeholders are {name}"),
        ("score.image_max=-0.5", "score.image_max = -0.5: must be >= image_threshold (0.0)"),
        ("train.methods=[]", "train.methods = []: must have at least 1 item, not 0"),
        ("train.methods=[real-only, curriculum]", "train.methods = 'curriculum': must be one of: real-only, all-synthetic,"),
        ("train.methods=[fixed-120]", "train.methods = 'fixed-120': expected fixed-<level 0..100>"),
        ("train.levels=[10, 200]", "train.levels[1] = 200: must be less than or equal to 100"),
        ("train.curriculum_epochs=41", "train.curriculum_epochs = 41: must not exceed classifier.epochs (40)"),
        ("train.accumulate=65", "train.accumulate = 65: micro-batches per batch must not exceed classifier.batch_size (64)"),
        ("prompts.base_url=ftp://host", "prompts.base_url = 'ftp://host': must be an http:// or https:// address"),
        ("data.val_fraction=0.9", "data.test_fraction = 0.2: val_fraction + test_fraction must be below 1 (val_fraction is 0.9)"),
    ],
)
def test_bad_values_are_one_line_naming_key_value_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "override, message",
    [
        # Phase 2 runtime settings (train, mine.base and eval share them)
        ("train.device=gpu", "train.device = 'gpu': must be auto, cpu, cuda, cuda:N or mps"),
        ("eval.device=cuda:x", "eval.device = 'cuda:x': must be auto, cpu, cuda, cuda:N or mps"),
        ("mine.base.precision=fp8", "mine.base.precision = 'fp8': must be 'fp32', 'bf16' or 'fp16'"),
        ("train.num_workers=-1", "train.num_workers = -1: must be greater than or equal to 0"),
        ("eval.eval_batch_size=0", "eval.eval_batch_size = 0: must be greater than or equal to 1"),
        ("train.accumulate=0", "train.accumulate = 0: must be greater than or equal to 1"),
        ("train.eval_every=0", "train.eval_every = 0: must be greater than or equal to 1"),
        ("train.checkpoint_every_steps=-1", "train.checkpoint_every_steps = -1: must be greater than or equal to 0"),
        ("eval.max_skipped_fraction=1.5", "eval.max_skipped_fraction = 1.5: must be less than or equal to 1"),
        ("train.classifier.augment.scale=[0.9, 0.5]", "train.classifier.augment.scale = [0.9, 0.5]: must be [low, high] with low <= high"),
        ("train.classifier.augment.scale=[0, 1]", "train.classifier.augment.scale[0] = 0: must be greater than 0"),
        ("mine.base.augment.ratio=[1]", "mine.base.augment.ratio = [1]: must have at least 2 items, not 1"),
        ("mine.base.augment.ratio=[2, 1]", "mine.base.augment.ratio = [2.0, 1.0]: must be [low, high] with low <= high"),
        ("train.classifier.augment.hflip=1.5", "train.classifier.augment.hflip = 1.5: must be less than or equal to 1"),
        ("train.classifier.augment.crop_pct=0", "train.classifier.augment.crop_pct = 0: must be greater than 0"),
        ("train.classifier.augment.mean=[0.5, 0.5]", "train.classifier.augment.mean = [0.5, 0.5]: must have at least 3 items"),
        ("train.classifier.augment.std=[0.2, 0, 0.2]", "train.classifier.augment.std[1] = 0: must be greater than 0"),
    ],
)
def test_phase2_runtime_settings_are_checked(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, None, [override])
    assert message in str(err.value)


def test_good_phase2_values_are_accepted():
    cfg = load_config(None, None, ["train.device=cuda:1", "eval.device=mps", "mine.base.precision=bf16", "train.num_workers=0",
                                   "train.classifier.augment.mean=[0.5, 0.5, 0.5]", "train.classifier.augment.std=[0.2, 0.2, 0.2]"])
    assert (cfg.train.device, cfg.eval.device, cfg.mine.base.precision, cfg.train.num_workers) == ("cuda:1", "mps", "bf16", 0)


def test_real_only_training_may_be_shorter_than_the_curriculum_period():
    cfg = load_config(None, None, ["train.methods=[real-only]", "train.classifier.epochs=5"])
    assert cfg.train.classifier.epochs == 5


def test_the_origin_of_a_bad_value_is_named(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("generate:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=rf"generate.batch_size = 0: .* \(from {path}\)"):
        load_config(None, path)


def test_yaml_syntax_errors_are_one_line(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  levels: [10, 50\n")
    with pytest.raises(ConfigError) as err:
        load_config(None, path)
    assert str(err.value).startswith(f"{path}: invalid YAML: ") and "line" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"--set train.levels=\[10, 50: not a valid YAML value"):
        load_config(None, None, ["train.levels=[10, 50"])
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a YAML mapping"):
        load_config(None, path)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(None, tmp_path / "nope.yaml")


def test_names_are_checked_against_the_registries_without_importing_pytorch():
    import subprocess
    import sys

    # A fresh interpreter: whether checking a config imports PyTorch is a property of a clean process.
    code = ("import sys; from discl.config import load_config; "
            "load_config(None, None, ['train.methods=[real-only, fixed-30, adaptive, cuda]', 'data.name=csv', 'data.root=x.csv', "
            "'generate.backend=diffusers', 'generate.model=sd15', 'score.backend=open_clip', 'score.model=ViT-B-32']); "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    for setting, known in (("train.methods=[adaptiv]", "real-only, all-synthetic, non-adaptive, reverse, fixed, fixed-<level>, random"),
                           ("data.name=imagenet", "digits-lt, image-folder, imagenet-lt, iwildcam, csv"),
                           ("generate.backend=sdxl", "pixel-diffusion, diffusers"),
                           ("score.backend=clip", "auto, tiny-clip, transformers, open_clip")):
        with pytest.raises(ConfigError, match=f"must be one of: {re.escape(known)}"):
            load_config(None, None, [setting])
    with pytest.raises(ConfigError, match=r"train.methods = 'fixed-101': expected fixed-<level 0..100>"):
        load_config(None, None, ["train.methods=[fixed-101]"])


def test_new_settings_of_the_data_side_are_checked_too():
    with pytest.raises(ConfigError, match=r"generate.source_size = 'native': 'native' contradicts resize \[480, 270\]"):
        load_config(None, None, ["generate.source_size=native", "generate.resize=[480, 270]"])
    with pytest.raises(ConfigError, match="generate.source_size = 'big': must be 'square' or 'native'"):
        load_config(None, None, ["generate.source_size=big"])
    with pytest.raises(ConfigError, match=r"mine.exclude_classes = \['empty', 'empty'\]: must not repeat a value"):
        load_config(None, None, ["mine.exclude_classes=[empty, empty]"])
    assert load_config(None, None, ["mine.exclude_classes=[empty]"]).mine.exclude_classes == ["empty"]


def test_exponent_numbers_without_a_dot_are_numbers(tmp_path):
    """PyYAML reads 1e-5 as text (YAML 1.1); in a config file and in --set it is the number meant."""
    (tmp_path / "c.yaml").write_text("train:\n  classifier:\n    lr: 1e-5\n    weight_decay: 5E-4\n")
    cfg = load_config(None, tmp_path / "c.yaml", ["score.train_lr=2e-3", "generate.prompt_template=1e-7"])
    assert cfg.train.classifier.lr == 1e-5 and cfg.train.classifier.weight_decay == 5e-4
    assert cfg.score.train_lr == 2e-3
    assert cfg.generate.prompt_template == "1e-7"  # a text field keeps the text as written


def test_a_run_saved_with_tail_sampling_as_a_flag_still_loads(tmp_path):
    """Older run directories saved train.curriculum.tail_sampling as true/false (every method sampled)."""
    for flag, meant in ((True, "all"), (False, "none")):
        (tmp_path / "config.yaml").write_text(yaml.safe_dump({"train": {"curriculum": {"tail_sampling": flag}}}))
        assert load_config(tmp_path).train.curriculum.tail_sampling == meant
