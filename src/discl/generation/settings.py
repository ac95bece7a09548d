"""The settings a run's images were made with, recorded beside the committed rows
(``synthetic.parts/settings.json``), so a rerun with other settings can name what changed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..atomic import atomic_write_json
from ..rundir import RunDir


def digest(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record_path(run: RunDir) -> Path:
    return run.generation_record


def read_record(run: RunDir) -> dict | None:
    """``{"digest", "settings", "size"}`` of the last run that made images, or None."""
    try:
        return json.loads(record_path(run).read_text())
    except (FileNotFoundError, ValueError):
        return None


#: How many earlier settings the record keeps, so that images left over from them can be named.
EARLIER_KEPT = 16


def write_record(run: RunDir, settings: dict, size: tuple[int, int] | None = None, levels: dict | None = None) -> None:
    """``levels``: each level -> the strength the pipeline was called with (generate.level_scale), where known.
    The settings of earlier runs stay under ``earlier`` (digest -> settings): a run cut short leaves images of
    older settings on disk, and the next run names what changed since those were made."""
    new = digest(settings)
    old = read_record(run) or {}
    earlier = {k: v for k, v in (old.get("earlier") or {}).items() if k != new}
    if old.get("digest") and old["digest"] != new and old.get("settings"):
        earlier[old["digest"]] = old["settings"]
    earlier = dict(list(earlier.items())[-EARLIER_KEPT:])
    record = {"digest": new, "settings": settings, "size": list(size) if size else None}
    record |= {"levels": levels} if levels else {}
    atomic_write_json(record_path(run), record | ({"earlier": earlier} if earlier else {}), indent=2)


def recorded_settings(run: RunDir) -> dict[str, dict]:
    """Every settings digest the record knows (the last run's and the earlier ones) -> its settings."""
    record = read_record(run) or {}
    known = dict(record.get("earlier") or {})
    if record.get("digest") and record.get("settings"):
        known[record["digest"]] = record["settings"]
    return known


def planned_size(run: RunDir, settings: dict) -> tuple[int, int] | None:
    """(width, height) of the images these settings make, once one of them has been made."""
    record = read_record(run)
    if record and record.get("digest") == digest(settings) and record.get("size"):
        return tuple(record["size"])
    return None


def changes(old: dict | None, new: dict) -> list[str]:
    """``["generate.text_guidance 2.0 -> 7.5", ...]``: the keys whose values differ."""
    if not old:
        return []
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
