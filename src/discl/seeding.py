"""Stable seeds: the same inputs give the same seed in every process and on every machine.

Python's built-in ``hash()`` of a string changes from process to process, so it
must never seed anything that should be reproducible.
"""

from __future__ import annotations

import hashlib


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from the ``repr`` of each part (floats rounded to 6 decimals)."""
    text = "\x1f".join(repr(round(p, 6)) if isinstance(p, float) else repr(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
