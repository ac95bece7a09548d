"""Where each stage's inputs and outputs live inside one run directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    # data stage
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def images(self) -> Path:
        return self.root / "data"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset.parquet"

    @property
    def classes(self) -> Path:
        return self.root / "classes.parquet"

    @property
    def skipped(self) -> Path:
        return self.root / "skipped.parquet"

    # models trained in-process, cached for later stages
    @property
    def models(self) -> Path:
        return self.root / "models"

    # mine / generate / score
    @property
    def hard(self) -> Path:
        return self.root / "hard.parquet"

    @property
    def synthetic_images(self) -> Path:
        return self.root / "synthetic"

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic.parquet"

    @property
    def scores(self) -> Path:
        return self.root / "scores.parquet"

    @property
    def score_summary(self) -> Path:
        return self.root / "score_summary.parquet"

    # train / eval
    def method_dir(self, method: str) -> Path:
        return self.root / "train" / method

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.parquet"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.parquet"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    def resolve(self, path: str) -> Path:
        """Paths in tables are relative to the run directory unless absolute."""
        # String joins: this runs once per image on large tables, where pathlib's parsing shows.
        path = os.fspath(path)
        return Path(path if os.path.isabs(path) else os.path.join(self.root, path))

    def resolve_all(self, paths) -> list[str]:
        """:meth:`resolve` for many paths at once, as strings (no Path objects: this runs per image)."""
        root = os.fspath(self.root)
        return [p if os.path.isabs(p) else os.path.join(root, p) for p in map(os.fspath, paths)]

    def missing_files(self, paths) -> list[str]:
        """Those of ``paths`` that are not files on disk. One directory listing per folder rather than
        one stat per file, which on large tables (and network file systems) costs far more."""
        listed: dict[str, set[str] | None] = {}
        absent = []
        for path, full in zip(paths, self.resolve_all(paths)):
            folder, name = os.path.split(full)
            if folder not in listed:
                try:
                    listed[folder] = {e.name for e in os.scandir(folder) if e.is_file()}
                except OSError:  # no such folder, or not one
                    listed[folder] = None
            names = listed[folder]
            if names is None or name not in names:
                absent.append(path)
        return absent

    def relative(self, path: Path) -> str:
        try:
            return str(Path(path).resolve().relative_to(self.root))
        except ValueError:
            return str(Path(path).resolve())
