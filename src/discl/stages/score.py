"""Stage `score`: CLIP image-image and image-text similarity of every synthetic image, and the filters.

Every real source image, every text and every synthetic image is embedded once and saved under
``embeddings/`` (Parquet); a re-run embeds only what is new, and ``--rescore`` applies new
thresholds from the saved vectors without loading any model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..config import RunConfig
from ..data import foundation_rows, load_dataset_tables, load_split
from ..generation.settings import changes
from ..generation.store import embedding_ids, synthetic_digest
from ..lock import RunLock
from ..prompts import demo_text_warning
from ..registry import scorers
from ..rundir import RunDir
from ..scoring.base import Scorer
from ..scoring.embeddings import EmbeddingStore
from ..scoring.factory import create_scorer
from ..scoring.filters import filters_from_config, run_filters
from ..scoring.loading import read_image_chunks
from ..scoring.summary import score_summary
from ..scoring.tiny_clip import create_tiny_clip, load_tiny_clip, save_tiny_clip, tiny_clip_config, train_tiny_clip
from ..tables import read_table, table_meta, write_table
from . import cache
from .common import fingerprint

TEXT_SOURCES = ("caption", "prompt")
CHUNK = 2048  # synthetic images embedded (and saved) per step: the unit of resumption


def scorer_dir(run: RunDir):
    return run.models / "clip"


def embeddings_dir(run: RunDir):
    return run.root / "embeddings"


def summary_path(run: RunDir):
    return run.score_summary


def captions_for(classes: pd.DataFrame, template: str) -> dict[int, str]:
    return {int(label): template.format(name=name) for label, name in zip(classes["label"], classes["class_name"])}


def _tiny_settings(run: RunDir, cfg: RunConfig) -> dict:
    s = cfg.score
    dataset, _ = load_dataset_tables(run)
    train_keys = ("caption_template", "train_steps", "train_batch_size", "train_lr", "train_seed")
    return {k: asdict(s)[k] for k in train_keys} | {"image_size": cfg.data.image_size, "data": fingerprint(foundation_rows(dataset)["sample_id"])}


def scorer_settings(run: RunDir, cfg: RunConfig) -> dict:
    """What decides the scorer's vectors, by config key (so a change can be named)."""
    s = cfg.score
    out = {"score.backend": s.backend, "score.precision": s.precision, "score.image_size": s.image_size}
    if s.backend == "tiny-clip":
        tiny = _tiny_settings(run, cfg)
        return out | {f"score.{k}": tiny[k] for k in ("caption_template", "train_steps", "train_batch_size", "train_lr", "train_seed")} | {
            "data.image_size": cfg.data.image_size, "clip training images": tiny["data"]}
    return out | {"score.model": s.model, "score.pretrained": s.pretrained}


def scorer_key(run: RunDir, cfg: RunConfig) -> str:
    """What identifies the scorer's vectors; stored embeddings are reused only under the same key."""
    s = cfg.score
    ident: dict[str, object] = {"backend": s.backend, "precision": s.precision, "image_size": s.image_size}
    if s.backend == "tiny-clip":
        ident |= {"tiny": _tiny_settings(run, cfg), "image_size": cfg.data.image_size}
    else:
        ident |= {"model": s.model, "pretrained": s.pretrained}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def ensure_scorer(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> Scorer:
    """The configured scorer. tiny-clip: trained on the foundation pool, cached in models/clip (a retrained
    model replaces the old one only once it is saved whole)."""
    s = cfg.score
    if s.backend != "auto":
        scorers.get(s.backend)  # an unknown name: the error lists the registered ones
    if s.text_source not in TEXT_SOURCES:
        raise ValueError(f"unknown score.text_source {s.text_source!r}; known: {list(TEXT_SOURCES)}")
    if s.backend != "tiny-clip":
        return create_scorer(s.model, s.pretrained, s.backend, s.batch_size, s.device, s.precision)
    settings = _tiny_settings(run, cfg)
    folder = scorer_dir(run)
    cache.recover(folder)
    if not cache.is_current(folder, settings):
        with RunLock(run.root, "model-clip").acquire(wait=True, on_wait=lambda who: echo(f"waiting for {who} to train the CLIP scorer")):
            if not cache.is_current(folder, settings):
                return _train_tiny_clip(run, cfg, settings, echo, progress)
    return load_tiny_clip(folder)


def _train_tiny_clip(run: RunDir, cfg: RunConfig, settings: dict, echo, progress: bool) -> Scorer:
    s = cfg.score
    dataset, classes = load_dataset_tables(run)
    pool = foundation_rows(dataset)
    echo(f"training the CLIP scorer on {len(pool)} images ({s.train_steps} steps)")
    images, labels = load_split(run, pool, cfg.data.image_size)
    captions = captions_for(classes, s.caption_template)
    new = cache.staging_dir(scorer_dir(run))  # built beside the old model, which stays until this one is saved
    scorer = create_tiny_clip(tiny_clip_config(cfg.data.image_size), new, s.train_seed)
    scorer.batch_size = s.batch_size
    train_tiny_clip(scorer, images, [captions[int(y)] for y in labels], s.train_steps, s.train_batch_size, s.train_lr, s.train_seed, progress)
    cache.save_beside(scorer_dir(run), lambda folder: save_tiny_clip(scorer, folder), settings, new=new)
    return scorer


def check_inputs(run: RunDir, synthetic: pd.DataFrame, hard: pd.DataFrame, classes: pd.DataFrame) -> None:
    unknown = ~synthetic["label"].isin(classes["label"])
    if unknown.any():
        row = synthetic[unknown].iloc[0]
        raise ValueError(f"{run.synthetic}: synthetic image {row.synthetic_id!r} has label {row.label}, which is not in {run.classes}")
    orphan = ~synthetic["source_id"].isin(hard["sample_id"])
    if orphan.any():
        row = synthetic[orphan].iloc[0]
        raise ValueError(f"{run.synthetic}: synthetic image {row.synthetic_id!r} comes from source {row.source_id!r}, which is not in {run.hard}")


def scores_match(run: RunDir, synthetic: pd.DataFrame) -> bool:
    """Whether scores.parquet was computed from these synthetic images (True when it does not say)."""
    recorded = table_meta(run.scores).get("synthetic")
    return recorded is None or recorded == synthetic_digest(synthetic)


def texts_for(synthetic: pd.DataFrame, classes: pd.DataFrame, cfg: RunConfig) -> list[str]:
    if cfg.score.text_source == "prompt":
        return synthetic["prompt"].astype(str).tolist()
    captions = captions_for(classes, cfg.score.caption_template)
    return [captions[int(k)] for k in synthetic["label"]]


def _image_size(scorer, cfg: RunConfig) -> int:
    if cfg.score.image_size:
        return int(cfg.score.image_size)
    if cfg.score.backend == "tiny-clip":
        return cfg.data.image_size
    return int(max(scorer.transform.size))


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
    size = _image_size(scorer, cfg)
    if todo["text"]:
        store.add("text", todo["text"], scorer.embed_texts(todo["text"]).numpy())
    for kind, ids, paths in (("source", todo["source"], source_path), ("synthetic", todo["synthetic"], path_of)):
        bar = tqdm(total=len(ids), desc=f"embed {kind}", disable=not progress, leave=False)
        for start, images in read_image_chunks(run.resolve_all([paths[k] for k in ids]), size, CHUNK):
            chunk = ids[start : start + CHUNK]
            store.add(kind, chunk, scorer.embed_images(images).numpy())
            bar.update(len(chunk))
        bar.close()


def base_predictions(run: RunDir, cfg: RunConfig, synthetic: pd.DataFrame, rescore: bool, progress: bool = True) -> np.ndarray:
    """The base model's class probabilities for every synthetic image (N, C), saved like embeddings."""
    from .mine import load_judge

    key = load_judge(run, cfg, load=False).key
    store = EmbeddingStore(embeddings_dir(run) / "base", key, echo=lambda *_: None)
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
    store = EmbeddingStore(embeddings_dir(run) / "clip", scorer_key(run, cfg), echo, scorer=settings)
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
        probs = base_predictions(run, cfg, synthetic, rescore, progress)
        labels = synthetic["label"].to_numpy()
        if labels.max() >= probs.shape[1]:
            raise ValueError(f"the base model knows {probs.shape[1]} classes but synthetic images have label {labels.max()}")
        scores["base_p_true"] = probs[np.arange(len(labels)), labels]
        scores["base_pred"] = probs.argmax(1)
        scores["base_p_pred"] = probs.max(1)

    # 4. Filters, the scores table and the summary per class and level.
    filtered = run_filters(scores, rules, cap)
    scores = filtered.scores
    write_table(scores, run.scores, "scores", meta={"synthetic": synthetic_digest(synthetic), "scorer": settings})
    summary = score_summary(scores, filtered.dropped, dict(zip(classes["label"].astype(int), classes["class_name"])))
    # The same digest as the scores': the report tells a summary of other scores from theirs.
    write_table(summary, summary_path(run), "score_summary", meta={"synthetic": synthetic_digest(synthetic)})
    echo(f"score: kept {int(scores['kept'].sum())} of {len(scores)} synthetic images "
         f"(text_sim >= {s.text_threshold:g}" + (f", image_sim >= {s.image_threshold:g}" if s.image_threshold is not None else "") + ")")
    return scores
