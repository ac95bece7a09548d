"""Shared by the tests of discl.CurriculumData and its trainer adapters: a stand-in model that leads an
adaptive curriculum to chosen levels, and torchrun with N gloo processes on a worker script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def favouring(data, targets: list):
    """``predict`` for ``data`` (a CurriculumData with an adaptive curriculum): at each look it gets the
    validation images of the next level in ``targets`` (consumed in order; None: none) more right than at
    any look before, so that level improves most, even when it is chosen twice in a row."""
    validation = data.plan.curriculum.validation
    level_of = dict(zip(validation.positions.tolist(), validation.levels.tolist()))

    def predict(dataset):
        target = targets.pop(0)
        # Grows look by look (also across a resumed copy sharing ``targets``) and stays far from saturating the
        # softmax, so a level favoured twice in a row still improves.
        confidence = 1.0 + 1.0 / (1 + len(targets))
        logits = np.zeros((len(dataset.keys.rows), data.num_classes))
        for i, row in enumerate(dataset.keys.rows):
            if level_of[int(row)] == target:
                logits[i, data.plan.pool.rows.labels[row]] = confidence
        return logits

    return predict


def torchrun(worker: Path, world: int, *args: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world),
                           str(worker), *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def ranks_slices(data, looks: list, batch_size: int, world: int) -> list[list[list[int]]]:
    """Each process's batches (labels) of every epoch of ``data``'s curriculum led by ``looks``, as process r
    reads them: positions r, r + world, ... of every global batch."""
    out: list[list[list[int]]] = [[] for _ in range(world)]
    for epoch in data.epochs(favouring(data, looks)):
        for rank in range(world):
            out[rank] += [[int(epoch.labels[i]) for i in batch] for batch in epoch.batches(batch_size, rank, world)]
    return out


def read_ranks(folder: Path, world: int) -> list[dict]:
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(world)]
