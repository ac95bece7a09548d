"""Stage `train`: the task model for each method (baselines and DisCL curricula), resumable."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from ..config import RunConfig
from ..curricula import CurriculumValidation, Stage, create_curriculum, uses_synthetic, uses_validation
from ..data import load_dataset_tables, load_split
from ..data.images import load_images
from ..rundir import RunDir
from ..seeding import stable_seed
from ..tables import read_table, write_table
from ..training.classifier import create_classifier, save_classifier
from ..training.loop import StageData, TailSampling, train_with_curriculum
from ..training import ddp
from ..training.tasks import ClassifierTask
from .common import fingerprint


def kept_synthetic(run: RunDir) -> pd.DataFrame:
    """Synthetic images that passed the filter, with their image-guidance level."""
    synthetic = read_table(run.synthetic, "synthetic")
    scores = read_table(run.scores, "scores")
    kept = scores.loc[scores["kept"], ["synthetic_id"]]
    return synthetic.merge(kept, on="synthetic_id", how="inner")


def validation_sources(synthetic: pd.DataFrame, levels: list[int], n_sources: int, seed: int) -> list[str]:
    """Sources whose kept spectrum covers every candidate level below 100 (level 100 is the real image
    itself), ``n_sources`` of them picked by a stable hash so the choice is the same in every process."""
    wanted = {lv for lv in levels if lv < 100}
    have = synthetic.groupby("source_id")["image_guidance"].agg(lambda s: set(s.tolist()))
    full = sorted(src for src, got in have.items() if wanted <= got)
    return sorted(full, key=lambda src: stable_seed("curriculum-validation", seed, src))[:n_sources]


def build_validation(run: RunDir, cfg: RunConfig, synthetic: pd.DataFrame, train_rows: pd.DataFrame,
                     levels: list[int], sources: list[str]) -> CurriculumValidation:
    """One image per (source, level): the kept synthetic image of the lowest grid seed; the real source at 100."""
    rows = synthetic[synthetic["source_id"].isin(sources) & synthetic["image_guidance"].isin(levels)]
    rows = rows.sort_values(["source_id", "image_guidance", "seed"]).drop_duplicates(["source_id", "image_guidance"])
    paths, labels, lvls, ids = list(rows["path"]), list(rows["label"]), list(rows["image_guidance"]), list(rows["source_id"])
    if 100 in levels:
        real = train_rows[train_rows["sample_id"].isin(sources)].sort_values("sample_id")
        paths += list(real["path"]); labels += list(real["label"]); lvls += [100] * len(real); ids += list(real["sample_id"])
    if not paths:
        raise ValueError("the curriculum validation set is empty: no source has kept synthetic images at every level "
                         f"{levels}; lower train.curriculum.val_sources or the levels, or keep more images in `score`")
    return CurriculumValidation(load_images([run.resolve(p) for p in paths], cfg.data.image_size),
                                torch.tensor(labels, dtype=torch.long), torch.tensor(lvls, dtype=torch.long), ids)


class StageDataBuilder:
    """Stage -> StageData: the real training images (minus excluded sources) plus the kept synthetic
    images of the stage's level(s); cached per distinct data."""

    def __init__(self, run: RunDir, cfg: RunConfig, real_rows: pd.DataFrame, real: tuple[torch.Tensor, torch.Tensor],
                 few_labels: set[int], synthetic: pd.DataFrame | None, exclude: list[str] = ()):
        keep = ~real_rows["sample_id"].isin(set(exclude)).to_numpy()
        self.run, self.size = run, cfg.data.image_size
        self.real = (real[0][keep], real[1][keep])
        self.real_tail = torch.tensor([int(y) in few_labels for y in self.real[1]], dtype=torch.bool)
        self.synthetic = None if synthetic is None else synthetic[~synthetic["source_id"].isin(set(exclude))]
        self._images: dict[str, torch.Tensor] = {}
        self._cache: dict[tuple, StageData] = {}

    def _synthetic_rows(self, stage: Stage) -> pd.DataFrame | None:
        if self.synthetic is None:
            return None
        if stage.class_levels:
            pairs = pd.DataFrame(stage.class_levels, columns=["label", "image_guidance"])
            return self.synthetic.merge(pairs, on=["label", "image_guidance"], how="inner")
        return self.synthetic[self.synthetic["image_guidance"].isin(stage.synthetic_levels())]

    def __call__(self, stage: Stage) -> StageData:
        key = (stage.synthetic_levels(), stage.class_levels)
        if key not in self._cache:
            rows = self._synthetic_rows(stage)
            if rows is None or rows.empty:
                self._cache[key] = StageData(self.real[0], self.real[1], len(self.real[1]), 0, self.real_tail)
            else:
                missing = [p for p in rows["path"] if p not in self._images]
                if missing:
                    self._images.update(zip(missing, load_images([self.run.resolve(p) for p in missing], self.size)))
                images = torch.stack([self._images[p] for p in rows["path"]])
                labels = torch.from_numpy(rows["label"].to_numpy(dtype="int64", copy=True))
                tail = torch.cat([self.real_tail, torch.ones(len(rows), dtype=torch.bool)])
                self._cache[key] = StageData(torch.cat([self.real[0], images]), torch.cat([self.real[1], labels]),
                                             len(self.real[1]), len(rows), tail)
        return self._cache[key]


@dataclass
class TrainInputs:
    """What every method of a run trains and validates on, loaded once."""

    classes: pd.DataFrame
    train_rows: pd.DataFrame
    real: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    synthetic: pd.DataFrame | None

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
    real = load_split(run, train_rows, cfg.data.image_size)
    val = load_split(run, dataset[dataset["split"] == "val"], cfg.data.image_size)
    synthetic = kept_synthetic(run) if any(uses_synthetic(m) for m in methods) else None
    if synthetic is not None:
        present = set(synthetic["image_guidance"])
        missing = [lv for lv in cfg.train.levels if lv != 100 and lv not in present]
        if missing:
            echo(f"warning: no kept synthetic image at levels {missing}; those stages train on real data only")
    return TrainInputs(classes, train_rows, real, val, synthetic)


def make_task(run: RunDir, cfg: RunConfig, inputs: TrainInputs):
    """The task model at its starting weights (weights loaded at the edge, by name)."""
    t = cfg.train
    if t.task == "classifier":
        model = create_classifier(t.classifier.model, len(inputs.classes), t.classifier.seed, t.classifier.pretrained)
        return ClassifierTask(model, t.classifier.loss, inputs.class_counts, t.classifier.bs_prior)
    if t.task == "flyp":
        from ..training.flyp import FlypTask, create_open_clip

        if t.flyp.model == "demo":
            from ..scoring.tiny_clip import load_tiny_clip
            from .score import scorer_dir

            scorer = load_tiny_clip(scorer_dir(run))
        else:
            scorer = create_open_clip(t.flyp.model, t.flyp.pretrained)
        torch.manual_seed(t.classifier.seed)
        return FlypTask(scorer, list(inputs.classes.sort_values("label")["class_name"]), t.flyp.templates)
    raise ValueError(f"unknown train.task {t.task!r}; known: ['classifier', 'flyp']")


def train_method(run: RunDir, cfg: RunConfig, method: str, inputs: TrainInputs, out_dir: Path,
                 echo=print, progress: bool = True, stop_after: int | None = None) -> tuple[list[dict], object]:
    """Train one method into ``out_dir`` (checkpoint, metrics.jsonl, curriculum_log.parquet, log.parquet, model)."""
    t = cfg.train
    validation, exclude = None, []
    if uses_validation(method):
        if inputs.synthetic is None:
            raise ValueError(f"{method} needs synthetic images: run generate and score first")
        candidates = sorted({lv for lv in t.levels if lv >= t.curriculum.min_level})
        exclude = validation_sources(inputs.synthetic, candidates, t.curriculum.val_sources, t.classifier.seed)
        validation = build_validation(run, cfg, inputs.synthetic, inputs.train_rows, candidates, exclude)
    builder = StageDataBuilder(run, cfg, inputs.train_rows, inputs.real, inputs.few_labels,
                               inputs.synthetic if uses_synthetic(method) else None, exclude)
    curriculum = create_curriculum(method, t.classifier.epochs, t.levels, t.curriculum_epochs, t.curriculum,
                                   validation=validation, num_classes=len(inputs.classes),
                                   train_data=builder.real, seed=t.classifier.seed)
    task = make_task(run, cfg, inputs)
    zero_shot = {k: v.clone() for k, v in task.module.state_dict().items()} if t.task == "flyp" and t.flyp.wise_alpha is not None else None
    sampling = TailSampling(t.curriculum.non_tail_ratio, t.curriculum.tail_fraction) if t.curriculum.tail_sampling else None
    settings = {"method": method, "train": asdict(t), "image_size": cfg.data.image_size,
                "data": fingerprint(inputs.train_rows["sample_id"]), "held_out": exclude}
    log = train_with_curriculum(task, t.classifier, curriculum, builder, inputs.val, method, progress,
                                sampling=sampling, out_dir=out_dir, settings=settings, resume=t.resume, stop_after=stop_after,
                                echo=echo)
    if len(log) < t.classifier.epochs or not ddp.is_main():
        return log, task
    extra = {"method": method, "train": asdict(t), "held_out_sources": exclude}
    if t.task == "flyp":
        from ..training.flyp import save_flyp, wise_ft

        if zero_shot is not None:
            task.module.load_state_dict(wise_ft(zero_shot, task.module.state_dict(), t.flyp.wise_alpha))
        if t.flyp.model == "demo":
            from .score import scorer_dir

            shutil.copy(scorer_dir(run) / "discl-tiny-clip.json", Path(out_dir) / "discl-tiny-clip.json")
        save_flyp(task, out_dir, t.flyp.model, extra)
    else:
        save_classifier(task.module, out_dir, t.classifier.model, len(inputs.classes), extra)
    write_table(pd.DataFrame(log), Path(out_dir) / "log.parquet", "train_log")
    return log, task


def run_train(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> pd.DataFrame:
    t = cfg.train
    inputs = load_inputs(run, cfg, t.methods, echo)
    logs = []
    for method in t.methods:
        log, _ = train_method(run, cfg, method, inputs, run.method_dir(method), echo, progress)
        logs.append(pd.DataFrame(log))
        echo(f"train {method}: {len(log)} epochs, final val accuracy {100 * log[-1]['val_acc']:.2f}%")
    return pd.concat(logs, ignore_index=True)
