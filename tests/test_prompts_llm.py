"""`discl prompts`: dataset templates and LLM descriptions, cached, validated, with a fallback."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from discl.cli import main
from discl.config import load_config
from discl.llm import LLMError
from discl.prompts import PromptBank, parse_descriptions, template_for, validate_descriptions
from discl.rundir import RunDir
from discl.stages.prompts import run_prompts
from discl.tables import write_table
from tests.test_llm import FakeEndpoint, chat_reply

CLASSES = ["red fox", "barn owl"]


def _run(tmp_path):
    run = RunDir(tmp_path / "run")
    classes = pd.DataFrame({"label": [0, 1], "class_name": CLASSES, "class_id": ["n02119022", "n01622779"],
                            "train_count": [30, 3], "bucket": ["many", "few"]})
    dataset = pd.DataFrame({"sample_id": ["a", "b"], "split": ["train", "train"], "label": [0, 1], "class_name": CLASSES, "path": ["a.png", "b.png"]})
    write_table(classes, run.classes, "classes")
    write_table(dataset, run.dataset, "dataset")
    return run


def _descriptions(name, n=3, words=6):
    return [f"a {name} seen in scene number {i} " + " ".join(["with extra words"] * words) for i in range(n)]


def _cfg(run, url, **extra):
    sets = [f"prompts.base_url={url}", "prompts.llm=true", "prompts.n_descriptions=3", "prompts.min_words=8",
            "prompts.api_key_env=DISCL_TEST_KEY", "prompts.max_retries=1", "prompts.backoff_s=0.01", "prompts.timeout_s=2",
            "prompts.dataset=imagenet-lt"] + [f"prompts.{k}={v}" for k, v in extra.items()]
    return load_config(run.root, None, sets)


def test_descriptions_are_asked_once_cached_and_read_by_the_prompt_bank(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCL_TEST_KEY", "sk-never-on-disk")
    run = _run(tmp_path)
    script = [(200, chat_reply(json.dumps(_descriptions(n)))) for n in CLASSES]
    with FakeEndpoint(script) as server:
        out = run_prompts(run, _cfg(run, server.url), echo=lambda *_: None)
        assert len(server.requests) == 2
        assert "red fox" in server.requests[0]["body"]["messages"][-1]["content"]
        again = run_prompts(run, _cfg(run, server.url), echo=lambda *_: None)
        assert len(server.requests) == 2  # the rerun made no call
    assert out == again and sorted(out) == sorted(CLASSES) and all(len(v) == 3 for v in out.values())
    bank = PromptBank.from_json(run.root / "prompts.json", template_for("imagenet-lt"))
    assert bank.prompt("red fox", 10).startswith("a 8k real photo: a red fox seen in scene number")
    for path in run.root.rglob("*"):
        if path.is_file():
            assert b"sk-never-on-disk" not in path.read_bytes(), path


def test_invalid_replies_are_asked_again(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCL_TEST_KEY", "k")
    run = _run(tmp_path)
    too_few = json.dumps(_descriptions("red fox", n=2))
    duplicates = json.dumps(_descriptions("red fox", n=1) * 3)
    too_short = json.dumps(["a fox", "a red fox", "fox in snow"])
    good = "```json\n" + json.dumps(_descriptions("red fox")) + "\n```"
    script = [(200, chat_reply(t)) for t in (too_few, duplicates, too_short, good)] + [(200, chat_reply(json.dumps(_descriptions("barn owl"))))]
    with FakeEndpoint(script) as server:
        out = run_prompts(run, _cfg(run, server.url, attempts=4), echo=lambda *_: None)
    assert len(server.requests) == 5 and out["red fox"] == _descriptions("red fox")


def test_endpoint_down_falls_back_to_the_template(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCL_TEST_KEY", "k")
    run = _run(tmp_path)
    with FakeEndpoint([(500, {"error": "down"})]) as server:
        messages = []
        out = run_prompts(run, _cfg(run, server.url), echo=messages.append)
        assert len(server.requests) == 2  # one class, 1 + max_retries attempts; the other class is not tried
    assert out == {}
    assert any("2 classes fall back to the template" in m for m in messages)
    assert json.loads((run.root / "prompts.json").read_text()) == {}


def test_endpoint_down_with_on_error_error_stops_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCL_TEST_KEY", "k")
    run = _run(tmp_path)
    with FakeEndpoint([(200, chat_reply(json.dumps(_descriptions("red fox")))), (503, b"unavailable")]) as server:
        with pytest.raises(LLMError, match="HTTP 503.*1 classes are saved"):
            run_prompts(run, _cfg(run, server.url, on_error="error"), echo=lambda *_: None)
    assert list(json.loads((run.root / "prompts.json").read_text())) == ["red fox"]


def test_cli_prompts_without_llm_prints_the_template(tmp_path):
    run = _run(tmp_path)
    result = CliRunner().invoke(main, ["prompts", str(run.root), "--set", "prompts.dataset=iwildcam"])
    assert result.exit_code == 0, result.output
    assert "red fox: a photo of red fox in the wild" in result.output


def test_cli_missing_key_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.delenv("DISCL_TEST_KEY", raising=False)
    run = _run(tmp_path)
    result = CliRunner().invoke(main, ["prompts", str(run.root), "--llm", "--set", "prompts.api_key_env=DISCL_TEST_KEY",
                                       "--set", "prompts.on_error=error"])
    assert result.exit_code == 2 and "DISCL_TEST_KEY" in result.output and "is not set" in result.output


def test_parsing_and_validation():
    assert parse_descriptions('Sure! ["one two", "three four"]') == ["one two", "three four"]
    assert parse_descriptions("1. first scene here\n2) second scene\n- third") == ["first scene here", "second scene", "third"]
    kept, why = validate_descriptions(["A b c.", "a b c", "d e f", "g h"], n=2, min_words=3)
    assert kept == ["A b c.", "d e f"] and why == ""
    assert validate_descriptions(["a b c"], n=2, min_words=3) == ([], "1 distinct descriptions of >= 3 words, 2 wanted")


def test_dataset_templates():
    assert template_for("iwildcam") == "a photo of {name} in the wild"
    assert template_for("imagenet-lt") == "a 8k real photo: {description}"
    assert template_for("iwildcam", "my {name}") == "my {name}"
    with pytest.raises(ValueError, match="no prompt template for dataset 'cifar'"):
        template_for("cifar")


def test_cli_a_redirecting_endpoint_gets_no_key_and_changes_nothing(tmp_path, monkeypatch):
    """`discl prompts --llm` against an endpoint that redirects to another host: one line, exit 2, the
    other host never sees the key, and the run directory is as it was (no prompts.json, same config.yaml)."""
    from .conftest import tree_state

    monkeypatch.setenv("DISCL_TEST_KEY", "sk-do-not-forward")
    run = _run(tmp_path)
    with FakeEndpoint([(200, chat_reply("stolen"))]) as elsewhere:
        with FakeEndpoint([(302, b"", {"Location": elsewhere.url.replace("127.0.0.1", "localhost") + "/chat/completions"})]) as server:
            before = tree_state(run.root)
            result = CliRunner().invoke(main, ["prompts", str(run.root), "--llm", "--set", f"prompts.base_url={server.url}",
                                               "--set", "prompts.api_key_env=DISCL_TEST_KEY", "--set", "prompts.on_error=error"])
    assert result.exit_code == 2 and elsewhere.requests == []
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error: prompts: ") and "redirects (HTTP 302) to http://localhost:" in line
    assert "sk-do-not-forward" not in result.output
    assert tree_state(run.root) == before
