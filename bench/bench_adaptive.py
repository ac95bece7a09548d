"""Benchmark (not a test): the adaptive curriculum's evaluation overhead as a share of training time.

Usage: python bench/bench_adaptive.py RUN_DIR [--epochs N] [--set section.key=value ...]
RUN_DIR is a run directory with synthetic images (e.g. from `discl demo --run-dir /tmp/evidence`).
It trains the "adaptive" method once, timing every call of the curriculum's evaluation hook
(including the one before training) against the time spent in training epochs, and prints
the ratio. Goal: <= 10%.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from discl.config import load_config
from discl.curricula import create_curriculum
from discl.rundir import RunDir
from discl.training.loop import TrainData, train_with_curriculum
from discl.training.methods import build_method_data, load_inputs, make_task


class Timed:
    """Forwards to a curriculum, timing its evaluation hook."""

    def __init__(self, inner):
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def observe(self, evaluate):
        start = time.perf_counter()
        try:
            return self.inner.observe(evaluate)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def __getattr__(self, name):
        return getattr(self.inner, name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(2)
    run = RunDir(args.run_dir)
    cfg = load_config(run.root, None, args.overrides)
    if args.epochs:
        cfg.train.classifier.epochs = args.epochs
        cfg.train.curriculum_epochs = min(cfg.train.curriculum_epochs, args.epochs)
    t = cfg.train
    inputs = load_inputs(run, cfg, ["adaptive"], echo=lambda *_: None)
    candidates = sorted({lv for lv in t.levels if lv >= t.curriculum.min_level})
    pool, validation, held_out = build_method_data(run, cfg, "adaptive", inputs)
    curriculum = Timed(create_curriculum("adaptive", t.classifier.epochs, t.levels, t.curriculum_epochs, t.curriculum,
                                         validation=validation, num_classes=len(inputs.classes)))
    task = make_task(run, cfg, inputs)
    start = time.perf_counter()
    data = TrainData(pool.rows, pool, pool.val, len(inputs.classes))
    log = train_with_curriculum(task, t.classifier, t, curriculum, data, "adaptive", progress=False)
    wall = time.perf_counter() - start
    train_seconds = sum(r["seconds"] for r in log)
    print(f"epochs {len(log)}, curriculum validation images {len(validation.labels)} "
          f"({len(held_out)} sources x {len(candidates)} levels), evaluations {curriculum.calls}")
    print(f"training epochs: {train_seconds:.2f} s; adaptive evaluations: {curriculum.seconds:.3f} s; wall {wall:.2f} s")
    print(f"evaluation overhead: {100 * curriculum.seconds / train_seconds:.2f}% of training time (goal <= 10%)")


if __name__ == "__main__":
    main()
