"""Composable filters, the per-class summary and the embedding store."""

import numpy as np
import pandas as pd
import pytest

from discl.config import ScorerConfig
from discl.scoring.embeddings import EmbeddingStore
from discl.scoring.filters import (
    BaseModelConfidence,
    ClassCap,
    ImageSimInBand,
    TextSimAtLeast,
    apply_filters,
    filters_from_config,
)
from discl.scoring.summary import score_summary


def _scores(**cols):
    n = len(next(iter(cols.values())))
    base = {"synthetic_id": [f"s{i}" for i in range(n)], "label": [0] * n, "image_guidance": [50] * n,
            "text_sim": [0.5] * n, "image_sim": [0.5] * n}
    return pd.DataFrame(base | cols)


def test_image_band_drops_both_sides_and_names_the_side():
    scores = _scores(image_sim=[0.1, 0.5, 0.95])
    out = apply_filters(scores, [ImageSimInBand(0.2, 0.9)])
    assert out["drop_reason"].tolist() == ["image_sim<0.2", "", "image_sim>0.9"]


def test_confidence_filter_drops_confidently_wrong_and_too_easy():
    scores = _scores(label=[0, 0, 0, 0], base_pred=[1, 1, 0, 0], base_p_pred=[0.95, 0.5, 0.99, 0.6],
                     base_p_true=[0.01, 0.3, 0.99, 0.6])
    out = apply_filters(scores, [BaseModelConfidence(confident_wrong=0.9, too_easy=0.98)])
    assert out["drop_reason"].tolist() == ["confident_wrong>=0.9", "", "too_easy>=0.98", ""]


def test_confidence_filter_without_predictions_is_an_error():
    with pytest.raises(ValueError, match="base model's predictions"):
        apply_filters(_scores(text_sim=[0.5]), [BaseModelConfidence(confident_wrong=0.9)])


def test_class_cap_keeps_the_best_survivors_per_class_and_level():
    scores = _scores(label=[0, 0, 0, 0, 1, 0], image_guidance=[50, 50, 50, 50, 50, 90],
                     text_sim=[0.9, 0.1, 0.8, 0.7, 0.2, 0.3])
    out = apply_filters(scores, [TextSimAtLeast(0.15)], ClassCap(2))
    # class 0 @50: s1 fails the threshold; of s0, s2, s3 the two best (0.9, 0.8) stay; other groups are below the cap
    assert out["drop_reason"].tolist() == ["", "text_sim<0.15", "", "class_cap>2", "", ""]
    assert out["kept"].tolist() == [True, False, True, False, True, True]


def test_every_failed_rule_is_listed():
    out = apply_filters(_scores(text_sim=[0.1], image_sim=[0.0]), [TextSimAtLeast(0.3), ImageSimInBand(0.2)])
    assert out["drop_reason"].tolist() == ["text_sim<0.3+image_sim<0.2"]


def test_nan_similarity_is_named():
    with pytest.raises(ValueError, match="s1"):
        apply_filters(_scores(text_sim=[0.5, float("nan")]), [TextSimAtLeast(0.3)])


def test_filters_from_config():
    rules, cap = filters_from_config(ScorerConfig(text_threshold=0.3, image_threshold=None, too_easy=0.99, max_per_class=4))
    assert rules == [TextSimAtLeast(0.3), BaseModelConfidence(None, 0.99)] and cap == ClassCap(4)
    with pytest.raises(ValueError, match="max_per_class"):
        filters_from_config(ScorerConfig(max_per_class=0))


def test_summary_counts_and_means_per_class_and_level():
    scores = _scores(label=[0, 0, 0, 1], image_guidance=[10, 10, 90, 10], text_sim=[0.4, 0.1, 0.5, 0.2], image_sim=[0.2, 0.6, 0.9, 0.1])
    out = apply_filters(scores, [TextSimAtLeast(0.3), ImageSimInBand(0.15)])
    summary = score_summary(out, {0: "fox", 1: "owl"})
    assert summary[["label", "class_name", "image_guidance", "generated", "kept", "dropped_text", "dropped_image"]].values.tolist() == [
        [0, "fox", 10, 2, 1, 1, 0], [0, "fox", 90, 1, 1, 0, 0], [1, "owl", 10, 1, 0, 1, 1]]
    row = summary.iloc[0]
    assert row.strength == pytest.approx(0.9)
    assert row.mean_text_sim == pytest.approx(0.25) and row.mean_text_sim_kept == pytest.approx(0.4)
    assert np.isnan(summary.iloc[2].mean_text_sim_kept)


def test_embedding_store_round_trips_resumes_and_resets_on_a_new_scorer(tmp_path):
    store = EmbeddingStore(tmp_path, "clip-a")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    store.add("synthetic", ["x", "y"], a)
    store.add("synthetic", ["z"], np.ones((1, 3), np.float32))
    again = EmbeddingStore(tmp_path, "clip-a")
    assert again.missing("synthetic", ["x", "w", "z", "w"]) == ["w"]
    assert np.array_equal(again.lookup("synthetic", ["z", "x"]), np.array([[1, 1, 1], [0, 1, 2]], np.float32))
    with pytest.raises(KeyError, match="'w'"):
        again.lookup("synthetic", ["w"])
    assert not list(tmp_path.glob("*.pkl")) and len(list(tmp_path.glob("synthetic-*.parquet"))) == 2
    messages = []
    fresh = EmbeddingStore(tmp_path, "clip-b", messages.append)
    assert fresh.missing("synthetic", ["x"]) == ["x"] and "scorer changed" in messages[0]
