"""Stage `score`: CLIP image-image and image-text similarity of every synthetic image, and the filters.

Every real source image, every text and every synthetic image is embedded once and saved under
``embeddings/`` (Parquet); a re-run embeds only what is new, and ``--rescore`` applies new
thresholds from the saved vectors without loading any model."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..config import RunConfig
from ..data import load_dataset_tables
from ..generation.metadata import write_synthetic_metadata
from ..generation.settings import changes
from ..generation.store import embedding_ids, synthetic_digest
from ..mining import load_judge
from ..prompts import demo_text_warning
from ..rundir import RunDir
from ..scoring.embeddings import EmbeddingStore
from ..scoring.filters import filters_from_config, run_filters
from ..scoring.loading import read_image_chunks
from ..scoring.run_scorer import TEXT_SOURCES, ensure_scorer, filter_captions, scorer_image_size, scorer_key, scorer_settings
from ..scoring.summary import score_summary
from ..tables import read_table, write_table

CHUNK = 2048  # synthetic images embedded (and saved) per step: the unit of resumption
# The score.* settings that decide which images are kept (recorded with scores.parquet, shown by the report).
FILTER_KEYS = ("text_threshold", "image_threshold", "image_max", "confident_wrong", "too_easy", "max_per_class", "text_source",
               "caption_template")


def filter_settings(cfg: RunConfig) -> dict:
    """FILTER_KEYS' values, and prompts.names where it is not the default: the class names in the captions
    text_sim compares with."""
    out = {k: v for k, v in asdict(cfg.score).items() if k in FILTER_KEYS}
    return out | ({"prompts.names": cfg.prompts.names} if cfg.prompts.names != "class" else {})


def summary_path(run: RunDir):
    return run.score_summary


def check_inputs(run: RunDir, synthetic: pd.DataFrame, hard: pd.DataFrame, classes: pd.DataFrame) -> None:
    unknown = ~synthetic["label"].isin(classes["label"])
    if unknown.any():
        row = synthetic[unknown].iloc[0]
        raise ValueError(f"{run.synthetic}: synthetic image {row.synthetic_id!r} has label {row.label}, which is not in {run.classes}")
    orphan = ~synthetic["source_id"].isin(hard["sample_id"])
    if orphan.any():
        row = synthetic[orphan].iloc[0]
        raise ValueError(f"{run.synthetic}: synthetic image {row.synthetic_id!r} comes from source {row.source_id!r}, which is not in {run.hard}")


def texts_for(synthetic: pd.DataFrame, classes: pd.DataFrame, cfg: RunConfig) -> list[str]:
    if cfg.score.text_source == "prompt":
        return synthetic["prompt"].astype(str).tolist()
    captions = filter_captions(classes, cfg)
    return [captions[int(k)] for k in synthetic["label"]]


def embed_missing(run: RunDir, cfg: RunConfig, store: EmbeddingStore, sources: pd.DataFrame, synthetic: pd.DataFrame,
                  texts: list[str], rescore: bool, echo=print, progress: bool = True) -> None:
    """Embed what the store lacks: each source, each distinct text, each synthetic image, once."""
    todo = {
        "source": store.missing("source", sources["sample_id"].tolist()),
        "text": store.missing("text", texts),
        "synthetic": store.missing("synthetic", embedding_ids(synthetic)),
    }
    if not any(todo.values()):
        return
    if rescore:
        counts = ", ".join(f"{len(v)} {k}" for k, v in todo.items() if v)
        raise ValueError(f"--rescore needs saved embeddings, but {counts} embeddings are missing in {store.folder}; run `discl score` without --rescore")
    path_of = dict(zip(embedding_ids(synthetic), synthetic["path"]))
    missing = run.missing_files([path_of[i] for i in todo["synthetic"]])
    if missing:
        raise FileNotFoundError(f"{len(missing)} synthetic images listed in {run.synthetic} are missing, e.g. {missing[0]}; rerun `discl generate`")
    source_path = dict(zip(sources["sample_id"], sources["path"]))
    gone = run.missing_files([source_path[i] for i in todo["source"]])
    if gone:
        raise FileNotFoundError(f"{len(gone)} source images listed in {run.hard} are missing, e.g. {gone[0]}")

    scorer = ensure_scorer(run, cfg, echo, progress)
    size = scorer_image_size(scorer, cfg)
    if todo["text"]:
        store.add("text", todo["text"], scorer.embed_texts(todo["text"]).numpy())
    for kind, ids, paths in (("source", todo["source"], source_path), ("synthetic", todo["synthetic"], path_of)):
        bar = tqdm(total=len(ids), desc=f"embed {kind}", disable=not progress, leave=False)
        for start, images in read_image_chunks(run.resolve_all([paths[k] for k in ids]), size, CHUNK):
            chunk = ids[start : start + CHUNK]
            store.add(kind, chunk, scorer.embed_images(images).numpy())
            bar.update(len(chunk))
        bar.close()


def base_predictions(run: RunDir, cfg: RunConfig, synthetic: pd.DataFrame, rescore: bool, progress: bool = True,
                     echo=print) -> np.ndarray:
    """The base model's class probabilities for every synthetic image (N, C), saved like embeddings."""
    key = load_judge(run, cfg, load=False).key
    store = EmbeddingStore(run.base_predictions, key, echo)  # a damaged file set aside is said
    ids = embedding_ids(synthetic)
    todo = store.missing("synthetic", ids)
    if todo and rescore:
        other = " (the saved ones are from another base model)" if store.holds_other_scorer else ""
        raise ValueError(f"--rescore needs saved base-model predictions, but {len(todo)} are missing{other}; run `discl score` without --rescore")
    if todo:
        judge = load_judge(run, cfg)
        path_of = dict(zip(ids, synthetic["path"]))
        bar = tqdm(total=len(todo), desc="base model", disable=not progress, leave=False)
        for start, images in read_image_chunks(run.resolve_all([path_of[k] for k in todo]), judge.image_size, CHUNK):
            chunk = todo[start : start + CHUNK]
            store.add("synthetic", chunk, judge.predict_proba(images).numpy())
            bar.update(len(chunk))
        bar.close()
    store.commit()
    return store.lookup("synthetic", ids)


def similarity_frame(synthetic: pd.DataFrame, store: EmbeddingStore, texts: list[str]) -> pd.DataFrame:
    images = store.lookup("synthetic", embedding_ids(synthetic) if "fingerprint" in synthetic else synthetic["synthetic_id"].tolist())
    out = synthetic[["synthetic_id", "source_id", "label", "image_guidance"]].reset_index(drop=True)
    out["text_sim"] = np.einsum("nd,nd->n", images, store.lookup("text", texts)).astype(np.float32)
    out["image_sim"] = np.einsum("nd,nd->n", images, store.lookup("source", synthetic["source_id"].tolist())).astype(np.float32)
    return out


def run_score(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True, rescore: bool = False) -> pd.DataFrame:
    s = cfg.score
    # 1. Inputs and filters (bad settings fail before any work).
    synthetic = read_table(run.synthetic, "synthetic").reset_index(drop=True)
    hard = read_table(run.hard, "hard")
    _, classes = load_dataset_tables(run)
    check_inputs(run, synthetic, hard, classes)
    if s.text_source not in TEXT_SOURCES:
        raise ValueError(f"unknown score.text_source {s.text_source!r}; known: {list(TEXT_SOURCES)}")
    rules, cap = filters_from_config(s)
    if s.text_source == "caption" and (warning := demo_text_warning("score.caption_template", s.caption_template, cfg.data.name)):
        echo(warning)
    texts = texts_for(synthetic, classes, cfg)
    sources = hard[hard["sample_id"].isin(set(synthetic["source_id"]))].drop_duplicates("sample_id")

    # 2. Embed what is not saved yet (nothing on --rescore), then similarities from the saved vectors; a new
    #    scorer's vectors replace the old scorer's only once all are there.
    settings = scorer_settings(run, cfg)
    store = EmbeddingStore(run.clip_embeddings, scorer_key(run, cfg), echo, scorer=settings)
    if rescore and store.holds_other_scorer:
        changed = ", ".join(changes(store.saved_scorer, settings)) or "the scorer settings differ"
        raise ValueError(f"--rescore: the embeddings in {store.folder} come from another scorer ({changed}); run `discl score` "
                         "without --rescore to embed with this one (the saved embeddings stay until the new ones are complete)")
    embed_missing(run, cfg, store, sources, synthetic, texts, rescore, echo, progress)
    store.commit()
    scores = similarity_frame(synthetic, store, texts)

    # 3. Base-model predictions, only when the confidence filter asks for them.
    scores["base_p_true"], scores["base_pred"], scores["base_p_pred"] = np.nan, -1, np.nan
    if s.confident_wrong is not None or s.too_easy is not None:
        probs = base_predictions(run, cfg, synthetic, rescore, progress, echo)
        labels = synthetic["label"].to_numpy()
        if labels.max() >= probs.shape[1]:
            raise ValueError(f"the base model knows {probs.shape[1]} classes but synthetic images have label {labels.max()}")
        scores["base_p_true"] = probs[np.arange(len(labels)), labels]
        scores["base_pred"] = probs.argmax(1)
        scores["base_p_pred"] = probs.max(1)

    # 4. Filters, the scores table and the summary per class and level.
    filtered = run_filters(scores, rules, cap)
    scores = filtered.scores
    write_table(scores, run.scores, "scores", meta={"synthetic": synthetic_digest(synthetic), "scorer": settings,
                                                    "filters": filter_settings(cfg)})
    write_synthetic_metadata(run, synthetic, scores)  # the imagefolder metadata says which images were kept
    summary = score_summary(scores, filtered.dropped, dict(zip(classes["label"].astype(int), classes["class_name"])))
    # The same digest as the scores': the report tells a summary of other scores from theirs.
    write_table(summary, summary_path(run), "score_summary", meta={"synthetic": synthetic_digest(synthetic)})
    echo(f"score: kept {int(scores['kept'].sum())} of {len(scores)} synthetic images "
         f"(text_sim >= {s.text_threshold:g}" + (f", image_sim >= {s.image_threshold:g}" if s.image_threshold is not None else "") + ")")
    return scores
