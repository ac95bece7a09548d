"""Models trained in-process are cached in the run directory with the settings that made them;
a later stage reuses one only when those settings (and its training data) are unchanged."""

from __future__ import annotations

import json
from pathlib import Path


def settings_path(folder: Path) -> Path:
    return Path(folder) / "trained_with.json"


def is_current(folder: Path, settings: dict) -> bool:
    path = settings_path(folder)
    return path.exists() and json.loads(path.read_text()) == json.loads(json.dumps(settings))


def mark_current(folder: Path, settings: dict) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    settings_path(folder).write_text(json.dumps(settings, indent=2, sort_keys=True))
