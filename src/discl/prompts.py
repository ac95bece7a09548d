"""Prompt banks: which prompt drives the generation of one (class, seed).

Two kinds:
- a template per dataset, e.g. ``"a photo of {name} in the wild"``;
- per-class descriptions (a JSON file ``{"class name": ["description", ...]}``,
  written by hand or by ``discl prompts``), one picked per (class, seed) by a
  stable rule and put into a template such as ``"a 8k real photo: {description}"``.
  Class names are looked up as written, else case-insensitively (the reference
  writes its description files with lower-cased names).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .data.class_names import normalise_name
from .seeding import stable_seed


class PromptError(ValueError):
    pass


@dataclass
class PromptBank:
    template: str = "a photo of {name}"
    descriptions: Mapping[str, Sequence[str]] = field(default_factory=dict)
    names: Mapping[int, str] = field(default_factory=dict)  # label -> the name a prompt says (default: the class name)

    def __post_init__(self):
        self._by_normalised: dict[str, Sequence[str]] = {}
        for name, options in self.descriptions.items():
            self._by_normalised.setdefault(normalise_name(name), options)

    def prompt(self, class_name: str, seed: int, label: int | None = None) -> str:
        """The prompt for ``class_name`` (of ``label``) at grid seed ``seed``; the same in every process.
        Descriptions are looked up by class name; ``names`` may say the class another way in the prompt."""
        name = self.names.get(int(label), class_name) if label is not None else class_name
        options = self.descriptions.get(class_name) or self._by_normalised.get(normalise_name(class_name))
        if not options:
            return self.template.format(name=name, description=name)
        description = options[stable_seed("prompt", class_name, int(seed)) % len(options)]
        return self.template.format(name=name, description=description)

    @classmethod
    def from_json(cls, path: Path, template: str = "a 8k real photo: {description}",
                  names: Mapping[int, str] | None = None) -> PromptBank:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise PromptError(f"cannot read prompt file {path}: {err}") from err
        if not isinstance(data, dict):
            raise PromptError(f"{path}: expected an object mapping class names to lists of descriptions")
        seen: dict[str, str] = {}
        for name, options in data.items():
            if not isinstance(options, list) or not options or not all(isinstance(o, str) and o.strip() for o in options):
                raise PromptError(f"{path}: class {name!r} needs a non-empty list of non-empty strings")
            if seen.setdefault(normalise_name(name), name) != name:
                raise PromptError(f"{path}: classes {seen[normalise_name(name)]!r} and {name!r} are the same name; keep one")
        return cls(template=template, descriptions=data, names=dict(names or {}))


# Templates per dataset. "{name}" is the class name, "{description}" one of its descriptions
# (the class name itself when it has none).
TEMPLATES = {
    "generic": "a photo of {name}",
    "iwildcam": "a photo of {name} in the wild",
    "imagenet-lt": "a 8k real photo: {description}",
    "digits-lt": "a photo of the digit {name}",
}


# Filter captions per dataset (score.caption_template): what the reference compares each synthetic
# image with ("{name}" is the class name).
CAPTIONS = {
    "generic": "a photo of {name}",
    "iwildcam": "a photo of {name} in the wild",
    "imagenet-lt": "a photo of {name}",
    "digits-lt": "a photo of the digit {name}",
}


# Where the reference's generation and filter code name a class otherwise than its class names
# (prompts.names = "reference"), by class id. iWildCam: its gene_img.py and comp_clip_scores.py read
# assets/metadata/wilds_common_names.pkl, which says "bird" and "bat" where labels.csv (the FLYP
# captions' names) says "unknown bird" and "unknown bat"; the other "unknown bird" class
# ("ave desconocida") is "unknown bird" in both.
REFERENCE_NAMES = {
    "iwildcam": {"unknown bird": "bird", "unknown bat": "bat"},
}


def prompt_names(classes, dataset: str, mode: str) -> dict[int, str]:
    """label -> the name generation prompts and filter captions use, for the classes whose name differs
    (``mode`` "class": none; "reference": :data:`REFERENCE_NAMES` of ``dataset``, by class id)."""
    if mode == "class":
        return {}
    if mode != "reference":
        raise ValueError(f"unknown prompts.names {mode!r}; known: ['class', 'reference']")
    table = REFERENCE_NAMES.get(dataset, {})
    ids = classes["class_id"] if "class_id" in classes.columns else classes["class_name"]
    return {int(label): table[str(cid)] for label, cid in zip(classes["label"], ids) if str(cid) in table}


def caption_for(dataset: str) -> str:
    """The reference's filter caption for ``dataset`` (the generic one for any other dataset)."""
    return CAPTIONS.get(dataset, CAPTIONS["generic"])


def demo_text_warning(setting: str, value: str, dataset: str) -> str | None:
    """A warning when ``setting`` (a caption or prompt template) still holds the demo's digit text
    on another dataset: every image would be judged or drawn against "the digit <class>"."""
    if dataset == "digits-lt" or value != CAPTIONS["digits-lt"]:
        return None
    return (f"warning: {setting} is the demo's {value!r} on dataset {dataset!r}; "
            f"the reference uses {caption_for(dataset)!r} there (set {setting})")


def template_for(dataset: str, template: str | None = None) -> str:
    if template:
        return template
    if dataset not in TEMPLATES:
        raise PromptError(f"no prompt template for dataset {dataset!r}; known: {sorted(TEMPLATES)} (or set prompts.template)")
    return TEMPLATES[dataset]


def description_request(class_name: str, n: int, min_words: int) -> list[dict]:
    """The chat messages asking for ``n`` scene descriptions of one class."""
    return [
        {"role": "system", "content": "You write varied, concrete descriptions of photographs for an image generator."},
        {"role": "user", "content": (
            f"Write {n} different descriptions of realistic photos that show a {class_name}. Each description must "
            f"have at least {min_words} words, describe a different scene (place, light, viewpoint, action), and "
            f"contain no other animal or object class that could be confused with it. "
            f"Reply with only a JSON array of {n} strings."
        )},
    ]


def parse_descriptions(text: str) -> list[str]:
    """A JSON array of strings (possibly inside a ``` fence or an object), else one per non-empty line."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    start, end = body.find("["), body.rfind("]")
    if start != -1 and end > start:
        try:
            data = json.loads(body[start : end + 1])
            if isinstance(data, list):
                return [str(x) for x in data if isinstance(x, (str, int, float))]
        except json.JSONDecodeError:
            pass
    lines = [line.strip().lstrip("-*0123456789.) ").strip().strip('"') for line in body.splitlines()]
    return [line for line in lines if line]


def validate_descriptions(options: list[str], n: int, min_words: int) -> tuple[list[str], str]:
    """The first ``n`` distinct descriptions of at least ``min_words`` words, and "" ; or [] and why not."""
    seen, kept = set(), []
    for option in options:
        clean = " ".join(str(option).split())
        key = clean.lower().rstrip(".")
        if len(clean.split()) >= min_words and key not in seen:
            seen.add(key)
            kept.append(clean)
    if len(kept) < n:
        return [], f"{len(kept)} distinct descriptions of >= {min_words} words, {n} wanted"
    return kept[:n], ""
