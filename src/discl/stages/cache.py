"""Models trained in-process are cached in the run directory with the settings that made them;
a later stage reuses one only when those settings (and its training data) are unchanged."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path


def settings_path(folder: Path) -> Path:
    return Path(folder) / "trained_with.json"


def is_current(folder: Path, settings: dict) -> bool:
    path = settings_path(folder)
    return path.exists() and json.loads(path.read_text()) == json.loads(json.dumps(settings))


def mark_current(folder: Path, settings: dict) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    settings_path(folder).write_text(json.dumps(settings, indent=2, sort_keys=True))


def staging_dir(folder: Path) -> Path:
    """A fresh folder beside ``folder`` where its replacement is built."""
    folder = Path(folder)
    new = folder.with_name(f".{folder.name}.new-{os.getpid()}")
    shutil.rmtree(new, ignore_errors=True)
    return new


def save_beside(folder: Path, write: Callable[[Path], None], settings: dict, new: Path | None = None) -> None:
    """Write a model into a new folder beside ``folder`` (``new``, default a fresh staging folder) and swap
    it in only when complete: until then the old model (if any) stays whole, and a crash leaves at worst a
    hidden half-written folder."""
    folder = Path(folder)
    new = new or staging_dir(folder)
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    write(new)
    mark_current(new, settings)
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def recover(folder: Path) -> None:
    """After a crash between the two renames of :func:`save_beside`, put the old model back."""
    folder = Path(folder)
    if not folder.exists():
        for old in sorted(folder.parent.glob(f".{folder.name}.old-*")):
            old.rename(folder)
            break
