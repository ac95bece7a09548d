"""The whole pipeline at minimal settings, each stage's outputs, and re-running stages alone."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from discl.cli import main
from discl.config import load_config
from discl.data.images import load_images
from discl.rundir import RunDir
from discl.scoring.run_scorer import ensure_scorer
from discl.stages.demo import run_demo
from discl.tables import SCHEMAS, read_table

from .conftest import TINY


def test_every_table_has_its_schema(tiny_run):
    run, _ = tiny_run
    for kind, path in [("dataset", run.dataset), ("classes", run.classes), ("hard", run.hard), ("synthetic", run.synthetic),
                       ("scores", run.scores), ("metrics", run.metrics), ("train_log", run.method_dir("non-adaptive") / "log.parquet")]:
        frame = read_table(path, kind)
        assert list(frame.columns) == SCHEMAS[kind].names, kind
        assert len(frame), kind


def test_synthetic_table_matches_the_files(tiny_run):
    run, _ = tiny_run
    hard, synthetic, scores = (pd.read_parquet(p) for p in (run.hard, run.synthetic, run.scores))
    assert len(synthetic) == len(hard) * 3 * 2  # strengths x seeds of TINY
    assert synthetic["synthetic_id"].is_unique
    assert set(synthetic["source_id"]) == set(hard["sample_id"])
    assert (synthetic["image_guidance"] == 100 - (100 * synthetic["strength"]).round()).all()
    files = {p.relative_to(run.root).as_posix() for p in run.synthetic_images.rglob("*.png")}
    assert files == set(synthetic["path"])
    for path in synthetic["path"]:
        with Image.open(run.resolve(path)) as image:
            assert image.size == (16, 16) and image.mode == "RGB"
    assert scores["synthetic_id"].tolist() == synthetic["synthetic_id"].tolist()
    # The folder doubles as a Hugging Face imagefolder dataset.
    meta = pd.read_json(run.synthetic_images / "metadata.jsonl", lines=True)
    assert sorted("synthetic/" + meta["file_name"]) == sorted(synthetic["path"])
    assert scores["text_sim"].between(-1, 1).all() and scores["image_sim"].between(-1, 1).all()


def test_hard_samples_follow_the_rules(tiny_run):
    run, _ = tiny_run
    hard = pd.read_parquet(run.hard)
    cfg = load_config(run.root)
    assert cfg.mine.rules == ["few_shot"]
    assert (hard["bucket"] == "few").all() and (hard["reason"] == "few_shot").all()
    assert set(pd.read_parquet(run.classes).query("bucket == 'few'").label) <= set(hard.label)


def test_curriculum_log_and_metrics(tiny_run):
    run, result = tiny_run
    log = pd.read_parquet(run.method_dir("non-adaptive") / "log.parquet")
    assert log["level"].tolist() == [0, 50, 100, -1]
    assert (log.loc[log.level == 0, "n_synthetic"] > 0).all() and (log.loc[log.level == -1, "n_synthetic"] == 0).all()
    assert pd.read_parquet(run.method_dir("real-only") / "log.parquet")["n_synthetic"].eq(0).all()
    metrics = pd.read_parquet(run.metrics)
    assert sorted(metrics["method"].unique()) == ["non-adaptive", "real-only"]
    assert set(metrics["bucket"]) == {"many", "medium", "few", "overall"}
    assert metrics["accuracy"].between(0, 100).all()
    assert (run.root / "report.html").stat().st_size > 0 and "report" in result["timings"]
    cfg = load_config(run.root)
    test_rows = pd.read_parquet(run.dataset).query("split == 'test'")
    assert result["clip_zero_shot"] == pytest.approx(_nearest_caption_hits(run, cfg, test_rows).mean())
    consistency = result["class_consistency"]
    at_full_strength = pd.read_parquet(run.synthetic).query("strength == 1.0")
    assert consistency["n_images"] == len(at_full_strength) == len(pd.read_parquet(run.hard)) * 2  # one per seed
    assert consistency["clip"] == pytest.approx(_nearest_caption_hits(run, cfg, at_full_strength).mean())
    for judge in ("base", "base_on_real"):  # a share of whole images judged
        n = len(at_full_strength) if judge == "base" else len(test_rows[test_rows.label.isin(at_full_strength.label)])
        assert consistency[judge] * n == pytest.approx(round(consistency[judge] * n)), judge
    assert yaml.safe_load((run.root / "config.yaml").read_text()) == load_config(None, None, TINY).to_dict()


def _nearest_caption_hits(run, cfg, rows):
    """Per row: whether the run's CLIP scorer puts its image nearest (cosine) to its own class caption.
    Computed here from the embeddings, apart from discl.stages.quality."""
    scorer = ensure_scorer(run, cfg, echo=lambda *_: None, progress=False)
    classes = pd.read_parquet(run.classes).sort_values("label")
    captions = [cfg.score.caption_template.format(name=name) for name in classes["class_name"]]
    images = torch.nn.functional.normalize(scorer.embed_images(load_images([run.resolve(p) for p in rows["path"]], cfg.data.image_size)), dim=-1)
    texts = torch.nn.functional.normalize(scorer.embed_texts(captions), dim=-1)
    nearest = classes["label"].to_numpy()[(images @ texts.T).argmax(-1).numpy()]
    return nearest == rows["label"].to_numpy()


def test_stages_rerun_alone_on_a_moved_run_directory(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    moved = tmp_path / "moved run"
    shutil.copytree(run.root, moved)
    before = pd.read_parquet(moved / "metrics.parquet")
    for stage in ("generate", "score", "eval"):
        with pytest.raises(SystemExit) as exit_info:
            main([stage, str(moved), "--no-progress"])
        assert exit_info.value.code == 0, stage
    out = capsys.readouterr().out
    assert "(0 new," in out  # every image was already there
    pd.testing.assert_frame_equal(pd.read_parquet(moved / "metrics.parquet"), before)
    pd.testing.assert_frame_equal(pd.read_parquet(moved / "scores.parquet"), pd.read_parquet(run.scores))


def test_same_config_same_images_and_numbers_whatever_the_batch_size(tiny_run, tmp_path):
    run, _ = tiny_run
    again = RunDir(tmp_path / "again")
    run_demo(again, load_config(None, None, TINY + ["generate.batch_size=5"]), echo=lambda *_: None, progress=False)
    synthetic = pd.read_parquet(run.synthetic)
    assert pd.read_parquet(again.synthetic)["noise_seed"].tolist() == synthetic["noise_seed"].tolist()
    for path in synthetic["path"]:
        assert np.array_equal(np.asarray(Image.open(run.resolve(path))), np.asarray(Image.open(again.resolve(path)))), path
    pd.testing.assert_frame_equal(pd.read_parquet(again.metrics), pd.read_parquet(run.metrics))


def test_a_stage_without_its_inputs_says_which_stage_to_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(tmp_path / "empty"), "--no-progress"])
    assert exit_info.value.code == 2
    assert "run the stage that writes the hard table first" in capsys.readouterr().err
    assert not any((tmp_path / "empty").iterdir())  # not even config.yaml: the command failed
