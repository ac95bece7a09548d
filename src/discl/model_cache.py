"""Models trained in-process are cached in the run directory with the settings that made them;
a later stage reuses one only when those settings (and its training data) are unchanged.

Also the settings that decide a model's weights, by which caches, checkpoints and saved models are
compared (a stage module never imports another: what several stages share lives here)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_write_json
from .config import ClassifierConfig, RunConfig
from .rundir import RunDir
from .swap import recover, replace_folder, staging_dir  # noqa: F401 - recover and staging_dir are used via model_cache.*

# Settings that change how fast a model trains or what is printed, never its weights: a checkpoint
# written under other values of these is resumed from, and a saved model stays valid.
RESULT_NEUTRAL = ("methods", "resume", "device", "num_workers", "eval_batch_size", "eval_every",
                  "checkpoint_every_steps", "max_skipped_fraction", "compile", "loggers")


def settings_path(folder: Path) -> Path:
    return RunDir.trained_with(folder)


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


def train_once(run: RunDir, folder: Path, settings: dict, what: str, train: Callable[[], Any],
               load: Callable[[Path], Any], echo=print) -> Any:
    """The model cached in ``folder`` if it was trained with ``settings``, else ``train()``'s. Processes started
    together (shards, ranks) train it once: the others wait on the run's lock named after the folder, then load it."""
    from .artefacts import DamagedModelError
    from .lock import RunLock

    recover(folder)
    if is_current(folder, settings):
        try:
            return load(folder)
        except DamagedModelError as err:  # repaired: trained again (the damaged files stay until the new ones are whole)
            echo(f"warning: {err}; training {what} again")
            settings_path(folder).unlink(missing_ok=True)
    with RunLock(run.root, f"model-{folder.name}").acquire(wait=True, on_wait=lambda who: echo(f"waiting for {who} to train {what}")):
        if not is_current(folder, settings):
            return train()
    return load(folder)


def fingerprint(ids) -> str:
    """A short digest of which samples a model learnt from."""
    return hashlib.sha1("\n".join(sorted(map(str, ids))).encode()).hexdigest()[:16]


def classifier_settings(cfg: ClassifierConfig, image_size: int, rows: pd.DataFrame) -> dict:
    """What determines a base classifier's weights: its cache key. The rows by id and label: a prepare may give
    the same images other labels (a Hugging Face dataset read with another data.label_column)."""
    classifier = {k: v for k, v in asdict(cfg).items() if k not in RESULT_NEUTRAL}
    return {"classifier": classifier, "image_size": image_size, "data": rows_digest(rows, ["sample_id", "label"])}


def rows_digest(frame: pd.DataFrame, columns: list[str]) -> str:
    """A short digest of ``columns`` of a table, whatever its row order: hashed from the table's values
    (pandas' vectorised row hash), never from the image files, so it is cheap at any size."""
    if frame.empty:
        return "empty"
    hashed = np.sort(pd.util.hash_pandas_object(frame[columns].astype(str), index=False).to_numpy())
    return hashlib.sha1(hashed.tobytes()).hexdigest()[:16]


#: What each input digest of a task model stands for, and the command that remakes it when it changed.
INPUTS = {
    "real rows": ("the training split (dataset.parquet)", "prepare"),
    "kept synthetic": ("the kept synthetic images (synthetic.parquet + scores.parquet)", "score"),
    "hard set": ("the hard samples (hard.parquet)", "mine"),
    "classes": ("the classes, their names and head/tail buckets (classes.parquet)", "prepare"),
    "selection rows": ("the rows train.select chooses the kept epoch on (dataset.parquet)", "prepare"),
}


def input_digests(train_rows: pd.DataFrame, synthetic: pd.DataFrame | None = None, hard_ids=None) -> dict[str, str]:
    """What a method trained on, one digest per input: the real training rows (id, file, label); for methods
    that use synthetic images, the kept ones (id, the fingerprint of the settings that made the image, its
    file, label and level: a remade or newly kept or dropped image changes it) and the hard set."""
    out = {"real rows": rows_digest(train_rows, ["sample_id", "path", "label"])}
    if synthetic is not None:
        out["kept synthetic"] = rows_digest(synthetic, ["synthetic_id", "fingerprint", "path", "label", "image_guidance"])
        out["hard set"] = fingerprint(hard_ids if hard_ids is not None else set(synthetic["source_id"]))
    return out


def method_settings(cfg: RunConfig, method: str, train_rows: pd.DataFrame, inputs: dict[str, str] | None = None) -> dict:
    """What determines a method's trained weights (besides its held-out sources): compared with a
    checkpoint before resuming, and with a saved model before evaluating it. ``inputs``: the digests of
    what it trained on (:func:`input_digests`)."""
    train = {k: v for k, v in asdict(cfg.train).items() if k not in RESULT_NEUTRAL}
    out = {"method": method, "train": train, "image_size": cfg.data.image_size, "data": fingerprint(train_rows["sample_id"])}
    return out | ({"inputs": inputs} if inputs is not None else {})


def describe_changes(changed: list[str]) -> str:
    """Changed settings keys in words: an input digest by what it stands for, a setting by its key."""
    words = []
    for key in changed:
        name = key.removeprefix("inputs.")
        words.append(INPUTS[name][0] if name in INPUTS else key)
    return ", ".join(dict.fromkeys(words))


def changed_keys(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested settings dicts."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out
