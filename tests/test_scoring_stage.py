"""The score stage on a copy of the tiny run: saved embeddings, --rescore without a model, resume, filters."""

import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from discl.cli import main
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
    from discl.stages import mine as mine_stage

    monkeypatch.setattr(mine_stage, "load_base_classifier", _no_model)
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
