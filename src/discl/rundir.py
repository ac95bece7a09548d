"""Where each stage's inputs and outputs live inside one run directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Files in one method's folder (train/<method>/, or compare/<task>/<loss>/seed<seed>/<method>/).
CHECKPOINT = "checkpoint.safetensors"
METRICS_LINES = "metrics.jsonl"
CURRICULUM_LOG = "curriculum_log.parquet"
BEST_WEIGHTS = "best.safetensors"  # the selected epoch's weights (train.select)
TRAIN_LOG = "log.parquet"
# In every model folder the run caches: the settings that model was trained with (discl/model_cache.py).
TRAINED_WITH = "trained_with.json"


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

    def lock(self, name: str) -> Path:
        return self.root / f".discl-{name}.lock"

    # models trained in-process, cached for later stages
    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def base_model(self) -> Path:
        """The base classifier `discl mine` trains on the whole training split (also the score stage's judge)."""
        return self.models / "base"

    def base_fold_model(self, fold: int) -> Path:
        """The base classifier of one out-of-fold split (mine.folds >= 2)."""
        return self.models / f"base-fold{fold}"

    @property
    def scorer_model(self) -> Path:
        """The demo's tiny CLIP scorer (score.backend tiny-clip)."""
        return self.models / "clip"

    @property
    def generator_model(self) -> Path:
        """The demo's pixel-diffusion generator (generate.backend pixel-diffusion)."""
        return self.models / "generator"

    @staticmethod
    def trained_with(model_dir: Path) -> Path:
        return Path(model_dir) / TRAINED_WITH

    # mine / generate / score
    @property
    def hard(self) -> Path:
        return self.root / "hard.parquet"

    @property
    def synthetic_images(self) -> Path:
        return self.root / "synthetic"

    @property
    def synthetic_metadata(self) -> Path:
        """The imagefolder metadata beside the synthetic images (`datasets.load_dataset("imagefolder")`)."""
        return self.synthetic_images / "metadata.jsonl"

    @property
    def synthetic_parts(self) -> Path:
        """Rows of the synthetic table committed batch by batch, one folder per writer (generation/store.py)."""
        return self.root / "synthetic.parts"

    @property
    def generation_record(self) -> Path:
        """The settings the run's images were made with (generation/settings.py)."""
        return self.synthetic_parts / "settings.json"

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic.parquet"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def clip_embeddings(self) -> Path:
        """The scorer's vectors of sources, texts and synthetic images (scoring/embeddings.py)."""
        return self.embeddings / "clip"

    @property
    def base_predictions(self) -> Path:
        """The base model's class probabilities of synthetic images (the confidence filters)."""
        return self.embeddings / "base"

    @property
    def scores(self) -> Path:
        return self.root / "scores.parquet"

    @property
    def score_summary(self) -> Path:
        return self.root / "score_summary.parquet"

    # train / eval / compare
    @property
    def train(self) -> Path:
        return self.root / "train"

    def method_dir(self, method: str) -> Path:
        return self.train / method

    def method_staging(self, method: str) -> Path:
        """Where `discl train` builds a method's new model; it replaces method_dir once every method is trained."""
        return self.train / f".{method}.next"

    def method_files(self, name: str) -> list[Path]:
        """The file ``name`` (e.g. TRAIN_LOG) of every trained method that has one, by method name (not the
        staging folders of a retrain in progress)."""
        return sorted(p for p in self.train.glob(f"*/{name}") if not p.parent.name.startswith("."))

    def compare_dir(self, task: str) -> Path:
        return self.root / "compare" / task

    def compare_method_dir(self, task: str, loss: str, seed: int, method: str) -> Path:
        return self.compare_dir(task) / loss / f"seed{seed}" / method

    def compare_results(self, task: str) -> Path:
        return self.compare_dir(task) / "results.parquet"

    def compare_table(self, task: str) -> Path:
        return self.compare_dir(task) / "table.md"

    @property
    def logs(self) -> Path:
        """Where train.loggers write: TensorBoard event files, W&B run folders, MLflow's local store."""
        return self.root / "logs"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.parquet"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.parquet"

    @property
    def wilds_metrics(self) -> Path:
        return self.root / "wilds_metrics.parquet"

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
