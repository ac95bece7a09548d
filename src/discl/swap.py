"""Replacing a folder by a complete new one, so the old one stays whole until its replacement is."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .atomic import fsync_dir


def staging_dir(folder: Path) -> Path:
    """A fresh hidden folder beside ``folder`` where its replacement is built."""
    folder = Path(folder)
    new = folder.with_name(f".{folder.name}.new-{os.getpid()}")
    shutil.rmtree(new, ignore_errors=True)
    return new


def replace_folder(new: Path, folder: Path) -> None:
    """Put the complete folder ``new`` in place of ``folder``: two renames, then the old one goes.
    A crash between the renames leaves the old folder as ``.<name>.old-<pid>``, which :func:`recover` puts back."""
    new, folder = Path(new), Path(folder)
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    fsync_dir(folder.parent)  # the renames are durable before the old folder goes
    shutil.rmtree(old, ignore_errors=True)


def recover(folder: Path) -> None:
    """After a crash between the two renames of :func:`replace_folder`, put the old folder back."""
    folder = Path(folder)
    if not folder.exists():
        for old in sorted(folder.parent.glob(f".{folder.name}.old-*")):
            old.rename(folder)
            break
