import json

import pytest

from discl.prompts import PromptBank, PromptError


def test_template_only():
    assert PromptBank("a photo of {name} in the wild").prompt("red fox", 10) == "a photo of red fox in the wild"


def test_descriptions_are_picked_per_class_and_seed_stably(tmp_path):
    path = tmp_path / "prompts.json"
    options = [f"scene number {i} with a fox" for i in range(10)]
    path.write_text(json.dumps({"fox": options}))
    bank = PromptBank.from_json(path)
    picks = [bank.prompt("fox", seed) for seed in (10, 20, 30, 40, 42, 50, 60, 70)]
    assert all(p.startswith("a 8k real photo: scene number") for p in picks)
    assert len(set(picks)) > 1  # different seeds draw different descriptions
    assert picks == [PromptBank.from_json(path).prompt("fox", s) for s in (10, 20, 30, 40, 42, 50, 60, 70)]
    assert bank.prompt("cat", 10) == "a 8k real photo: cat"  # a class with no descriptions falls back to its name


@pytest.mark.parametrize("content, message", [("[1, 2]", "expected an object"), ('{"fox": []}', "'fox' needs a non-empty list"), ("{", "cannot read")])
def test_bad_prompt_files_are_named(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(PromptError, match=message):
        PromptBank.from_json(path)
