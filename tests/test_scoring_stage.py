"""The score stage on a copy of the tiny run: saved embeddings, --rescore without a model, resume, filters."""

import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from discl.cli import main
from discl.scoring.run_scorer import scores_match
from discl.stages import score as score_stage


def _no_model(*_, **__):
    raise AssertionError("a model was loaded")


def test_rescore_uses_saved_embeddings_only(run_copy, monkeypatch):
    run, cfg = run_copy
    before = pd.read_parquet(run.scores)
    assert list((run.root / "embeddings" / "clip").glob("synthetic-*.parquet"))
    monkeypatch.setattr(score_stage, "ensure_scorer", _no_model)
    cfg.score.text_threshold = float(np.median(before["text_sim"]))
    out = score_stage.run_score(run, cfg, echo=lambda *_: None, progress=False, rescore=True)
    assert np.allclose(out["text_sim"], before["text_sim"]) and np.allclose(out["image_sim"], before["image_sim"])
    assert out["kept"].tolist() == (out["text_sim"] >= cfg.score.text_threshold).tolist()
    summary = pd.read_parquet(score_stage.summary_path(run))
    assert summary["generated"].sum() == len(out) and summary["kept"].sum() == out["kept"].sum()
    assert (summary["dropped_text"].sum()) == (~out["kept"]).sum()


def test_rescore_without_saved_embeddings_is_a_clear_cli_error(run_copy):
    run, _ = run_copy
    shutil.rmtree(run.root / "embeddings")
    result = CliRunner().invoke(main, ["score", str(run.root), "--rescore", "--no-progress"])
    assert result.exit_code == 2
    assert "--rescore needs saved embeddings" in result.output and "synthetic embeddings are missing" in result.output


def test_interrupted_scoring_resumes_and_matches_a_full_run(run_copy, monkeypatch):
    run, cfg = run_copy
    reference = pd.read_parquet(run.scores)
    shutil.rmtree(run.root / "embeddings")
    monkeypatch.setattr(score_stage, "CHUNK", 7)
    real_ensure = score_stage.ensure_scorer
    embedded = []

    def counting(*args, crash_after=None, **kwargs):
        scorer = real_ensure(*args, **kwargs)
        inner = scorer.embed_images

        def embed_images(images):
            if crash_after is not None and len(embedded) >= crash_after:
                raise KeyboardInterrupt
            embedded.append(len(images))
            return inner(images)

        scorer.embed_images = embed_images
        return scorer

    monkeypatch.setattr(score_stage, "ensure_scorer", lambda *a, **k: counting(*a, crash_after=3, **k))
    with pytest.raises(KeyboardInterrupt):
        score_stage.run_score(run, cfg, echo=lambda *_: None, progress=False)
    done_before = sum(embedded)
    embedded.clear()
    monkeypatch.setattr(score_stage, "ensure_scorer", counting)
    out = score_stage.run_score(run, cfg, echo=lambda *_: None, progress=False)
    n_sources = len(pd.read_parquet(run.hard))
    assert done_before + sum(embedded) == n_sources + len(reference)  # nothing embedded twice
    assert np.allclose(out["text_sim"], reference["text_sim"], atol=1e-5)
    assert np.allclose(out["image_sim"], reference["image_sim"], atol=1e-5)


def test_confidence_filter_and_cap_in_the_stage(run_copy, monkeypatch):
    run, cfg = run_copy
    cfg.score.confident_wrong = 0.6
    cfg.score.max_per_class = 1
    out = score_stage.run_score(run, cfg, echo=lambda *_: None, progress=False)
    assert out["base_p_true"].between(0, 1).all() and (out["base_pred"] >= 0).all()
    wrong = (out["base_pred"] != out["label"]) & (out["base_p_pred"] >= 0.6)
    assert out.loc[wrong, "drop_reason"].str.contains("confident_wrong").all()
    assert not out.loc[~wrong, "drop_reason"].str.contains("confident_wrong").any()
    assert out[out["kept"]].groupby(["label", "image_guidance"]).size().max() == 1
    assert list((run.root / "embeddings" / "base").glob("synthetic-*.parquet"))
    # Rescoring with another confidence threshold reuses the saved predictions: no model at all.
    import discl.mining as mining  # load_judge's loader of the base model

    monkeypatch.setattr(mining, "load_base_classifier", _no_model)
    monkeypatch.setattr(score_stage, "ensure_scorer", _no_model)
    cfg.score.confident_wrong, cfg.score.max_per_class = 0.9, None
    again = score_stage.run_score(run, cfg, echo=lambda *_: None, progress=False, rescore=True)
    assert np.allclose(again["base_p_true"], out["base_p_true"])
    strict = (again["base_pred"] != again["label"]) & (again["base_p_pred"] >= 0.9)
    assert again["drop_reason"].str.contains("confident_wrong").tolist() == strict.tolist()


def test_missing_synthetic_image_is_named(run_copy):
    run, cfg = run_copy
    shutil.rmtree(run.root / "embeddings")
    victim = pd.read_parquet(run.synthetic)["path"].iloc[3]
    run.resolve(victim).unlink()
    with pytest.raises(FileNotFoundError, match=victim.split("/")[-1]):
        score_stage.run_score(run, cfg, echo=lambda *_: None, progress=False)


def test_unknown_label_in_synthetic_table_is_named(run_copy):
    from discl.tables import write_table

    run, cfg = run_copy
    synthetic = pd.read_parquet(run.synthetic)
    synthetic.loc[0, "label"] = 99
    write_table(synthetic, run.synthetic, "synthetic")
    with pytest.raises(ValueError, match=f"{synthetic.loc[0, 'synthetic_id']}.*label 99"):
        score_stage.run_score(run, cfg, echo=lambda *_: None, progress=False)


def _state(root):
    from .conftest import tree_state

    return tree_state(root)


def test_rescore_with_another_scorer_refuses_and_keeps_every_embedding(run_copy):
    """`--rescore --set score.model=NoSuchModel`: one line naming what changed; no model loaded, nothing deleted."""
    run, _ = run_copy
    before = _state(run.root)
    result = CliRunner().invoke(main, ["score", str(run.root), "--rescore", "--set", "score.backend=open_clip", "--set", "score.model=NoSuchModel"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"error: --rescore: the embeddings in {run.root / 'embeddings' / 'clip'} come from another scorer (")
    assert "score.backend 'tiny-clip' -> 'open_clip'" in line and "score.model None -> 'NoSuchModel'" in line
    assert "run `discl score` without --rescore" in line
    assert _state(run.root) == before


def test_a_scorer_that_fails_to_load_leaves_the_store_untouched(run_copy):
    run, _ = run_copy
    before = _state(run.root)
    result = CliRunner().invoke(main, ["score", str(run.root), "--set", "score.backend=open_clip", "--set", "score.model=NoSuchModel"])
    assert result.exit_code == 2 and result.stderr == "error: 'NoSuchModel' is not an open_clip model name (e.g. 'ViT-B-32'; open_clip.list_models() lists them)\n"
    assert _state(run.root) == before


def test_a_new_scorer_replaces_the_old_vectors_only_when_complete(tmp_path):
    from discl.scoring.embeddings import EmbeddingStore

    old = EmbeddingStore(tmp_path / "clip", "a", echo=lambda *_: None, scorer={"score.model": "A"})
    old.add("synthetic", ["x", "y"], np.ones((2, 3), np.float32))
    messages = []
    new = EmbeddingStore(tmp_path / "clip", "b", echo=messages.append, scorer={"score.model": "B"})
    assert "replace the old ones once complete" in messages[0] and new.holds_other_scorer and new.saved_scorer == {"score.model": "A"}
    new.add("synthetic", ["x"], np.zeros((1, 3), np.float32))  # interrupted here: the old vectors are all still there
    assert EmbeddingStore(tmp_path / "clip", "a", echo=lambda *_: None).missing("synthetic", ["x", "y"]) == []
    resumed = EmbeddingStore(tmp_path / "clip", "b", echo=lambda *_: None)
    assert resumed.missing("synthetic", ["x", "y"]) == ["y"]  # resumes in the staging folder
    resumed.add("synthetic", ["y"], np.zeros((1, 3), np.float32))
    resumed.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]
    assert np.array_equal(EmbeddingStore(tmp_path / "clip", "b").lookup("synthetic", ["y", "x"]), np.zeros((2, 3), np.float32))


def test_remade_images_are_embedded_again_and_only_they(run_copy, monkeypatch):
    from discl.tables import write_table

    run, cfg = run_copy
    synthetic = pd.read_parquet(run.synthetic)
    assert scores_match(run, synthetic)
    synthetic.loc[[0, 3], "fingerprint"] = "0123456789abcdef"  # as generate leaves images it has made again
    write_table(synthetic, run.synthetic, "synthetic")
    assert not scores_match(run, synthetic)
    real_ensure = score_stage.ensure_scorer
    embedded = []

    def counting(*args, **kwargs):
        scorer = real_ensure(*args, **kwargs)
        inner = scorer.embed_images
        scorer.embed_images = lambda images: embedded.append(len(images)) or inner(images)
        return scorer

    monkeypatch.setattr(score_stage, "ensure_scorer", counting)
    score_stage.run_score(run, cfg, echo=lambda *_: None, progress=False)
    assert sum(embedded) == 2 and scores_match(run, synthetic)


def test_the_filter_record_names_the_class_names_the_captions_use(run_copy):
    """prompts.names changes the captions text_sim compares with, so it is recorded with the verdicts (and
    shown by the report) where it is not the default."""
    from discl.report.build import build_report
    from discl.tables import table_meta

    run, cfg = run_copy
    assert "prompts.names" not in table_meta(run.scores)["filters"]
    cfg.prompts.names = "reference"
    score_stage.run_score(run, cfg, echo=lambda *_: None, progress=False)
    assert table_meta(run.scores)["filters"]["prompts.names"] == "reference"
    assert "prompts.names reference" in build_report(run, run.root / "r.html").read_text(encoding="utf-8")
