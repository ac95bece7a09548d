"""Stage `prompts`: the prompt bank for generation. A template per dataset always works offline;
with prompts.llm, N distinct descriptions per class come from an OpenAI-compatible chat endpoint,
are validated, and are cached on disk as JSON (``{"class name": ["description", ...]}``, the
format generate.prompt_file reads), so a rerun makes no call for a class already described."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..config import RunConfig
from ..data import load_dataset_tables
from ..llm import ChatClient, LLMError
from ..prompts import PromptBank, description_request, parse_descriptions, template_for, validate_descriptions
from ..rundir import RunDir

ON_ERROR = ("fallback", "error")


def prompts_path(run: RunDir, cfg: RunConfig) -> Path:
    return run.resolve(cfg.prompts.output)


def _read_cache(path: Path) -> dict[str, list[str]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"prompt cache {path} is not valid JSON ({err}); fix or delete it") from err
    if not isinstance(data, dict):
        raise ValueError(f"prompt cache {path}: expected an object mapping class names to descriptions")
    return data


def _write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def describe_class(client: ChatClient, name: str, n: int, min_words: int, attempts: int, temperature: float) -> list[str]:
    """N validated descriptions, asking again (up to ``attempts`` times) when a reply does not validate."""
    why = ""
    for _ in range(max(1, attempts)):
        reply = client.chat(description_request(name, n, min_words), temperature)
        options, why = validate_descriptions(parse_descriptions(reply), n, min_words)
        if options:
            return options
    raise LLMError(f"class {name!r}: no valid answer in {attempts} tries ({why})", transport=False)


def run_prompts(run: RunDir, cfg: RunConfig, echo=print, client: ChatClient | None = None) -> dict[str, list[str]]:
    p = cfg.prompts
    # 1. Inputs: the classes, the template, the settings.
    _, classes = load_dataset_tables(run)
    names = [str(n) for n in classes["class_name"]]
    template = template_for(p.dataset, p.template)
    if p.on_error not in ON_ERROR:
        raise ValueError(f"unknown prompts.on_error {p.on_error!r}; known: {list(ON_ERROR)}")
    if p.n_descriptions < 1 or p.min_words < 0:
        raise ValueError("prompts.n_descriptions must be >= 1 and prompts.min_words >= 0")
    path = prompts_path(run, cfg)
    descriptions: dict[str, list[str]] = {}

    # 2. LLM descriptions: cached classes first, then the endpoint for the rest.
    if p.llm:
        cached = _read_cache(path)
        for name in names:
            options, _ = validate_descriptions(cached.get(name, []), p.n_descriptions, p.min_words)
            if options:
                descriptions[name] = options
        todo = [n for n in names if n not in descriptions]
        echo(f"prompts: {len(descriptions)} classes cached in {path}, {len(todo)} to ask {p.model} at {p.base_url}")
        failed: dict[str, str] = {}
        if todo:
            try:
                client = client or ChatClient.from_env(p.base_url, p.model, p.api_key_env, timeout=p.timeout_s,
                                                       max_retries=p.max_retries, backoff=p.backoff_s)
            except LLMError as err:
                if p.on_error == "error":
                    raise
                failed = {n: str(err) for n in todo}
            else:
                for name in todo:
                    try:
                        descriptions[name] = describe_class(client, name, p.n_descriptions, p.min_words, p.attempts, p.temperature)
                        _write_json(path, {**cached, **descriptions})  # saved per class: an interruption loses nothing
                    except LLMError as err:
                        if p.on_error == "error":
                            raise LLMError(f"prompts: {err}; nothing is lost: {len(descriptions)} classes are saved in {path}") from None
                        failed[name] = str(err)
                        if err.transport:  # endpoint down: no point trying the other classes
                            failed |= {n: "skipped after the endpoint failed" for n in todo if n not in descriptions and n not in failed}
                            break
        if failed:
            first = next(iter(failed.items()))
            echo(f"warning: {len(failed)} classes fall back to the template {template!r} ({first[0]}: {first[1]})")
        _write_json(path, {**cached, **descriptions})

    # 3. What generation should use, and a preview.
    bank = PromptBank(template, descriptions)
    for name in names[:3]:
        echo(f"  {name}: {bank.prompt(name, 10)}")
    file_hint = f" --set generate.prompt_file={p.output}" if p.llm else ""  # read from the run directory
    echo(f"prompts: use them with: discl generate {run.root} --set generate.prompt_template='{template}'{file_hint}")
    return descriptions
