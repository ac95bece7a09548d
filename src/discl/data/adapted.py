"""What a dataset adapter (``@datasets.register``, discl.registry) hands back to the prepare stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Adapted:
    """``dataset``: one row per image (path, label, class_name, split, ...; docs/schemas.md);
    ``skipped``: files left out and why. ``staged`` / ``final``: an adapter that writes images into the
    run directory writes them to ``staged``; prepare moves them to ``final`` once everything else is
    written, so a failed prepare leaves the images of an earlier one in place. ``obsolete``: folders of an
    earlier prepare's images that prepare removes once the new tables are written."""

    dataset: pd.DataFrame
    skipped: pd.DataFrame
    staged: Path | None = None
    final: Path | None = None
    obsolete: list[Path] = field(default_factory=list)
