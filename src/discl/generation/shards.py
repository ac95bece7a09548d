"""Static shards for job arrays: every source goes to one shard by a stable hash of its id."""

from __future__ import annotations

import re

import pandas as pd

from ..seeding import stable_seed


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (0 <= i < n) -> (i, n); None -> (0, 1), the whole plan."""
    if text is None:
        return 0, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need n >= 1 and 0 <= i < n")
    return index, count


def shard_of(source_id: str, count: int) -> int:
    # By source, so one source's spectrum stays on one worker and its VAE encoding is reused.
    return stable_seed("shard", source_id) % count


def select_shard(plan: pd.DataFrame, index: int, count: int) -> pd.DataFrame:
    if count == 1:
        return plan
    return plan[plan["source_id"].map(lambda s: shard_of(s, count) == index)]
