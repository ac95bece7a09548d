"""Models trained in-process are cached in the run directory with the settings that made them;
a later stage reuses one only when those settings (and its training data) are unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..atomic import atomic_write_json
from ..swap import recover, replace_folder, staging_dir  # noqa: F401 - recover and staging_dir are used via cache.*


def settings_path(folder: Path) -> Path:
    return Path(folder) / "trained_with.json"


def is_current(folder: Path, settings: dict) -> bool:
    path = settings_path(folder)
    return path.exists() and json.loads(path.read_text()) == json.loads(json.dumps(settings))


def mark_current(folder: Path, settings: dict) -> None:
    atomic_write_json(settings_path(folder), settings, indent=2, sort_keys=True)


def save_beside(folder: Path, write: Callable[[Path], None], settings: dict, new: Path | None = None) -> None:
    """Write a model into a new folder beside ``folder`` (``new``, default a fresh staging folder), mark it
    current and swap it in only when complete: until then the old model (if any) stays whole."""
    new = new or staging_dir(folder)
    write(new)
    mark_current(new, settings)
    replace_folder(new, folder)
