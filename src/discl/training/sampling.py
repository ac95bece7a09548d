"""Which rows an epoch visits, in which order, and which of them each process reads.

An epoch's *global order* is a function of (seed, epoch) and the stage's rows only: shuffling,
tail sampling (ImageNet-LT) and a curriculum stage's choice of rows all happen here, on row
indices. Under DDP every process computes the same global order and reads only its slice of each
global batch (positions rank, rank + W, ...), so the images trained on, and the random transform
of each (its seed comes from its position in the global order), do not depend on the number of
processes or DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..seeding import stable_seed
from .dataset import REAL, TRAIN

if TYPE_CHECKING:
    from ..curricula import Stage
    from .loop import StageRows

_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def mix_seeds(base: int, positions: np.ndarray) -> np.ndarray:
    """A well-mixed 63-bit seed per position (splitmix64 of base + position): one vectorised pass
    instead of a hash call per image."""
    with np.errstate(over="ignore"):
        z = np.uint64(base & 0xFFFFFFFFFFFFFFFF) + (np.asarray(positions, dtype=np.uint64) + np.uint64(1)) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(1)).astype(np.int64)


TAIL_RULES = ("reference", "replacement")


@dataclass(frozen=True)
class TailSampling:
    """ImageNet-LT recipe: each epoch keeps ``non_tail_ratio`` of the non-tail images (drawn without
    replacement) and adds tail images until they are ``tail_fraction`` of the epoch.

    ``rule="reference"`` (the reference's data_loader_ImageNet.py): in a curriculum stage every real
    tail image once, then the stage's synthetic images (or, at a stage without any, the real tail
    again) fill up the tail share, drawn without replacement unless there are too few; after the
    curriculum the tail share is drawn from the real tail images with replacement.
    ``rule="replacement"``: the whole tail share is drawn with replacement from real tail and
    synthetic images together."""

    non_tail_ratio: float = 0.3
    tail_fraction: float = 0.136
    rule: str = "reference"

    def __post_init__(self) -> None:
        if not 0 < self.non_tail_ratio <= 1 or not 0 < self.tail_fraction < 1:
            raise ValueError(f"tail sampling needs 0 < non_tail_ratio <= 1 and 0 < tail_fraction < 1, got {self}")
        if self.rule not in TAIL_RULES:
            raise ValueError(f"unknown tail sampling rule {self.rule!r}; known: {list(TAIL_RULES)}")

    def order(self, tail: np.ndarray, rng: np.random.Generator, real: np.ndarray | None = None,
              in_curriculum: bool = False) -> np.ndarray:
        """Positions of one epoch. ``tail``: tail rows; ``real``: real rows (default: all);
        ``in_curriculum``: the stage belongs to the curriculum period (reference rule)."""
        tail = np.asarray(tail, dtype=bool)
        real = np.ones(len(tail), dtype=bool) if real is None else np.asarray(real, dtype=bool)
        rest = np.flatnonzero(~tail)
        if self.rule == "replacement":
            keep = rest[rng.permutation(len(rest))[: max(1, round(self.non_tail_ratio * len(rest)))]] if len(rest) else rest
            tail_idx = np.flatnonzero(tail)
            if not len(tail_idx):
                chosen = keep
            else:
                n_tail = max(1, round(self.tail_fraction / (1 - self.tail_fraction) * len(keep))) if len(keep) else len(tail_idx)
                chosen = np.concatenate([keep, tail_idx[rng.integers(len(tail_idx), size=n_tail)]])
            return chosen[rng.permutation(len(chosen))]
        keep = rest[rng.permutation(len(rest))[: int(self.non_tail_ratio * len(rest))]]
        n_tail = int(self.tail_fraction / (1 - self.tail_fraction) * len(keep))
        real_tail = np.flatnonzero(tail & real)
        if in_curriculum:
            synthetic = np.flatnonzero(tail & ~real)
            pool = synthetic if len(synthetic) else real_tail
            need = n_tail - len(real_tail)
            fill = pool[rng.choice(len(pool), need, replace=len(pool) <= need)] if need > 0 and len(pool) else pool[:0]
            chosen = np.concatenate([keep, real_tail, fill])
        else:
            chosen = np.concatenate([keep, real_tail[rng.integers(len(real_tail), size=n_tail)] if len(real_tail) else real_tail])
        return chosen[rng.permutation(len(chosen))]


def epoch_order(n_rows: int, seed: int, epoch: int, tail: np.ndarray | None = None,
                sampling: TailSampling | None = None, n_real: int | None = None, in_curriculum: bool = False,
                pass_index: int = 0) -> np.ndarray:
    """Positions (into a stage's rows, the first ``n_real`` of them real) in the order epoch ``epoch`` visits
    them; ``pass_index`` > 0: a further pass of a fixed-length epoch, reshuffled (and resampled)."""
    rng = np.random.default_rng(stable_seed("epoch-order", seed, epoch, *((pass_index,) if pass_index else ())))
    if sampling is not None and tail is not None:
        real = None if n_real is None else np.arange(n_rows) < n_real
        return sampling.order(tail, rng, real, in_curriculum)
    return rng.permutation(n_rows)


@dataclass
class Keys:
    """One global order of dataset keys (see training/dataset.py), as parallel arrays."""

    rows: np.ndarray
    draws: np.ndarray
    strengths: np.ndarray
    variants: np.ndarray
    flags: np.ndarray

    @classmethod
    def make(cls, rows: np.ndarray, draws: np.ndarray | None = None, strengths: np.ndarray | None = None,
             variants: np.ndarray | None = None, train: bool = False) -> Keys:
        n = len(rows)
        zeros = np.zeros(n, dtype=np.int64)
        return cls(np.asarray(rows, dtype=np.int64), zeros if draws is None else np.asarray(draws, dtype=np.int64),
                   zeros if strengths is None else np.asarray(strengths, dtype=np.int64),
                   zeros if variants is None else np.asarray(variants, dtype=np.int64),
                   np.full(n, REAL | (TRAIN if train else 0), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    def key(self, i: int, real: bool = True) -> tuple[int, int, int, int, int]:
        flags = int(self.flags[i]) if real else int(self.flags[i]) & ~REAL
        return int(self.rows[i]), int(self.draws[i]), int(self.strengths[i]), int(self.variants[i]), flags


def _epoch_pass(stage: Stage, rows: StageRows, seed: int, epoch: int, sampling: TailSampling | None,
                variants_per_row: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and variants of one pass over the stage's rows (pass 0 is a plain epoch's order)."""
    in_curriculum = stage.level is not None or bool(stage.levels) or bool(stage.class_levels)
    order = epoch_order(len(rows.positions), seed, epoch, rows.tail, sampling, rows.n_real, in_curriculum,
                        pass_index=index)
    positions = rows.positions[order]
    variants = np.arange(len(order), dtype=np.int64)
    if variants_per_row > 1:
        # One entry per (row, variant), shuffled together: the reference lists each image once per template.
        k = variants_per_row
        tag = ("variants", seed, epoch) + ((index,) if index else ())
        mix = np.random.default_rng(stable_seed(*tag)).permutation(len(order) * k)
        positions, variants = np.repeat(positions, k)[mix], np.tile(np.arange(k), len(order))[mix]
    return positions, variants


def epoch_keys(stage: Stage, rows: StageRows, seed: int, epoch: int, sampling: TailSampling | None,
               variants_per_row: int, labels: np.ndarray, num_classes: int, epoch_entries: int | None = None) -> Keys:
    """The global order of one epoch's training keys: which rows of the stage (tail sampling as configured),
    in which order, each with its transform's seed, its augmentation strength (CUDA) and its variant (FLYP's
    caption template). ``epoch_entries``: None = one pass over the stage's rows; else a fixed-length epoch
    of that many entries, drawn from successive passes, each reshuffled (train.epoch_length). The training
    loop and the curriculum in another loop (discl/curriculum_data.py) both take an epoch's data from here."""
    positions, variants = _epoch_pass(stage, rows, seed, epoch, sampling, variants_per_row, 0)
    if epoch_entries is not None:
        parts, n, index = [(positions, variants)], len(positions), 0
        while n < epoch_entries and n:
            index += 1
            parts.append(_epoch_pass(stage, rows, seed, epoch, sampling, variants_per_row, index))
            n += len(parts[-1][0])
        positions = np.concatenate([p for p, _ in parts])[:epoch_entries]
        variants = np.concatenate([v for _, v in parts])[:epoch_entries]
    where = np.arange(len(positions), dtype=np.int64)
    strengths = None
    if stage.augment:
        by_class = np.zeros(num_classes, dtype=np.int64)
        for label, strength in stage.augment:
            by_class[label] = strength
        strengths = by_class[labels[positions]]
    draws = mix_seeds(stable_seed("draw", seed, epoch), where)
    return Keys.make(positions, draws, strengths, variants=variants, train=True)


def rank_positions(lo: int, hi: int, rank: int, world: int) -> list[int]:
    """This process's positions of the global batch [lo, hi)."""
    return list(range(lo + rank, hi, world))


class RankBatches(torch.utils.data.Sampler):
    """A batch sampler over one global order of keys: for each global batch of ``batch_size``
    positions it yields this process's slice. A process whose slice is empty (a last batch smaller
    than the number of processes) gets one padding item that does not count, so every process runs
    the same number of steps. ``plan`` swaps in a new order between epochs; the DataLoader's worker
    processes stay alive, since batches of indices are made here, in the main process."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world
        self.keys = Keys.make(np.zeros(0, dtype=np.int64))
        self.batch_size = 1
        self.start = 0

    def plan(self, keys: Keys, batch_size: int, start_batch: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.keys, self.batch_size, self.start = keys, batch_size, start_batch

    def n_batches(self) -> int:
        return -(-len(self.keys) // self.batch_size)

    def __len__(self) -> int:
        return max(0, self.n_batches() - self.start)

    def global_size(self, batch: int) -> int:
        return min(self.batch_size, len(self.keys) - batch * self.batch_size)

    def __iter__(self):
        for b in range(self.start, self.n_batches()):
            lo = b * self.batch_size
            hi = min(lo + self.batch_size, len(self.keys))
            mine = rank_positions(lo, hi, self.rank, self.world)
            yield [self.keys.key(i) for i in mine] if mine else [self.keys.key(lo, real=False)]
