"""Prompt banks: which prompt drives the generation of one (class, seed).

Two kinds:
- a template per dataset, e.g. ``"a photo of {name} in the wild"``;
- per-class descriptions (a JSON file ``{"class name": ["description", ...]}``,
  written by hand or by ``discl prompts``), one picked per (class, seed) by a
  stable rule and put into a template such as ``"a 8k real photo: {description}"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .seeding import stable_seed


class PromptError(ValueError):
    pass


@dataclass
class PromptBank:
    template: str = "a photo of {name}"
    descriptions: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def prompt(self, class_name: str, seed: int) -> str:
        """The prompt for ``class_name`` at grid seed ``seed``; the same in every process."""
        options = self.descriptions.get(class_name)
        if not options:
            return self.template.format(name=class_name, description=class_name)
        description = options[stable_seed("prompt", class_name, int(seed)) % len(options)]
        return self.template.format(name=class_name, description=description)

    @classmethod
    def from_json(cls, path: Path, template: str = "a 8k real photo: {description}") -> "PromptBank":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise PromptError(f"cannot read prompt file {path}: {err}") from err
        if not isinstance(data, dict):
            raise PromptError(f"{path}: expected an object mapping class names to lists of descriptions")
        for name, options in data.items():
            if not isinstance(options, list) or not options or not all(isinstance(o, str) and o.strip() for o in options):
                raise PromptError(f"{path}: class {name!r} needs a non-empty list of non-empty strings")
        return cls(template=template, descriptions=data)
