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
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from safetensors import SafetensorError

from ..config import RunConfig
from ..curricula import CurriculumValidation, create_curriculum, uses_synthetic, uses_validation
from ..data import load_dataset_tables
from ..model_cache import changed_keys, describe_changes, input_digests, method_settings
from ..rundir import CHECKPOINT, TRAIN_LOG, RunDir
from ..scoring.run_scorer import scores_match
from ..seeding import stable_seed
from ..tables import read_table, write_table
from . import ddp
from .classifier import create_classifier, save_classifier
from .loop import TrainData, train_with_curriculum
from .pool import RowPool
from .sampling import TailSampling
from .tasks import ClassifierTask
from .transforms import classifier_transforms


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


def validation_rows(synthetic: pd.DataFrame, train_rows: pd.DataFrame, levels: list[int], sources: list[str]) -> pd.DataFrame:
    """One row per (source, level): the kept synthetic image of the lowest grid seed; the real source at 100.
    Columns: path, label, image_guidance, source_id."""
    rows = synthetic[synthetic["source_id"].isin(sources) & synthetic["image_guidance"].isin(levels)]
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
    test_rows: pd.DataFrame | None = None  # only for train.select = "best-test"
    hard_ids: set[str] | None = None  # only for train.curriculum.stage_real = "non-hard"
    hard_set: set[str] | None = None  # the hard samples (hard.parquet), recorded with methods that use synthetic images

    def digests(self, method: str) -> dict[str, str]:
        """The digests of what ``method`` trains on (model_cache.input_digests): a real-only method's
        depend on the real rows only, so a new filter or hard set leaves it current."""
        synthetic = self.synthetic if uses_synthetic(method) else None
        return input_digests(self.train_rows, synthetic, self.hard_set)

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
    test_rows = dataset[dataset["split"] == "test"].reset_index(drop=True) if cfg.train.select == "best-test" else None
    if test_rows is not None and test_rows.empty:
        raise ValueError("train.select = best-test needs a test split, and this dataset has none")
    hard_ids, hard_set = None, None
    if synthetic is not None:
        hard = read_table(run.hard, "hard") if run.hard.exists() else None
        hard_set = set(hard["sample_id"]) if hard is not None else set(synthetic["source_id"])
        if cfg.train.curriculum.stage_real == "non-hard":
            hard_ids = hard_set
    return TrainInputs(classes, train_rows, val_rows, synthetic, test_rows, hard_ids, hard_set)


def tail_sampling(cfg: RunConfig, method: str) -> TailSampling | None:
    """The epoch sampler of a method: tail sampling where train.curriculum.tail_sampling asks for it."""
    c = cfg.train.curriculum
    if c.tail_sampling == "none" or (c.tail_sampling == "curricula" and not uses_synthetic(method)):
        return None
    return TailSampling(c.non_tail_ratio, c.tail_fraction, c.tail_rule)


def make_task(run: RunDir, cfg: RunConfig, inputs: TrainInputs):
    """The task model at its starting weights (weights loaded at the edge, by name), with its transforms."""
    t = cfg.train
    if t.task == "classifier":
        model = create_classifier(t.classifier.model, len(inputs.classes), t.classifier.seed, t.classifier.pretrained)
        transforms = classifier_transforms(model, t.classifier.augment, cfg.data.image_size)
        return ClassifierTask(model, transforms, t.classifier.loss, inputs.class_counts, t.classifier.bs_prior)
    if t.task == "flyp":
        from .flyp import FlypTask, create_open_clip

        if t.flyp.model == "demo":
            from ..scoring.tiny_clip import load_tiny_clip

            scorer = load_tiny_clip(run.scorer_model)
        else:
            scorer = create_open_clip(t.flyp.model, t.flyp.pretrained)
        torch.manual_seed(t.classifier.seed)
        return FlypTask(scorer, list(inputs.classes.sort_values("label")["class_name"]), t.flyp.templates)
    raise ValueError(f"unknown train.task {t.task!r}; known: ['classifier', 'flyp']")


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
        extra = validation_rows(inputs.synthetic, inputs.train_rows, candidates, exclude)
    held = set(exclude)
    real = inputs.train_rows[~inputs.train_rows["sample_id"].isin(held)]
    synthetic = inputs.synthetic if uses_synthetic(method) else None
    if synthetic is not None:
        synthetic = synthetic[~synthetic["source_id"].isin(held)]
    hard_real = None
    if inputs.hard_ids is not None and synthetic is not None:
        hard_real = real["sample_id"].isin(inputs.hard_ids).to_numpy()
    pool = RowPool(run, real, synthetic, inputs.val_rows, inputs.few_labels, extra, inputs.test_rows, hard_real)
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


def train_method(run: RunDir, cfg: RunConfig, method: str, inputs: TrainInputs, out_dir: Path,
                 echo=print, progress: bool = True, stop_after: int | None = None, current: Path | None = None):
    """Train one method into ``out_dir`` (checkpoint, metrics.jsonl, curriculum_log.parquet, log.parquet, model).
    ``current``: the folder of the method's model now in use, when ``out_dir`` is where its replacement is built;
    a checkpoint there written under the same settings is taken over (see :func:`adopt_checkpoint`)."""
    t = cfg.train
    pool, validation, exclude = build_method_data(run, cfg, method, inputs)
    curriculum = create_curriculum(method, t.classifier.epochs, t.levels, t.curriculum_epochs, t.curriculum,
                                   validation=validation, num_classes=len(inputs.classes),
                                   train_rows=(pool.real_positions(), pool.rows.labels[: pool.n_real]),
                                   seed=t.classifier.seed)
    task = make_task(run, cfg, inputs)
    zero_shot = {k: v.clone() for k, v in task.module.state_dict().items()} if t.task == "flyp" and t.flyp.wise_alpha is not None else None
    sampling = tail_sampling(cfg, method)
    settings = method_settings(cfg, method, inputs.train_rows, inputs.digests(method)) | {"held_out": exclude}
    if current is not None and t.resume:
        adopt_checkpoint(current, Path(out_dir), settings, method, echo)
        ddp.barrier()  # rank 0 linked the files every rank resumes from
    variants = len(t.flyp.templates) if t.task == "flyp" and t.flyp.rows_per_template else 1
    select = {"final": None, "best-val": pool.val, "best-test": pool.test}[t.select]
    data = TrainData(pool.rows, pool, pool.val, len(inputs.classes), variants_per_row=variants, select=select)
    log = train_with_curriculum(task, t.classifier, t, curriculum, data, method, progress, sampling=sampling,
                                out_dir=out_dir, settings=settings, resume=t.resume, stop_after=stop_after, echo=echo)
    if len(log) < t.classifier.epochs or not ddp.is_main():
        return log, task
    extra = {"method": method, "train": asdict(t), "held_out_sources": exclude, "settings": settings}
    if t.select != "final":
        scores = [row.get("select_acc", float("nan")) for row in log]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # the first epoch of the best accuracy
        extra["selected"] = {"rows": t.select.removeprefix("best-"), "epoch": best + 1, "accuracy": scores[best]}
    if t.task == "flyp":
        from .flyp import save_flyp, wise_ft

        if zero_shot is not None and t.flyp.wise_alpha is not None:  # (zero_shot is kept only for WiSE-FT)
            finetuned = task.module.state_dict()
            device = next(iter(finetuned.values())).device
            task.module.load_state_dict(wise_ft({k: v.to(device) for k, v in zero_shot.items()}, finetuned, t.flyp.wise_alpha))
        files = None
        if t.flyp.model == "demo":  # the tiny CLIP's architecture file, which its loader reads by name
            from ..scoring.tiny_clip import architecture_files

            files = architecture_files(task.scorer)
        save_flyp(task, out_dir, t.flyp.model, extra, files)
    else:
        save_classifier(task.module, out_dir, t.classifier.model, len(inputs.classes), task.transforms, extra)
    write_table(pd.DataFrame(log), Path(out_dir) / TRAIN_LOG, "train_log")
    return log, task
