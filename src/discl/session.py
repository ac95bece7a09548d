"""What every stage does around its work, from the command line and from Python alike: check the
settings, take the stage's lock, save config.yaml, and put config.yaml back if the stage fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .atomic import atomic_write_bytes
from .config import ConfigError, RunConfig, load_config, save_config
from .lock import LockHeld, RunLock, busy
from .rundir import RunDir


def is_main_process() -> bool:
    """Under torchrun every rank runs the command; only rank 0 takes locks and writes config.yaml."""
    return os.environ.get("RANK", "0") == "0"


def check_run_dir(run: RunDir, creates: bool) -> None:
    if run.root.exists() and not run.root.is_dir():
        raise ConfigError(f"{run.root} is not a directory")
    if not creates and not run.root.is_dir():
        raise ConfigError(f"run directory {run.root} does not exist; `discl prepare {run.root}` makes one "
                          "(no other stage creates a run directory)")


def restore(path: Path, content: bytes | None) -> None:
    """Put back what config.yaml held before the command (atomically), or remove it if there was none."""
    if content is None:
        path.unlink(missing_ok=True)
        return
    atomic_write_bytes(path, content)


def generate_locks(shard: tuple[int, int]) -> tuple[str, str]:
    """(this process's lock, the locks it may not run beside) for `generate` on shard (index, count)."""
    index, count = shard
    # Shards lock apart and may run side by side; the whole plan may not run beside any shard.
    return ("generate", "generate-shard-*") if count == 1 else (f"generate-shard-{index}-of-{count}", "generate")


def busy_message(run: RunDir, held: LockHeld, lock: str) -> str:
    return (f"{run.root} is busy: {held}; wait for that command to end"
            + (", or give each process its own --shard I/N" if lock.startswith("generate") else ""))


@contextmanager
def stage_session(run_dir: Path | str, lock: str, *, config: RunConfig | None = None, config_file: Path | None = None,
                  overrides: list[str] | tuple[str, ...] = (), recipe: str | None = None, creates: bool = False,
                  others: str | None = None, saves: bool = True, command: str | None = None) -> Iterator[tuple[RunDir, RunConfig]]:
    """Yield (run, config) for one stage, in this order: check the settings (writing nothing; a given
    ``config`` is used as is, otherwise it is loaded like the CLI loads it), take the stage's lock
    (and fail if a lock matching ``others`` is held), save config.yaml (unless ``saves`` is False: a
    dry run); if the stage fails with an error, config.yaml is put back as it was, so a bad setting
    is never the base of later runs. ``command`` names the holder in the lock file."""
    run = RunDir(Path(run_dir))
    check_run_dir(run, creates)
    cfg = config if config is not None else load_config(run.root if run.root.is_dir() else None, config_file, overrides, recipe)
    if not is_main_process():
        yield run, cfg
        return
    created = not run.root.exists()
    run.root.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock(run.root, lock, command):
            holder = busy(run.root, others) if others else None
            if holder:
                raise LockHeld(holder)
            before = run.config.read_bytes() if run.config.exists() else None
            if saves:
                save_config(cfg, run.root)
            try:
                yield run, cfg
            except Exception:
                restore(run.config, before)
                raise
    except LockHeld as held:
        raise LockHeld(busy_message(run, held, lock)) from None
    finally:
        if created and not any(run.root.iterdir()):
            run.root.rmdir()  # a prepare that failed leaves no empty run directory behind


@contextmanager
def report_session(run_dir: Path | str, command: str | None = None, lock: str = "report") -> Iterator[RunDir]:
    """The report (and the export, ``lock="export"``) reads the run and writes only outside its tables: an
    existing run directory and the command's own lock."""
    run = RunDir(Path(run_dir))
    check_run_dir(run, creates=False)
    try:
        with RunLock(run.root, lock, command):
            yield run
    except LockHeld as held:
        raise LockHeld(busy_message(run, held, lock)) from None
