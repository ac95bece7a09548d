"""One method's training on a run: the rows every method reads (real, kept synthetic, validation, the
curriculum-validation set), its task model and its curriculum; used by `discl train` and `discl compare`.

A method reads *rows* (paths and labels) from the run's tables, never decoded images: one pool
holds the real training rows, the kept synthetic rows, the validation split and, for adaptive
curricula, the curriculum-validation rows; a stage is a choice of positions in that pool, and the
training loop streams the files (training/loop.py)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError

from ..config import RunConfig
from ..curricula import Curriculum, CurriculumValidation, create_curriculum, uses_synthetic, uses_validation
from ..data import load_dataset_tables
from ..model_cache import changed_keys, describe_changes, input_digests, method_settings, rows_digest
from ..rundir import CHECKPOINT, TRAIN_LOG, RunDir
from ..scoring.run_scorer import scores_match
from ..seeding import stable_seed
from ..tables import read_table, write_table
from . import ddp
from .callbacks import Callback
from .loggers import create_loggers
from .loop import TrainData, train_with_curriculum
from .pool import RowPool
from .sampling import TailSampling
from .task_registry import Task, TaskSpec, task_type


def kept_synthetic(run: RunDir) -> pd.DataFrame:
    """Synthetic images that passed the filter, with their image-guidance level."""
    synthetic = read_table(run.synthetic, "synthetic")
    scores = read_table(run.scores, "scores")
    if not scores_match(run, synthetic):
        raise ValueError(f"{run.scores} scores other synthetic images than {run.synthetic.name} (generate ran again "
                         f"since): run `discl score {run.root}` first")
    kept = scores.loc[scores["kept"], ["synthetic_id"]]
    return synthetic.merge(kept, on="synthetic_id", how="inner")


def validation_sources(synthetic: pd.DataFrame, levels: list[int], n_sources: int, seed: int) -> list[str]:
    """Sources whose kept spectrum covers every candidate level below 100 (level 100 is the real image
    itself), ``n_sources`` of them picked by a stable hash so the choice is the same in every process."""
    wanted = {lv for lv in levels if lv < 100}
    have: dict[str, set[int]] = {}
    for src, level in zip(synthetic["source_id"], synthetic["image_guidance"]):
        have.setdefault(str(src), set()).add(int(level))
    full = sorted(src for src, got in have.items() if wanted <= got)
    return sorted(full, key=lambda src: stable_seed("curriculum-validation", seed, src))[:n_sources]


def validation_rows(synthetic: pd.DataFrame, train_rows: pd.DataFrame, levels: list[int], sources: list[str],
                    pick: str = "lowest-seed", seed: int = 0) -> pd.DataFrame:
    """One row per (source, level): the kept synthetic image of the lowest grid seed, or (``pick`` =
    "random") one drawn by a stable hash of (seed, image), as the reference draws one at random; the real
    source at 100. Columns: path, label, image_guidance, source_id."""
    if pick not in ("lowest-seed", "random"):
        raise ValueError(f"unknown curriculum-validation pick {pick!r}; known: ['lowest-seed', 'random']")
    rows = synthetic[synthetic["source_id"].isin(sources) & synthetic["image_guidance"].isin(levels)]
    if pick == "random":
        rows = rows.assign(seed=[stable_seed("validation-image", seed, str(s), int(lv), int(g))
                                 for s, lv, g in zip(rows["source_id"], rows["image_guidance"], rows["seed"])])
    rows = rows.sort_values(["source_id", "image_guidance", "seed"]).drop_duplicates(["source_id", "image_guidance"])
    frame = rows[["path", "label", "image_guidance", "source_id"]]
    if 100 in levels:
        real = train_rows[train_rows["sample_id"].isin(sources)].sort_values("sample_id")
        frame = pd.concat([frame, pd.DataFrame({"path": real["path"], "label": real["label"], "image_guidance": 100,
                                                "source_id": real["sample_id"]})], ignore_index=True)
    if frame.empty:
        raise ValueError("the curriculum validation set is empty: no source has kept synthetic images at every level "
                         f"{levels}; lower train.curriculum.val_sources or the levels, or keep more images in `score`")
    return frame.reset_index(drop=True)


@dataclass
class TrainInputs:
    """What every method of a run trains and validates on: table rows, read once (no image is decoded here)."""

    classes: pd.DataFrame
    train_rows: pd.DataFrame
    val_rows: pd.DataFrame
    synthetic: pd.DataFrame | None
    test_rows: pd.DataFrame | None = None  # the rows train.select = "best-test" / "best-id-val" chooses on
    hard_ids: set[str] | None = None  # only for train.curriculum.stage_real = "non-hard" / "unreplaced"
    hard_set: set[str] | None = None  # the hard samples (hard.parquet), recorded with methods that use synthetic images
    select_rows: pd.DataFrame | None = None  # the rows train.select keeps the best epoch on (None: "final")

    def digests(self, method: str) -> dict[str, str]:
        """The digests of what ``method`` trains on (model_cache.input_digests): a real-only method's
        depend on the real rows only, so a new filter or hard set leaves it current. The classes (names
        for FLYP's captions, buckets for tail sampling) and the rows that select the kept epoch decide
        the weights too."""
        synthetic = self.synthetic if uses_synthetic(method) else None
        out = input_digests(self.train_rows, synthetic, self.hard_set)
        out["classes"] = rows_digest(self.classes, ["label", "class_name", "bucket"])
        if self.select_rows is not None:
            out["selection rows"] = rows_digest(self.select_rows, ["sample_id", "path", "label"])
        return out

    @property
    def class_counts(self) -> torch.Tensor:
        counts = self.train_rows["label"].value_counts()
        return torch.tensor([int(counts.get(c, 0)) for c in range(len(self.classes))], dtype=torch.float32)

    @property
    def few_labels(self) -> set[int]:
        return set(self.classes.loc[self.classes["bucket"] == "few", "label"].astype(int))


def load_inputs(run: RunDir, cfg: RunConfig, methods: list[str], echo=print) -> TrainInputs:
    dataset, classes = load_dataset_tables(run)
    train_rows = dataset[dataset["split"] == "train"].reset_index(drop=True)
    val_rows = dataset[dataset["split"] == "val"].reset_index(drop=True)
    synthetic = kept_synthetic(run) if any(uses_synthetic(m) for m in methods) else None
    if synthetic is not None:
        present = set(synthetic["image_guidance"])
        missing = [lv for lv in cfg.train.levels if lv != 100 and lv not in present]
        if missing:
            echo(f"warning: no kept synthetic image at levels {missing}; those stages train on real data only")
    if cfg.train.select == "best-val" and val_rows.empty:
        raise ValueError("train.select = best-val needs a validation split, and this dataset has none")
    select_split = {"best-test": "test", "best-id-val": "id_val"}.get(cfg.train.select)
    test_rows = dataset[dataset["split"] == select_split].reset_index(drop=True) if select_split else None
    if test_rows is not None and test_rows.empty:
        raise ValueError(f"train.select = {cfg.train.select} needs the {select_split} split, and this dataset has none")
    hard_ids, hard_set = None, None
    if synthetic is not None:
        hard = read_table(run.hard, "hard") if run.hard.exists() else None
        hard_set = set(hard["sample_id"]) if hard is not None else set(synthetic["source_id"])
        if cfg.train.curriculum.stage_real == "unreplaced":
            # The reference's iWildCam code: a hard sample whose every synthetic image was filtered out keeps its real image.
            hard_ids = set(synthetic["source_id"])
        elif cfg.train.curriculum.stage_real == "non-hard":
            hard_ids = hard_set
    select_rows = test_rows if test_rows is not None else (val_rows if cfg.train.select == "best-val" else None)
    return TrainInputs(classes, train_rows, val_rows, synthetic, test_rows, hard_ids, hard_set, select_rows)


def epoch_entries(epoch_length: str, real_entries: int, batch_size: int) -> int | None:
    """Entries per epoch: None (one pass over each stage's rows) or, for "real", int(real entries / batch size)
    full batches, as the reference's iWildCam trainer counts them (at least one batch)."""
    if epoch_length == "pass":
        return None
    if epoch_length == "real":
        return max(1, real_entries // batch_size) * batch_size
    raise ValueError(f"unknown train.epoch_length {epoch_length!r}; known: ['pass', 'real']")


def tail_sampling(cfg: RunConfig, method: str) -> TailSampling | None:
    """The epoch sampler of a method: tail sampling where train.curriculum.tail_sampling asks for it."""
    c = cfg.train.curriculum
    if c.tail_sampling == "none" or (c.tail_sampling == "curricula" and not uses_synthetic(method)):
        return None
    return TailSampling(c.non_tail_ratio, c.tail_fraction, c.tail_rule)


def task_spec(run: RunDir, cfg: RunConfig, inputs: TrainInputs) -> TaskSpec:
    return TaskSpec(run, cfg, list(inputs.classes.sort_values("label")["class_name"]), inputs.class_counts)


def make_task(run: RunDir, cfg: RunConfig, inputs: TrainInputs) -> Task:
    """The task model of train.task (training/task_registry.py) at its starting weights, with its transforms."""
    return task_type(cfg.train.task).build(task_spec(run, cfg, inputs))


def build_method_data(run: RunDir, cfg: RunConfig, method: str, inputs: TrainInputs):
    """The row pool of one method, its curriculum-validation set (adaptive curricula) and its held-out sources."""
    t = cfg.train
    validation, exclude, extra = None, [], None
    candidates: list[int] = []
    if uses_validation(method):
        if inputs.synthetic is None:
            raise ValueError(f"{method} needs synthetic images: run generate and score first")
        candidates = sorted({lv for lv in t.levels if lv >= t.curriculum.min_level})
        exclude = validation_sources(inputs.synthetic, candidates, t.curriculum.val_sources, t.classifier.seed)
        extra = validation_rows(inputs.synthetic, inputs.train_rows, candidates, exclude, t.curriculum.val_image,
                                t.classifier.seed)
    held = set(exclude)
    real = inputs.train_rows[~inputs.train_rows["sample_id"].isin(held)]
    synthetic = inputs.synthetic if uses_synthetic(method) else None
    if synthetic is not None:
        synthetic = synthetic[~synthetic["source_id"].isin(held)]
    hard_real = None
    if inputs.hard_ids is not None and synthetic is not None:
        hard_real = real["sample_id"].isin(inputs.hard_ids).to_numpy()
    pool = RowPool(run, real, synthetic, inputs.val_rows, inputs.few_labels, extra, inputs.test_rows, hard_real,
                   t.curriculum.synthetic_tail, t.classifier.seed)
    if extra is not None:
        validation = CurriculumValidation(pool.extra, extra["label"].to_numpy(), extra["image_guidance"].to_numpy(),
                                          list(extra["source_id"]))
    return pool, validation, exclude


def checkpoint_settings(folder: Path) -> dict | None:
    """The settings the checkpoint in ``folder`` was written under (None: no readable checkpoint); reads the header only."""
    from .checkpoint import checkpoint_meta

    try:
        return checkpoint_meta(Path(folder) / CHECKPOINT).get("settings")
    except (OSError, ValueError, SafetensorError):
        return None


def adopt_checkpoint(current: Path, out_dir: Path, settings: dict, method: str, echo=print) -> None:
    """Start ``out_dir`` (a staging folder) from the files of ``current`` when its checkpoint was written under
    ``settings`` and ``out_dir``'s was not: a finished model is then not retrained, an interrupted one resumes.
    Files are hard-linked, not copied: every write replaces a file by a new one (atomic.py), never edits it."""
    wanted = json.loads(json.dumps(settings, default=str))
    if not ddp.is_main() or checkpoint_settings(out_dir) == wanted:
        return
    used = checkpoint_settings(current)
    if used != wanted:
        if used is not None:
            changed = describe_changes(changed_keys(used, wanted)[:5])
            echo(f"{method}: the settings or inputs changed since {current} was trained ({changed}); training it again")
        return
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    for path in Path(current).iterdir():
        if path.is_file():
            try:
                os.link(path, out_dir / path.name)
            except OSError:  # a file system without hard links
                shutil.copy2(path, out_dir / path.name)


@dataclass
class MethodPlan:
    """Everything that decides which rows each epoch of a method trains on, built one way for `discl train`
    and for the curriculum in another training loop (discl/curriculum_data.py)."""

    pool: RowPool
    curriculum: Curriculum
    sampling: TailSampling | None
    held_out: list[str]
    variants_per_row: int
    select: np.ndarray | None
    epoch_entries: int | None = None  # a fixed-length epoch's entries (train.epoch_length), else None

    def train_data(self, num_classes: int) -> TrainData:
        return TrainData(self.pool.rows, self.pool, self.pool.val, num_classes, variants_per_row=self.variants_per_row,
                         select=self.select, epoch_entries=self.epoch_entries)


def plan_method(run: RunDir, cfg: RunConfig, method: str, inputs: TrainInputs) -> MethodPlan:
    t = cfg.train
    pool, validation, exclude = build_method_data(run, cfg, method, inputs)
    curriculum = create_curriculum(method, t.classifier.epochs, t.levels, t.curriculum_epochs, t.curriculum,
                                   validation=validation, num_classes=len(inputs.classes),
                                   train_rows=(pool.real_positions(), pool.rows.labels[: pool.n_real]),
                                   seed=t.classifier.seed)
    select = {"final": None, "best-val": pool.val, "best-test": pool.test, "best-id-val": pool.test}[t.select]
    variants = task_type(t.task).variants_per_row(cfg)
    entries = epoch_entries(t.epoch_length, pool.n_real * variants, t.classifier.batch_size)
    return MethodPlan(pool, curriculum, tail_sampling(cfg, method), exclude, variants, select, entries)


def plan_settings(cfg: RunConfig, method: str, inputs: TrainInputs, plan: MethodPlan) -> dict:
    """What decides a method's epochs and weights: its settings, input digests and held-out sources. A
    checkpoint (discl's, or a CurriculumData state in another trainer's) is resumed only while they are equal."""
    return method_settings(cfg, method, inputs.train_rows, inputs.digests(method)) | {"held_out": plan.held_out}


def train_method(run: RunDir, cfg: RunConfig, method: str, inputs: TrainInputs, out_dir: Path,
                 echo=print, progress: bool = True, stop_after: int | None = None, callbacks: Sequence[Callback] = (),
                 current: Path | None = None):
    """Train one method into ``out_dir`` (checkpoint, metrics.jsonl, curriculum_log.parquet, log.parquet, model).
    ``callbacks`` (training/callbacks.py) are told of the run's events; train.loggers are added to them.
    ``current``: the folder of the method's model now in use, when ``out_dir`` is where its replacement is built;
    a checkpoint there written under the same settings is taken over (see :func:`adopt_checkpoint`)."""
    t = cfg.train
    plan = plan_method(run, cfg, method, inputs)
    kind = task_type(t.task)
    spec = task_spec(run, cfg, inputs)
    task = kind.build(spec)
    start = kind.before_training(task, cfg)
    settings = plan_settings(cfg, method, inputs, plan)
    if current is not None and t.resume:
        adopt_checkpoint(current, Path(out_dir), settings, method, echo)
        ddp.barrier()  # rank 0 linked the files every rank resumes from
    # Loggers name the run after the method's folder, not the staging folder it is built in.
    callbacks = [*callbacks, *create_loggers(cfg, run, method, Path(current) if current is not None else out_dir)]
    log = train_with_curriculum(task, t.classifier, t, plan.curriculum, plan.train_data(len(inputs.classes)), method,
                                progress, sampling=plan.sampling, out_dir=out_dir, settings=settings, resume=t.resume,
                                stop_after=stop_after, echo=echo, callbacks=callbacks)
    if len(log) < t.classifier.epochs or not ddp.is_main():
        return log, task
    extra = {"method": method, "train": asdict(t), "held_out_sources": plan.held_out, "settings": settings}
    if t.select != "final":
        scores = [row.get("select_acc", float("nan")) for row in log]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # the first epoch of the best accuracy
        extra["selected"] = {"rows": t.select.removeprefix("best-"), "epoch": best + 1, "accuracy": scores[best]}
    kind.save(task, out_dir, spec, extra, start)
    write_table(pd.DataFrame(log), Path(out_dir) / TRAIN_LOG, "train_log")
    return log, task
