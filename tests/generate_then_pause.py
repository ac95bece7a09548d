"""Run by tests/test_gen_scale.py: `discl generate ...` that, once its Nth batch is committed, prints
PAUSED on stdout and waits on stdin, which the test never answers: a known point to SIGKILL it at,
reached however fast or slow the machine is.

    python generate_then_pause.py N generate RUN [options]
"""

import sys

from discl.cli import main
from discl.generation.store import PartStore

PAUSED = "PAUSED after committed batch"


def pause_after_commit(n: int) -> None:
    commit = PartStore.commit
    committed = 0

    def commit_then_pause_at_n(self, rows):
        nonlocal committed
        commit(self, rows)
        committed += len(rows) > 0  # commit() writes nothing for empty rows
        if committed == n:
            print(f"{PAUSED} {n}", flush=True)
            sys.stdin.readline()

    PartStore.commit = commit_then_pause_at_n


if __name__ == "__main__":
    pause_after_commit(int(sys.argv[1]))
    main(sys.argv[2:])
