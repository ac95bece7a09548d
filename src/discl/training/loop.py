"""The training loop: it asks a curriculum which rows each stage uses, streams their images from disk,
lets adaptive curricula evaluate the model at every stage end, logs every epoch, and checkpoints
(every epoch, and every N steps inside long epochs) so a killed run resumes to the same result.

Per step: this process's slice of the global batch is copied to the device, split into
``accumulate`` micro-batches cut from the global batch (training/microbatch.py: the processes
exchange their counts of readable images first, on the CPU), run under autocast (bf16/fp16; fp16
with a gradient scaler), and the optimiser steps once. Loss and accuracy are summed on the device
and read once per epoch, so the host never waits for the device inside an epoch."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .. import rundir
from ..atomic import atomic_path, atomic_write_text
from ..config import ClassifierConfig, TrainRuntime
from ..curricula import Curriculum, Stage
from ..data.rows import ImageRows
from ..model_cache import changed_keys, describe_changes
from ..seeding import stable_seed
from . import ddp
from .callbacks import Callback, CallbackList, RunInfo
from .checkpoint import DamagedCheckpoint, load_checkpoint, restore, save_checkpoint
from .device import autocast, grad_scaler, resolve_device, rng_states, set_rng_states, to_device
from .microbatch import global_loss_step, no_sync, step_plan, take
from .optim import create_optimizer, lr_at
from .sampling import Keys, TailSampling, epoch_keys
from .stream import ImageStream, Predictions

# The files of a method's folder, named in rundir.py.
CHECKPOINT, METRICS, CURRICULUM_LOG, BEST = rundir.CHECKPOINT, rundir.METRICS_LINES, rundir.CURRICULUM_LOG, rundir.BEST_WEIGHTS
NAMED_SKIPS = 5  # unreadable files named per process in a log line or an error


class SkippedImagesError(ValueError):
    pass


@dataclass
class StageRows:
    """The rows one stage trains on: positions into :attr:`TrainData.rows`."""

    positions: np.ndarray
    n_real: int
    n_synthetic: int
    tail: np.ndarray | None = None  # bool per position: tail images (few-bucket real + synthetic), for tail sampling


@dataclass
class TrainData:
    """Every row a run reads (stage pools and evaluation sets) and how a stage chooses among them."""

    rows: ImageRows
    stage_rows: Callable[[Stage], StageRows]
    val: np.ndarray  # positions of the validation split (val_acc); may be empty
    num_classes: int
    # Each row is listed this many times per epoch, once per variant (FLYP: once per caption template).
    variants_per_row: int = 1
    # Rows whose accuracy picks the epoch whose weights are kept (None: the final epoch's).
    select: np.ndarray | None = None
    # Entries (rows x variants) per epoch: None = one pass over the stage's rows; else a fixed number,
    # drawn from successive passes over the stage's rows, each reshuffled (train.epoch_length = "real").
    epoch_entries: int | None = None


class _Run:
    """Everything a checkpoint must restore, besides model, optimiser and RNG tensors."""

    def __init__(self):
        self.epoch = 0
        self.batch = 0  # global batches done in the current epoch (> 0 only in a mid-epoch checkpoint)
        self.partial: dict = {}  # the current epoch's sums so far, when batch > 0
        self.history: list[Stage] = []
        self.current: Stage | None = None  # the stage in progress
        self.done_in_stage = 0
        self.started = False  # the curriculum has seen the model before training
        self.log: list[dict] = []
        self.curriculum_log: list[dict] = []
        self.best: dict = {}  # {"epoch", "accuracy"} of the selected epoch so far (with TrainData.select)

    def to_json(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "partial": self.partial, "best": self.best,
                "history": [s.to_json() for s in self.history],
                "current": None if self.current is None else self.current.to_json(), "done_in_stage": self.done_in_stage,
                "started": self.started, "log": self.log, "curriculum_log": self.curriculum_log}

    def load(self, d: dict) -> None:
        self.epoch, self.done_in_stage, self.started = d["epoch"], d["done_in_stage"], d["started"]
        self.batch, self.partial, self.best = d.get("batch", 0), d.get("partial", {}), d.get("best", {})
        self.history = [Stage.from_json(s) for s in d["history"]]
        self.current = None if d["current"] is None else Stage.from_json(d["current"])
        self.log, self.curriculum_log = d["log"], d["curriculum_log"]


def _write_json_lines(rows: list[dict], path: Path) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def write_curriculum_log(rows: list[dict], path: Path) -> None:
    from ..tables import write_table

    frame = pd.DataFrame(rows, columns=["method", "stage", "epoch", "used", "class_label", "level", "progress",
                                        "smoothed", "n_images", "n_outliers", "chosen"])
    write_table(frame, path, "curriculum_log")


class Trainer:
    """One method's training run; :func:`train_with_curriculum` is the way in."""

    def __init__(self, task, optim: ClassifierConfig, runtime: TrainRuntime, curriculum: Curriculum, data: TrainData,
                 method: str, *, progress: bool = True, sampling: TailSampling | None = None, out_dir: Path | None = None,
                 settings: dict | None = None, echo=None, device_key: str = "train.device", callbacks: Sequence[Callback] = ()):
        if runtime.accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {runtime.accumulate}")
        if runtime.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {runtime.eval_every}")
        ddp.check_batch(optim.batch_size, "batch_size")
        self.task, self.optim, self.runtime, self.curriculum, self.data = task, optim, runtime, curriculum, data
        self.method, self.progress, self.sampling, self.echo = method, progress, sampling, echo or (lambda *_: None)
        self.seed = optim.seed
        self.device = resolve_device(runtime.device, device_key)
        task.to(self.device)
        if runtime.channels_last:
            task.module.to(memory_format=torch.channels_last)
        if runtime.sync_batchnorm:
            task.module = ddp.sync_batch_norm(task.module, self.device)
        # BatchNorm cannot normalise one image's values (at a 1x1 feature map it refuses): a batch with a
        # single readable image is not trained on, nor, where each process normalises its own share, a
        # process's single image of a micro-batch (training/microbatch.py).
        norm = ddp.has_batch_norm(task.module)
        self.min_images = 2 if norm else 1
        self.min_per_process = 2 if norm and ddp.active() and not runtime.sync_batchnorm else 1
        self.ddp_net = ddp.wrap(task.module, self.device)
        task.net = torch.compile(self.ddp_net) if runtime.compile else self.ddp_net
        self.optimizer = create_optimizer(optim.optimizer, task.module.parameters(), optim.lr, optim.weight_decay, optim.momentum)
        self.scaler = grad_scaler(self.device, runtime.precision)
        self.stream = ImageStream(data.rows, task.transforms, runtime, self.device,
                                  augment=curriculum.augment, seed=stable_seed("loader", self.seed))
        self.state = _Run()
        self.settings = json.loads(json.dumps(settings or {}, default=str))
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint = self.out_dir / CHECKPOINT if self.out_dir is not None else None
        self.callbacks = CallbackList(callbacks)

    # -- resume and save
    def resume(self) -> None:
        if self.checkpoint is None or not self.checkpoint.exists():
            return
        try:
            tensors, meta = load_checkpoint(self.checkpoint)
        except DamagedCheckpoint as err:
            self.echo(f"warning: {self.method}: {err}; training from the start")
            return
        if meta.get("settings") != self.settings:
            changed = describe_changes(changed_keys(meta.get("settings") or {}, self.settings)[:5])
            self.echo(f"{self.method}: the settings changed since {self.checkpoint} was written ({changed}); "
                      "training from the start")
            return
        set_rng_states(restore(tensors, meta, self.task.module, self.optimizer), self.device)
        self.state.load(meta["run"])
        if meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        if meta.get("curriculum") is not None:  # None: a curriculum without state (CurriculumBase)
            self.curriculum.load_state_dict(meta["curriculum"])
        if 0 < self.state.epoch < self.optim.epochs or self.state.batch:
            where = f" and {self.state.batch} steps" if self.state.batch else ""
            self.echo(f"{self.method}: resuming after epoch {self.state.epoch}{where} of {self.optim.epochs} ({self.checkpoint})")

    def save(self) -> None:
        if self.checkpoint is None or self.out_dir is None or not ddp.is_main():  # both set or neither
            return
        save_checkpoint(self.checkpoint, self.task.module, self.optimizer, rng_states(self.device),
                        {"settings": self.settings, "run": self.state.to_json(), "curriculum": self.curriculum.state_dict(),
                         "scaler": self.scaler.state_dict()})
        _write_json_lines(self.state.log, self.out_dir / METRICS)
        write_curriculum_log(self.state.curriculum_log, self.out_dir / CURRICULUM_LOG)
        self.callbacks.on_checkpoint(self.checkpoint, self.state.epoch, self.state.batch)

    # -- evaluation
    def evaluate(self, positions: np.ndarray, strengths: np.ndarray | None = None, draw_seed: int = 0) -> Predictions:
        """Evaluation-mode predictions on rows of :attr:`TrainData.rows` (what curricula call)."""
        result = self.stream.predict([self.task], positions, strengths, draw_seed)[0]
        self._check_skipped(int((~result.decoded).sum()), len(positions), np.asarray(positions)[~result.decoded],
                            "an evaluation")
        return result

    def _check_skipped(self, skipped: int, total: int, rows: np.ndarray, what: str) -> None:
        if not skipped:
            return
        names = sorted(self.data.rows.paths(rows[:NAMED_SKIPS]))
        message = f"{skipped} of {total} images of {what} could not be read, e.g. {', '.join(names)}"
        if total and skipped / total > self.runtime.max_skipped_fraction:
            raise SkippedImagesError(f"{self.method}: {message}; that is more than max_skipped_fraction "
                                     f"({self.runtime.max_skipped_fraction:g}): fix or remove those files")
        self.echo(f"warning: {self.method}: {message}; skipped")

    # -- one epoch
    def _keys(self, stage: Stage, rows: StageRows) -> Keys:
        keys = epoch_keys(stage, rows, self.seed, self.state.epoch, self.sampling, self.data.variants_per_row,
                          self.data.rows.labels, self.data.num_classes, self.data.epoch_entries)
        self.task.set_epoch_counts(torch.from_numpy(np.bincount(self.data.rows.labels[keys.rows],
                                                                minlength=self.data.num_classes)))
        return keys

    def _step(self, batch, n_global: int, sums: torch.Tensor) -> int:
        """One optimiser step on a global batch of ``n_global`` images; returns the images this process trained on."""
        x, y, _, decoded, variants, real = batch
        plan = step_plan(decoded & real, n_global, ddp.rank(), ddp.world_size(), self.runtime.accumulate,
                         self.min_images, self.min_per_process)
        if plan is None:  # too few readable images in the whole batch: no process steps
            return 0
        x = to_device(x, self.device, self.runtime.channels_last)
        y, variants = y.to(self.device, non_blocking=True), variants.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        if self.task.loss_is_global:
            global_loss_step(self.task, self.ddp_net, plan, x, y, variants, self.runtime.precision, self.scaler, sums)
        else:
            for i, mine in enumerate(plan.micro):
                # ddp_net is a DistributedDataParallel exactly when ddp.active(): only the last micro-batch syncs.
                with no_sync(self.ddp_net, i < len(plan.micro) - 1):
                    with autocast(self.device, self.runtime.precision):
                        loss, logits = self.task.loss(take(x, mine), take(y, mine), take(variants, mine))
                    if len(mine):
                        # Weighted by its share of the global batch, so DDP's average over processes and the sum
                        # over micro-batches give the gradient of the global batch's mean loss.
                        self.scaler.scale(loss * (len(mine) * plan.world / plan.n_images)).backward()
                        sums[0] += loss.detach().float() * len(mine)
                        sums[1] += (logits.detach().argmax(-1) == take(y, mine)).sum()
                    else:  # no image of this micro-batch here: zero gradients, so DDP's reduction still runs
                        self.scaler.scale(logits.sum() * 0.0).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return plan.n_local

    def _epoch(self, stage: Stage, rows: StageRows, stop_after_steps: int | None) -> bool:
        """Train one epoch (or its rest, after a mid-epoch resume); False when stopped early."""
        keys = self._keys(stage, rows)
        batch_size = self.optim.batch_size
        n_batches = -(-len(keys) // batch_size)
        partial = self.state.partial if self.state.batch else {}
        # Device-side sums (loss, correct) and host-side counts (seen, skipped): no host sync per step.
        sums = torch.tensor([partial.get("loss_sum", 0.0), partial.get("correct", 0.0)], dtype=torch.float32, device=self.device)
        seen, skipped = int(partial.get("seen", 0)), int(partial.get("skipped", 0))
        trained = int(partial.get("trained", seen))  # readable images a step trained on (see _step)
        bad_rows: list[int] = list(partial.get("skipped_rows", []))
        elapsed = float(partial.get("seconds", 0.0))
        start = time.perf_counter()
        self.task.module.train()
        bar = tqdm(total=n_batches, initial=self.state.batch, desc=f"{self.method} epoch {self.state.epoch + 1}",
                   disable=not self.progress or not ddp.is_main(), leave=False, unit="step")
        lr = self.optim.lr
        for batch in self.stream.batches(keys, batch_size, self.state.batch):
            b = self.state.batch
            lr = lr_at(self.state.epoch, b, n_batches, self.optim.epochs, self.optim.lr, self.optim.warmup_epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            _, _, rows_b, decoded, _, real = batch
            failed = real & ~decoded
            if failed.any():
                skipped += int(failed.sum())
                bad_rows += rows_b[failed].tolist()[: NAMED_SKIPS - len(bad_rows)] if len(bad_rows) < NAMED_SKIPS else []
            seen += int((real & decoded).sum())
            trained += self._step(batch, min(batch_size, len(keys) - b * batch_size), sums)
            self.state.batch += 1
            self.steps += 1
            bar.update(1)
            every = self.runtime.checkpoint_every_steps
            stop = stop_after_steps is not None and self.steps >= stop_after_steps
            if self.state.batch < n_batches and ((every and self.state.batch % every == 0) or stop):
                self.state.partial = {"loss_sum": float(sums[0]), "correct": float(sums[1]), "seen": seen, "trained": trained,
                                      "skipped": skipped, "skipped_rows": bad_rows,
                                      "seconds": elapsed + time.perf_counter() - start}
                self.save()
                if stop:
                    bar.close()
                    return False
        bar.close()
        counts = torch.tensor([seen, skipped, trained], dtype=torch.float64, device=self.device)
        loss_sum, correct, seen_all, skipped_all, trained_all = ddp.all_reduce_sum(torch.cat([sums.double(), counts])).tolist()
        bad = ddp.all_gather_rows(torch.tensor(bad_rows, dtype=torch.int64, device=self.device), NAMED_SKIPS).cpu().numpy()
        self._check_skipped(int(skipped_all), int(seen_all + skipped_all), bad, f"epoch {self.state.epoch + 1}")
        ddp.sync_buffers(self.task.module)
        self.state.batch, self.state.partial = 0, {}
        self.epoch_sums = {"loss": loss_sum / max(1.0, trained_all), "acc": correct / max(1.0, trained_all),
                           "seen": int(seen_all), "skipped": int(skipped_all),
                           "seconds": elapsed + time.perf_counter() - start, "lr": lr}
        return True

    # -- the run
    def run(self, stop_after: int | None = None, stop_after_steps: int | None = None) -> list[dict]:
        state = self.state
        self.callbacks.on_train_start(RunInfo(self.method, self.optim.epochs, self.settings, state.epoch, self.out_dir))
        if self.curriculum.evaluates and not state.started:
            self._record(self.curriculum.observe(self.evaluate), -1, "start")
            self.callbacks.on_stage_end(-1, None, self.state.curriculum_log)
        state.started = True
        total = self.optim.epochs
        bar = tqdm(total=total, initial=state.epoch, desc=f"train {self.method}", leave=False,
                   disable=not self.progress or not ddp.is_main())
        epochs_this_call = 0
        self.steps = 0
        try:
            while state.epoch < total and (stop_after is None or epochs_this_call < stop_after):
                if state.current is None:
                    state.current = self.curriculum.next_stage(state.history)
                    state.done_in_stage = 0
                    if state.current is None:
                        break
                    self.callbacks.on_stage_start(len(state.history), state.current, state.epoch)
                stage = state.current
                rows = self.data.stage_rows(stage)
                if len(rows.positions) == 0:
                    raise ValueError(f"{self.method}: stage {len(state.history)} ({stage.describe()}) has no training image")
                counts = np.bincount(self.data.rows.labels[rows.positions], minlength=self.data.num_classes)
                self.task.set_stage_counts(torch.from_numpy(counts))
                if not self._epoch(stage, rows, stop_after_steps):
                    break
                self._end_of_epoch(stage, rows)
                epochs_this_call += 1
                bar.update(1)
                bar.set_postfix(stage=stage.describe()[:20], val_acc=f"{state.log[-1]['val_acc']:.3f}")
                self.save()
                if stop_after_steps is not None and self.steps >= stop_after_steps:
                    break
            if state.epoch >= total:
                self._keep_selected()
                self.callbacks.on_train_end(state.log)
        finally:
            bar.close()
            self.stream.close()
            self.callbacks.close()
        return state.log

    def _end_of_epoch(self, stage: Stage, rows: StageRows) -> None:
        state, sums = self.state, self.epoch_sums
        last = state.epoch + 1 >= self.optim.epochs
        val_acc = float("nan")
        if len(self.data.val) and ((state.epoch + 1) % self.runtime.eval_every == 0 or last):
            val_acc = self.evaluate(self.data.val).accuracy(self.data.rows.labels[self.data.val])
        state.log.append({
            "method": self.method, "epoch": state.epoch, "stage": len(state.history),
            "level": -1 if stage.level is None else stage.level, "levels": stage.describe(),
            "n_real": rows.n_real, "n_synthetic": rows.n_synthetic, "n_seen": sums["seen"], "n_skipped": sums["skipped"],
            "lr": sums["lr"], "train_loss": sums["loss"], "train_acc": sums["acc"], "val_acc": val_acc,
            "seconds": sums["seconds"], "eval_seconds": 0.0,
        })
        if self.data.select is not None:
            self._select(self.data.select)
        state.epoch += 1
        state.done_in_stage += 1
        ended = state.done_in_stage >= stage.epochs or state.epoch >= self.optim.epochs
        records: list[dict] = []
        if ended:
            t0 = time.perf_counter()
            records = self.curriculum.observe(self.evaluate)  # CurriculumBase: one NOT_OBSERVED row
            state.log[-1]["eval_seconds"] = time.perf_counter() - t0
            self._record(records, len(state.history), stage.describe())
        self.callbacks.on_epoch_end(state.log[-1])
        if ended:
            self.callbacks.on_stage_end(len(state.history), stage, state.curriculum_log[len(state.curriculum_log) - len(records):])
            state.history.append(stage)
            state.current = None

    # -- which epoch's weights are kept
    def _best_path(self) -> Path | None:
        return self.out_dir / BEST if self.out_dir is not None else None

    def _select(self, select: np.ndarray) -> None:
        """Keep this epoch's weights when its accuracy on the selection rows is the best so far."""
        accuracy = self.evaluate(select).accuracy(self.data.rows.labels[select])
        self.state.log[-1]["select_acc"] = accuracy
        if self.state.best and not accuracy > self.state.best["accuracy"]:
            return
        self.state.best = {"epoch": self.state.epoch, "accuracy": accuracy}
        weights = {k: v.detach().cpu().contiguous() for k, v in self.task.module.state_dict().items()}
        path = self._best_path()
        if path is None:
            self._best_weights = weights
        elif ddp.is_main():
            with atomic_path(path) as tmp:
                save_file(weights, str(tmp))

    def _keep_selected(self) -> None:
        if self.data.select is None or not self.state.best:
            return
        path = self._best_path()
        ddp.barrier()  # rank 0 wrote the file
        weights = load_file(str(path)) if path is not None else self._best_weights
        self.task.module.load_state_dict(weights)
        self.echo(f"{self.method}: keeping the weights of epoch {self.state.best['epoch'] + 1} "
                  f"(selection accuracy {100 * self.state.best['accuracy']:.2f}%)")

    def _record(self, rows: list[dict], stage_index: int, used: str) -> None:
        self.state.curriculum_log += [{"method": self.method, "stage": stage_index, "epoch": self.state.epoch,
                                       "used": used, **r} for r in rows]


def train_with_curriculum(task, optim: ClassifierConfig, runtime: TrainRuntime, curriculum: Curriculum, data: TrainData,
                          method: str, progress: bool = True, *, sampling: TailSampling | None = None,
                          out_dir: Path | None = None, settings: dict | None = None, resume: bool = True,
                          stop_after: int | None = None, stop_after_steps: int | None = None, echo=None,
                          device_key: str = "train.device", callbacks: Sequence[Callback] = ()) -> list[dict]:
    """Train ``task`` (training/tasks.py) in place for ``optim.epochs`` epochs; return one log row per epoch.

    With ``out_dir``: checkpoint.safetensors and metrics.jsonl are written after every epoch (and every
    ``runtime.checkpoint_every_steps`` steps) and curriculum_log.parquet with them; a checkpoint whose
    ``settings`` match is resumed from. ``stop_after`` ends this call after that many epochs and
    ``stop_after_steps`` after that many steps (the checkpoint lets a later call go on). ``echo`` (optional)
    is told when a checkpoint is resumed from or set aside, and about unreadable images. ``device_key`` names
    the device setting in errors. ``callbacks`` (training/callbacks.py) are told of the run's events."""
    trainer = Trainer(task, optim, runtime, curriculum, data, method, progress=progress, sampling=sampling,
                      out_dir=out_dir, settings=settings, echo=echo, device_key=device_key, callbacks=callbacks)
    if resume:
        trainer.resume()
    return trainer.run(stop_after, stop_after_steps)
