"""The mine stage's zero-shot CLIP rule, ``mine.rules: [clip_misclassified]``.

Every training image is classified by the score stage's CLIP against one caption per class
(``score.caption_template`` filled with the class name); the images it puts in another class are
hard. An alternative to the authors' iWildCam CSV, which lists a pretrained model's failures. No
base model is trained or loaded. The image vectors are saved where the score stage keeps its own
(embeddings/clip, kind "source", by sample id), so an interrupted pass resumes and `discl score`
reuses the hard sources' vectors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..config import RunConfig
from ..mining import drop_excluded_classes, few_shot_mask
from ..prompts import demo_text_warning
from ..rundir import RunDir
from ..scoring.embeddings import EmbeddingStore
from ..scoring.loading import read_image_chunks
from ..tables import write_table

CLIP_RULE = "clip_misclassified"
#: Rules that need no model, so they combine with the CLIP rule.
MODEL_FREE = ("few_shot",)
#: Softmax temperature of p_true: OpenAI CLIP's logit scale (open_clip clamps learnt scales to it).
LOGIT_SCALE = 100.0


def zero_shot(image_vectors: np.ndarray, text_vectors: np.ndarray, scale: float = LOGIT_SCALE) -> np.ndarray:
    """Class probabilities (N, C) from unit image vectors (N, D) and one unit caption vector per class (C, D)."""
    logits = torch.from_numpy(np.asarray(image_vectors, np.float32)) @ torch.from_numpy(np.asarray(text_vectors, np.float32)).T
    return (scale * logits).softmax(-1).numpy()


def clip_predictions(run: RunDir, cfg: RunConfig, rows: pd.DataFrame, classes: pd.DataFrame, echo=print,
                     progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(predicted label, p(true class)) of the zero-shot CLIP for each of ``rows``."""
    from .score import _image_size, captions_for, embeddings_dir, ensure_scorer, scorer_key, scorer_settings

    order = classes.sort_values("label")
    labels = order["label"].astype(int).to_numpy()
    captions = captions_for(order, cfg.score.caption_template)
    texts = [captions[int(y)] for y in labels]
    ids = rows["sample_id"].astype(str).tolist()
    # The score stage's store: a new scorer's vectors stay beside the old ones until `discl score` completes them.
    store = EmbeddingStore(embeddings_dir(run) / "clip", scorer_key(run, cfg), echo, scorer=scorer_settings(run, cfg))
    todo_images, todo_texts = store.missing("source", ids), store.missing("text", texts)
    if todo_images or todo_texts:
        scorer = ensure_scorer(run, cfg, echo, progress)
        if todo_texts:
            store.add("text", todo_texts, scorer.embed_texts(todo_texts).numpy())
        path_of = dict(zip(ids, rows["path"]))
        bar = tqdm(total=len(todo_images), desc="zero-shot CLIP", disable=not progress, leave=False)
        chunk_size = 2048
        for start, images in read_image_chunks(run.resolve_all([path_of[i] for i in todo_images]), _image_size(scorer, cfg), chunk_size):
            chunk = todo_images[start : start + chunk_size]
            store.add("source", chunk, scorer.embed_images(images).numpy())
            bar.update(len(chunk))
        bar.close()
    probs = zero_shot(store.lookup("source", ids), store.lookup("text", texts))
    column = {int(y): j for j, y in enumerate(labels)}
    true = rows["label"].astype(int).map(column).to_numpy()
    return labels[probs.argmax(1)], probs[np.arange(len(rows)), true]


def mine_with_clip(run: RunDir, cfg: RunConfig, table: pd.DataFrame, classes: pd.DataFrame, echo=print,
                   progress: bool = True) -> pd.DataFrame:
    """The hard table by the zero-shot CLIP (and few_shot, if listed); ``table`` holds the training
    rows with their bucket. Writes run.hard."""
    m = cfg.mine
    others = [r for r in m.rules if r != CLIP_RULE and r not in MODEL_FREE]
    if others:
        raise ValueError(f"mine.rules: {CLIP_RULE} is judged by the zero-shot CLIP and combines only with "
                         f"{list(MODEL_FREE)}, not with {others} (rules of the base model)")
    if warning := demo_text_warning("score.caption_template", cfg.score.caption_template, cfg.data.name):
        echo(warning)
    pred, p_true = clip_predictions(run, cfg, table, classes, echo, progress)
    labels = table["label"].astype(int).to_numpy()
    counts = dict(zip(classes["label"].astype(int), classes["train_count"].astype(int)))
    buckets = dict(zip(classes["label"].astype(int), classes["bucket"]))
    fired = {CLIP_RULE: pred != labels, "few_shot": few_shot_mask(labels, counts, buckets, m.few_shot_below)}
    table = table.assign(p_true=p_true.astype(np.float32), pred_label=pred.astype(np.int32))
    table["reason"] = ["+".join(r for r in m.rules if fired[r][i]) for i in range(len(table))]
    hard = table[table["reason"] != ""].reset_index(drop=True)
    hard = drop_excluded_classes(hard, classes, m.exclude_classes, echo)
    if hard.empty:
        echo("warning: no hard sample found: the zero-shot CLIP gets every training image right")
    write_table(hard, run.hard, "hard")
    echo(f"mine: {len(hard)} hard samples of {len(table)} training images (rules {'+'.join(m.rules)}; "
         f"the zero-shot CLIP gets {float((pred == labels).mean()):.1%} right, captions {cfg.score.caption_template!r})")
    return hard
