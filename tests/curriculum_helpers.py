"""Shared by the tests of discl.CurriculumData and its trainer adapters: a stand-in model that leads an
adaptive curriculum to chosen levels, and torchrun with N gloo processes on a worker script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import discl


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


def truncate(root: Path, path: str) -> None:
    """Cut the image file ``path`` (relative to the run directory ``root``, or absolute) to 40 bytes."""
    file = Path(path) if Path(path).is_absolute() else root / path
    file.write_bytes(file.read_bytes()[:40])


def read_ranks(folder: Path, world: int) -> list[dict]:
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(world)]


def check_three_processes(worker: Path, run_root: Path, out: Path, stages_ended: int) -> None:
    """Run ``worker`` (an adapter's training on the adaptive curriculum of ``run_root``, global batches of 9)
    under torchrun with 3 gloo processes; check that every process made the same ``stages_ended`` choices and
    that at every step the processes' batches were the slices (positions r, r + 3, ...) of one global batch
    of the same curriculum run in one process and led to the same choices. One curriculum-validation image,
    in the middle process's share of each look, cannot be read: every process leaves that one out."""
    data = discl.CurriculumData(run_root, "adaptive", echo=lambda *_: None)
    validation = data.validation_dataset()
    broken = len(validation) // 2
    truncate(Path(run_root), validation.images.rows.paths(validation.keys.rows[broken : broken + 1])[0])
    torchrun(worker, 3, str(run_root), str(out))
    ranks = read_ranks(out, 3)
    assert [r["world"] for r in ranks] == [3, 3, 3] and [r["rank"] for r in ranks] == [0, 1, 2]
    assert [[i for i, p in enumerate(r["last_p"]) if p != p] for r in ranks] == [[broken]] * 3
    assert ranks[0]["chosen"] == ranks[1]["chosen"] == ranks[2]["chosen"] and len(ranks[0]["chosen"]) == stages_ended
    assert ranks[0]["history"] == ranks[1]["history"] == ranks[2]["history"] and len(ranks[0]["history"]) == stages_ended

    expected = ranks_slices(data, [None, *ranks[0]["chosen"][:2], None, None], 9, 3)
    assert [s.level for s in data.history][:stages_ended] == ranks[0]["history"]
    assert [r["batches"] for r in ranks] == expected


def assert_resumed_alike(whole_data, whole, resumed_data, resumed) -> None:
    """A resumed run ends where the uninterrupted one does: the same curriculum log, the same weights."""
    assert resumed_data.curriculum_log == whole_data.curriculum_log
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
