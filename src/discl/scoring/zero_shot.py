"""The zero-shot CLIP's class predictions for the mine stage's ``clip_misclassified`` rule.

Every image is classified by the run's CLIP scorer against one caption per class
(``score.caption_template`` filled with the class name). The image vectors are saved where the score
stage keeps its own (embeddings/clip, kind "source", by sample id), so an interrupted pass resumes and
`discl score` reuses the hard sources' vectors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..config import RunConfig
from ..rundir import RunDir
from .embeddings import EmbeddingStore
from .loading import read_image_chunks
from .run_scorer import ensure_scorer, filter_captions, scorer_image_size, scorer_key, scorer_settings

#: Softmax temperature of p_true: OpenAI CLIP's logit scale (open_clip clamps learnt scales to it).
LOGIT_SCALE = 100.0


def zero_shot(image_vectors: np.ndarray, text_vectors: np.ndarray, scale: float = LOGIT_SCALE) -> np.ndarray:
    """Class probabilities (N, C) from unit image vectors (N, D) and one unit caption vector per class (C, D)."""
    logits = torch.from_numpy(np.asarray(image_vectors, np.float32)) @ torch.from_numpy(np.asarray(text_vectors, np.float32)).T
    return (scale * logits).softmax(-1).numpy()


def clip_predictions(run: RunDir, cfg: RunConfig, rows: pd.DataFrame, classes: pd.DataFrame, echo=print,
                     progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(predicted label, p(true class)) of the zero-shot CLIP for each of ``rows``."""
    order = classes.sort_values("label")
    labels = order["label"].astype(int).to_numpy()
    captions = filter_captions(order, cfg)
    texts = [captions[int(y)] for y in labels]
    ids = rows["sample_id"].astype(str).tolist()
    # The score stage's store: a new scorer's vectors stay beside the old ones until `discl score` completes them.
    store = EmbeddingStore(run.clip_embeddings, scorer_key(run, cfg), echo, scorer=scorer_settings(run, cfg))
    todo_images, todo_texts = store.missing("source", ids), store.missing("text", texts)
    if todo_images or todo_texts:
        scorer = ensure_scorer(run, cfg, echo, progress)
        if todo_texts:
            store.add("text", todo_texts, scorer.embed_texts(todo_texts).numpy())
        path_of = dict(zip(ids, rows["path"]))
        bar = tqdm(total=len(todo_images), desc="zero-shot CLIP", disable=not progress, leave=False)
        chunk_size = 2048
        paths = run.resolve_all([path_of[i] for i in todo_images])
        for start, images in read_image_chunks(paths, scorer_image_size(scorer, cfg), chunk_size):
            chunk = todo_images[start : start + chunk_size]
            store.add("source", chunk, scorer.embed_images(images).numpy())
            bar.update(len(chunk))
        bar.close()
    probs = zero_shot(store.lookup("source", ids), store.lookup("text", texts))
    column = {int(y): j for j, y in enumerate(labels)}
    true = rows["label"].astype(int).map(column).to_numpy()
    return labels[probs.argmax(1)], probs[np.arange(len(rows)), true]
