"""One DataLoader per process for everything it reads: training batches and evaluation passes.

The loader's worker processes decode the files (training/dataset.py); its batch sampler
(training/sampling.py) is re-planned between passes, so the workers are started once and live
for the whole run (persistent workers) whatever the curriculum does. On a GPU the batches come
in pinned memory and are copied without blocking.

Evaluation (:meth:`ImageStream.predict`) is sharded like training: each process predicts its
slice of the rows and the results are gathered, so every process ends with the same full
predictions (curriculum decisions then agree everywhere)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import DeviceConfig
from ..data.rows import ImageRows
from . import ddp
from .dataset import Augment, ImageDataset
from .device import autocast, to_device
from .sampling import Keys, RankBatches, rank_positions
from .transforms import Transforms


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_workers(num_workers: int | None, n_rows: int | None = None) -> int:
    """DataLoader workers of this process: as given, or the usable cores shared by the processes torchrun
    started on this machine. A count given above what can be used (more than this process's share of the
    cores, or than there are rows to read) is lowered to it, with one line saying so."""
    share = max(1, usable_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if num_workers is None:
        return share if n_rows is None else max(0, min(share, n_rows))
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    cap = share if n_rows is None else max(0, min(share, n_rows))
    if num_workers > cap:
        message = (f"note: {num_workers} data loader workers asked for; using {cap} ({share} usable cores per process"
                   + (f", {n_rows} rows to read" if n_rows is not None else "") + ")")
        if message not in _said:
            _said.add(message)
            print(message, file=sys.stderr)
        return cap
    return num_workers


_said: set[str] = set()  # notes already printed by this process


@dataclass
class Predictions:
    """Per row, in the order asked: top-1 class, probability of the true class, and whether the file
    could be read (rows that could not have pred -1 and p_true NaN)."""

    pred: np.ndarray
    p_true: np.ndarray
    decoded: np.ndarray

    def accuracy(self, labels: np.ndarray) -> float:
        ok = self.decoded
        return float((self.pred[ok] == np.asarray(labels)[ok]).mean()) if ok.any() else float("nan")


class ImageStream:
    def __init__(self, rows: ImageRows, transforms: Transforms, runtime: DeviceConfig, device: torch.device,
                 augment: Augment | None = None, seed: int = 0):
        self.rows, self.device, self.runtime = rows, device, runtime
        self.dataset = ImageDataset(rows, transforms, augment)
        self.sampler = RankBatches(ddp.rank(), ddp.world_size())
        workers = resolve_workers(runtime.num_workers, len(rows))
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=self.sampler, num_workers=workers, pin_memory=device.type == "cuda",
            persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
            # The loader draws its workers' base seed from this generator, not from the global RNG,
            # so the main process's random streams do not depend on the number of workers.
            generator=torch.Generator().manual_seed(seed),
        )

    def batches(self, keys: Keys, batch_size: int, start_batch: int = 0):
        """This process's batches of one global order of keys, from global batch ``start_batch`` on."""
        self.sampler.plan(keys, batch_size, start_batch)
        return iter(self.loader)

    @torch.no_grad()
    def predict(self, tasks: Sequence, positions: np.ndarray, strengths: np.ndarray | None = None,
                draw_seed: int = 0) -> list[Predictions]:
        """Evaluation-mode predictions of each task on the rows at ``positions`` (one decoding pass for all)."""
        positions = np.asarray(positions, dtype=np.int64)
        n = len(positions)
        batch_size = self.runtime.eval_batch_size
        keys = Keys.make(positions, np.full(n, draw_seed, dtype=np.int64), strengths)
        outs: list[list[torch.Tensor]] = [[] for _ in tasks]
        mine: list[np.ndarray] = []
        for task in tasks:
            task.before_eval()
        for b, (x, y, _, decoded, _, real) in enumerate(self.batches(keys, batch_size)):
            lo = b * batch_size
            where = rank_positions(lo, min(lo + batch_size, n), self.sampler.rank, self.sampler.world)
            x = to_device(x, self.device, self.runtime.channels_last)
            y = y.to(self.device, non_blocking=True)
            for task, out in zip(tasks, outs):
                with autocast(self.device, self.runtime.precision):
                    logits = task.logits(x)
                probs = logits.float().softmax(-1)
                out.append(torch.stack([probs.argmax(-1).double(), probs.gather(1, y[:, None]).squeeze(1).double(),
                                        decoded.to(self.device).double()], 1)[real.to(self.device)])
            mine.append(np.asarray(where, dtype=np.int64))
        order = np.concatenate(mine) if mine else np.zeros(0, dtype=np.int64)
        results = []
        for out in outs:
            local = torch.cat(out) if out else torch.zeros((0, 3), dtype=torch.float64, device=self.device)
            merged, rows_at = _gather(local, order, self.device)
            table = np.zeros((n, 3))
            table[rows_at] = merged
            decoded_ok = table[:, 2] > 0.5
            pred = np.where(decoded_ok, table[:, 0], -1).astype(np.int64)
            p_true = np.where(decoded_ok, table[:, 1], np.nan).astype(np.float32)
            results.append(Predictions(pred, p_true, decoded_ok))
        return results

    def close(self) -> None:
        """Stop the worker processes now rather than whenever the loader is collected."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None


def _gather(local: torch.Tensor, where: np.ndarray, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Every process's (rows, 3) predictions and their positions, on every process (any number per process)."""
    if not ddp.active():
        return local.cpu().numpy(), where
    mine = torch.cat([local, torch.from_numpy(where).to(device=device, dtype=torch.float64)[:, None]], 1)
    everything = ddp.gather_varying(mine).cpu().numpy()
    return everything[:, :3], everything[:, 3].astype(np.int64)


def predict_rows(tasks: Sequence, rows: ImageRows, runtime: DeviceConfig, positions: np.ndarray | None = None,
                 device_key: str = "eval.device") -> list[Predictions]:
    """Predictions of every task on ``rows`` (all of them, or those at ``positions``) on the configured
    device, in one decoding pass; the tasks must share their evaluation transform."""
    from .device import resolve_device

    device = resolve_device(runtime.device, device_key)
    for task in tasks:
        task.to(device)
    stream = ImageStream(rows, tasks[0].transforms, runtime, device)
    try:
        return stream.predict(tasks, np.arange(len(rows)) if positions is None else positions)
    finally:
        stream.close()
