"""Writing a file so that a crash, a kill or a full disk leaves the old file or the new one, never half of one.

Every file discl writes goes through here: the new bytes go to a temp file beside the target (same
folder, so the rename cannot cross file systems), are flushed to disk, and the temp file is renamed
over the target; if the writer raises, the temp file is removed and the target is untouched."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_path(path: Path, unique: bool = True) -> Path:
    """The hidden temp file beside ``path`` that its new content is written to. ``unique`` adds the process
    id, so processes writing the same file never share one; without it the name is predictable, so a
    later run can remove what a killed writer left (generated images, see stages/generate.py)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp" if unique else f".{path.name}.tmp")


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_replace(tmp: Path, path: Path) -> None:
    """Make ``tmp``'s bytes durable, then rename it over ``path``: after a crash or power loss the
    path holds the old file or the new one, never half of one."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


@contextmanager
def atomic_path(path: Path, durable: bool = True, unique: bool = True) -> Iterator[Path]:
    """A temp path to write ``path``'s new content to; on leaving the block it is renamed over ``path``
    (after an fsync, unless ``durable`` is False), or removed if the block raised. The folder is made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, unique)
    try:
        yield tmp
        if durable:
            fsync_replace(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone already after a successful rename


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> Path:
    with atomic_path(path, durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8", durable: bool = True) -> Path:
    with atomic_path(path, durable) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def atomic_write_json(path: Path, data, **dumps) -> Path:
    """``data`` as JSON (``dumps``: json.dumps options, e.g. indent=2)."""
    return atomic_write_text(path, json.dumps(data, **dumps))
