"""synthetic/metadata.jsonl: the synthetic folder as a Hugging Face ``imagefolder`` dataset, with the filter's verdict.

One JSON line per synthetic image: its ``file_name`` (relative to synthetic/), the columns of synthetic.parquet
and, from scores.parquet, ``text_sim``, ``image_sim``, ``kept`` and ``drop_reason``. The generate stage writes it
when synthetic.parquet is complete; the score stage writes it again with its scores, so the file always agrees
with both tables: the score columns are null while scores.parquet is missing or scores other images (generate
ran again since), never the verdict of other images.
"""

from __future__ import annotations

import pandas as pd

from ..atomic import atomic_path
from ..rundir import RunDir

SCORE_COLUMNS = ("text_sim", "image_sim", "kept", "drop_reason")


def matching_scores(run: RunDir, synthetic: pd.DataFrame) -> pd.DataFrame | None:
    """scores.parquet when it scores exactly these synthetic images, else None."""
    from ..scoring.run_scorer import scores_match
    from ..tables import read_table

    if not run.scores.exists() or not scores_match(run, synthetic):
        return None
    return read_table(run.scores, "scores")


def write_synthetic_metadata(run: RunDir, synthetic: pd.DataFrame, scores: pd.DataFrame | None) -> None:
    """Write synthetic/metadata.jsonl for ``synthetic`` (the table's rows, in its order) with ``scores``'
    verdicts (None: not scored yet; the score columns are null)."""
    meta = synthetic.drop(columns=["path"]).reset_index(drop=True)
    meta.insert(0, "file_name", synthetic["path"].str.removeprefix("synthetic/").to_numpy())
    if scores is not None:
        verdict = scores.set_index("synthetic_id")[list(SCORE_COLUMNS)]
        meta = meta.join(verdict, on="synthetic_id")
    else:
        meta = meta.assign(**{c: None for c in SCORE_COLUMNS})
    with atomic_path(run.synthetic_metadata) as tmp:
        meta.to_json(tmp, orient="records", lines=True, force_ascii=False)
