"""Composable filters, the per-class summary and the embedding store."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from discl.config import ScorerConfig
from discl.scoring.embeddings import EmbeddingStore
from discl.scoring.filters import (
    BaseModelConfidence,
    Check,
    ClassCap,
    ImageSimInBand,
    TextSimAtLeast,
    apply_filters,
    filters_from_config,
    run_filters,
)
from discl.scoring.summary import score_summary
from discl.tables import read_table, write_table


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
    assert rules == [TextSimAtLeast(0.3), BaseModelConfidence(None, 0.99)] and cap == [ClassCap(4)]
    with pytest.raises(ValueError, match="max_per_class"):
        filters_from_config(ScorerConfig(max_per_class=0))


def test_summary_counts_and_means_per_class_and_level():
    scores = _scores(label=[0, 0, 0, 1], image_guidance=[10, 10, 90, 10], text_sim=[0.4, 0.1, 0.5, 0.2], image_sim=[0.2, 0.6, 0.9, 0.1])
    filtered = run_filters(scores, [TextSimAtLeast(0.3), ImageSimInBand(0.15)])
    summary = score_summary(filtered.scores, filtered.dropped, {0: "fox", 1: "owl"})
    assert summary[["label", "class_name", "image_guidance", "generated", "kept", "dropped_text", "dropped_image"]].values.tolist() == [
        [0, "fox", 10, 2, 1, 1, 0], [0, "fox", 90, 1, 1, 0, 0], [1, "owl", 10, 1, 0, 1, 1]]
    row = summary.iloc[0]
    assert row.strength == pytest.approx(0.9)
    assert row.mean_text_sim == pytest.approx(0.25) and row.mean_text_sim_kept == pytest.approx(0.4)
    assert np.isnan(summary.iloc[2].mean_text_sim_kept)


@dataclass(frozen=True)
class _Dark:
    """A rule the summary code has never heard of: drops images whose image_sim is below ``limit``."""

    limit: float
    name: str = "dark"

    def checks(self, scores):
        return [Check(self.name, f"{self.name}<{self.limit:g}", scores["image_sim"] >= self.limit)]


def test_a_new_or_renamed_rule_gets_its_own_column_in_the_written_summary(tmp_path):
    scores = _scores(label=[0, 0, 0, 0, 1], text_sim=[0.1, 0.5, 0.5, 0.4, 0.5], image_sim=[0.5, 0.05, 0.5, 0.5, 0.5])
    rules = [TextSimAtLeast(0.3), _Dark(0.1), _Dark(0.0, name="never")]
    filtered = run_filters(scores, rules, ClassCap(1))
    assert filtered.scores["drop_reason"].tolist() == ["text_sim<0.3", "dark<0.1", "", "class_cap>1", ""]
    summary = score_summary(filtered.scores, filtered.dropped, {0: "fox", 1: "owl"})
    path = write_table(summary, tmp_path / "score_summary.parquet", "score_summary")
    back = read_table(path, "score_summary")
    counts = ["dropped_text", "dropped_image", "dropped_confident_wrong", "dropped_too_easy", "dropped_cap", "dropped_dark", "dropped_never"]
    assert [c for c in back.columns if c.startswith("dropped_")] == counts  # the documented ones, then the new rules'
    # fox: one dropped by text, one by the new rule, one by the cap; the rule that dropped nothing still has its zero
    assert back[counts].values.tolist() == [[1, 0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0]]
    assert back["kept"].tolist() == [1, 1]


def test_summary_counts_each_rule_by_its_name_not_its_reason_text():
    # The reason's text says nothing of the column; only the check's name does.
    scores = _scores(image_sim=[0.05, 0.5])
    filtered = run_filters(scores, [_Dark(0.1, name="text")])
    assert filtered.scores["drop_reason"].tolist() == ["text<0.1", ""]
    summary = score_summary(filtered.scores, filtered.dropped, {0: "fox"})
    assert summary[["dropped_text", "dropped_image"]].values.tolist() == [[1, 0]]


def test_kept_and_dropped_counts_equal_the_reason_texts_on_random_scores():
    rng = np.random.default_rng(0)
    n = 400
    scores = _scores(label=rng.integers(0, 4, n).tolist(), image_guidance=rng.choice([10, 50, 90], n).tolist(),
                     text_sim=rng.uniform(-0.2, 0.6, n).tolist(), image_sim=rng.uniform(0, 1, n).tolist(),
                     base_pred=rng.integers(0, 4, n).tolist(), base_p_pred=rng.uniform(0, 1, n).tolist(),
                     base_p_true=rng.uniform(0, 1, n).tolist())
    rules, cap = filters_from_config(ScorerConfig(text_threshold=0.1, image_threshold=0.2, image_max=0.9, confident_wrong=0.8,
                                                  too_easy=0.9, max_per_class=5))
    filtered = run_filters(scores, rules, cap)
    summary = score_summary(filtered.scores, filtered.dropped, {})
    parts = filtered.scores["drop_reason"].str.split("+")
    for column, spelled in [("dropped_text", "text_sim<"), ("dropped_image", "image_sim"), ("dropped_confident_wrong", "confident_wrong>="),
                            ("dropped_too_easy", "too_easy>="), ("dropped_cap", "class_cap>")]:
        expected = sum(any(r.startswith(spelled) for r in reasons) for reasons in parts)
        assert expected > 0 and int(summary[column].sum()) == expected, column
    assert int(summary["kept"].sum()) == int((filtered.scores["drop_reason"] == "").sum()) == int(filtered.scores["kept"].sum())
    assert int(summary["generated"].sum()) == n


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
