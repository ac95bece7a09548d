"""What the doc generators share: rewrite a generated part of a page, or with --check only say it is stale."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def sync(doc: Path, render: Callable[[str], str], script: str, argv: list[str]) -> int:
    current = doc.read_text()
    wanted = render(current)
    if "--check" in argv:
        if current != wanted:
            print(f"{doc} is out of date: run python scripts/{script}", file=sys.stderr)
            return 1
        return 0
    doc.write_text(wanted)
    return 0
