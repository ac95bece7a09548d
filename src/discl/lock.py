"""One writer per stage per run directory.

A lock is an advisory ``flock`` on ``RUN/.discl-<name>.lock``, a file that says who holds it (pid,
host, command, start time). The kernel drops the lock when its holder exits, even on ``kill -9``, so a
left-over file never blocks anyone; a clean release removes the file. flock is per open file, so
two processes (or two opens in one process) exclude each other; on NFS, Linux maps it to POSIX
locks, which hold across hosts. Where ``fcntl`` does not exist (Windows) locks are not taken.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .rundir import RunDir

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]  # checked before every use


class LockHeld(RuntimeError):
    """Another process holds the lock: the message names it, in one line."""


def lock_path(root: Path, name: str) -> Path:
    return RunDir(root).lock(name)


def _holder_text(fd: int, path: Path) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return f"another process (lock {path})"
    return f"pid {info.get('pid')} on {info.get('host')}, `{info.get('command')}` since {info.get('since')} (lock {path})"


class RunLock:
    def __init__(self, root: Path, name: str, command: str | None = None):
        self.path = lock_path(root, name)
        self.name = name
        self.command = command or " ".join(["discl", *sys.argv[1:2], name])
        self._fd: int | None = None

    def acquire(self, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> RunLock:
        """Take the lock; when held elsewhere, raise LockHeld, or with ``wait`` block until it is free."""
        if fcntl is None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder_text(fd, self.path)
                if not wait:
                    os.close(fd)
                    raise LockHeld(holder) from None
                if on_wait:
                    on_wait(holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            # The previous holder removes the file on release: if ours is no longer the file at this
            # path, a newcomer may lock the new one, so start again on that.
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # still holding it: nobody else can be using this file
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def busy(root: Path, pattern: str) -> str | None:
    """Who holds a lock of the run directory whose name matches the glob ``pattern`` (None: nobody)."""
    if fcntl is None:
        return None
    pattern_path = lock_path(root, pattern)
    for path in sorted(pattern_path.parent.glob(pattern_path.name)):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # released meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder_text(fd, path)
        finally:
            os.close(fd)
    return None
