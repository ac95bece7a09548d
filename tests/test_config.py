import pytest
import yaml

from discl.config import ConfigError, RunConfig, load_config, parse_override, save_config


def test_defaults_follow_the_method():
    cfg = RunConfig()
    assert cfg.generate.strengths == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert cfg.train.levels == [10, 30, 50, 100]
    assert 50 <= cfg.data.imbalance_ratio <= 100


def test_layers_file_then_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"train": {"levels": [0, 100], "classifier": {"epochs": 7}}, "generate": {"seeds": [1]}}))
    cfg = load_config(None, path, ["train.classifier.epochs=9", "generate.text_guidance=3"])
    assert cfg.train.levels == [0, 100]
    assert cfg.train.classifier.epochs == 9
    assert cfg.train.classifier.lr == RunConfig().train.classifier.lr  # untouched keys keep defaults
    assert cfg.generate.seeds == [1]
    assert cfg.generate.text_guidance == 3.0 and isinstance(cfg.generate.text_guidance, float)


def test_saved_config_is_the_base_of_later_stages(tmp_path):
    save_config(load_config(None, None, ["mine.prob_threshold=0.2"]), tmp_path)
    assert load_config(tmp_path).mine.prob_threshold == 0.2
    assert load_config(tmp_path, None, ["mine.prob_threshold=0.3"]).mine.prob_threshold == 0.3


def test_parse_override_reads_yaml_values():
    assert parse_override("train.levels=[10, 50]") == {"train": {"levels": [10, 50]}}
    assert parse_override("data.root=/a b/c") == {"data": {"root": "/a b/c"}}


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown config key 'train.epoch'"),
        ("nosuch.key=1", "unknown config key 'nosuch'"),
        ("train.classifier.epochs=many", "train.classifier.epochs: cannot read 'many' as int"),
        ("generate.seeds=3", "generate.seeds: expected a list"),
        ("noequals", "must look like section.key=value"),
    ],
)
def test_bad_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_config(None, None, [override])


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(None, tmp_path / "nope.yaml")
