"""`discl export` and synthetic/metadata.jsonl on a full tiny run, read back with `datasets`."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

import discl
from discl.cli import main
from discl.generation.metadata import matching_scores, write_synthetic_metadata

datasets = pytest.importorskip("datasets")


def _metadata(run) -> pd.DataFrame:
    return pd.read_json(run.synthetic_metadata, lines=True, dtype=False)


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_metadata_says_which_images_the_filter_kept_and_follows_a_rescore(run_copy):
    run, _ = run_copy
    synthetic, scores = pd.read_parquet(run.synthetic), pd.read_parquet(run.scores)
    meta = _metadata(run)
    assert meta["synthetic_id"].tolist() == synthetic["synthetic_id"].tolist()
    assert ("synthetic/" + meta["file_name"]).tolist() == synthetic["path"].tolist()
    both = meta.merge(scores, on="synthetic_id", suffixes=("", "_score"))
    assert len(both) == len(scores)
    assert (both["kept"] == both["kept_score"]).all() and (both["drop_reason"] == both["drop_reason_score"]).all()
    assert np.allclose(both["text_sim"], both["text_sim_score"], atol=1e-6)
    # A rescore with another threshold rewrites the verdicts with scores.parquet.
    threshold = float(np.median(scores["text_sim"]))
    new = discl.score(run.root, overrides=[f"score.text_threshold={threshold}"], rescore=True, echo=lambda *_: None, progress=False)
    assert new["kept"].tolist() != scores["kept"].tolist()
    assert _metadata(run)["kept"].tolist() == new["kept"].tolist()


def test_metadata_of_images_not_scored_yet_has_no_verdict(run_copy):
    run, _ = run_copy
    synthetic = pd.read_parquet(run.synthetic)
    assert matching_scores(run, synthetic) is not None
    fewer = synthetic.iloc[1:]  # as if generate had made another set: scores.parquet scores other images
    assert matching_scores(run, fewer) is None
    write_synthetic_metadata(run, fewer, matching_scores(run, fewer))
    lines = [json.loads(line) for line in run.synthetic_metadata.read_text().splitlines()]
    assert len(lines) == len(fewer) and all(line["kept"] is None and line["text_sim"] is None for line in lines)


def test_an_image_folder_export_reads_back_with_its_labels(run_copy, tmp_path):
    run, _ = run_copy
    out = tmp_path / "export"
    discl.export(run.root, out, with_real=True, echo=lambda *_: None, progress=False)
    synthetic, scores, dataset = (pd.read_parquet(p) for p in (run.synthetic, run.scores, run.dataset))
    kept = synthetic.merge(scores[scores["kept"]][["synthetic_id", "text_sim"]], on="synthetic_id")
    real = dataset[dataset["split"] == "train"]
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert len(loaded) == len(kept) + len(real)
    got = loaded.remove_columns("image").to_pandas()
    assert sorted(got["id"]) == sorted([*kept["synthetic_id"], *real["sample_id"]])
    truth = pd.concat([kept.rename(columns={"synthetic_id": "id"}).assign(level=kept["image_guidance"], source="synthetic"),
                       real.rename(columns={"sample_id": "id"}).assign(level=-1, seed=-1, source="real")])
    both = got.merge(truth, on="id", suffixes=("", "_run"))
    assert (both["label"] == both["label_run"]).all() and (both["class_name"] == both["class_name_run"]).all()
    assert (both["level"] == both["level_run"]).all() and (both["seed"] == both["seed_run"]).all()
    assert (both["source"] == both["source_run"]).all() and both["kept"].all()
    synth = both[both["source"] == "synthetic"]
    assert np.allclose(synth["text_sim"], synth["text_sim_run"], atol=1e-6) and both.loc[both["source"] == "real", "text_sim"].isna().all()
    # Each image is the run's file, pixel for pixel.
    path_of = dict(zip(truth["id"], truth["path"]))
    for i in range(0, len(loaded), max(1, len(loaded) // 7)):
        row = loaded[i]
        assert (np.asarray(row["image"].convert("RGB")) == _pixels(run.resolve(path_of[row["id"]]))).all()
    # Class folders start with the zero-padded label: the folders sort in label order.
    folders = sorted(p.name for p in (out / "train").iterdir() if p.is_dir())
    assert [int(f.split("_")[0]) for f in folders] == sorted(set(both["label"]))


def test_an_hf_export_has_class_labels_and_every_verdict(run_copy, tmp_path):
    run, _ = run_copy
    threshold = float(np.median(pd.read_parquet(run.scores)["text_sim"]))  # some images are dropped
    discl.score(run.root, overrides=[f"score.text_threshold={threshold}"], rescore=True, echo=lambda *_: None, progress=False)
    out = tmp_path / "hf"
    result = CliRunner().invoke(main, ["export", str(run.root), str(out), "--format", "hf", "--include-dropped", "--no-progress"])
    assert result.exit_code == 0, result.output
    loaded = datasets.load_from_disk(str(out))["train"]
    classes = pd.read_parquet(run.classes)
    assert loaded.features["label"].names == classes.sort_values("label")["class_name"].tolist()
    scores = pd.read_parquet(run.scores)
    got = loaded.remove_columns("image").to_pandas().merge(scores, left_on="id", right_on="synthetic_id", suffixes=("", "_s"))
    assert len(got) == len(scores) == len(loaded) and (got["kept"] == got["kept_s"]).all() and (got["label"] == got["label_s"]).all()
    assert got["kept"].any() and not got["kept"].all()
    synthetic = pd.read_parquet(run.synthetic).set_index("synthetic_id")
    row = loaded[len(loaded) // 2]
    assert (np.asarray(row["image"].convert("RGB")) == _pixels(run.resolve(synthetic.loc[row["id"], "path"]))).all()
    assert not list(tmp_path.glob(".hf.cache-*"))  # datasets' working copy is gone


def test_push_to_hub_hands_the_dataset_to_datasets(run_copy, tmp_path, monkeypatch):
    run, _ = run_copy
    pushed = []
    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub", lambda self, repo, **kw: pushed.append((repo, len(self["train"]), kw)))
    monkeypatch.setenv("HF_TOKEN", "hf_secret_do_not_print")
    result = CliRunner().invoke(main, ["export", str(run.root), str(tmp_path / "out"), "--push-to-hub", "me/discl-tail", "--no-progress"])
    assert result.exit_code == 0, result.output
    kept = int(pd.read_parquet(run.scores)["kept"].sum())
    assert pushed == [("me/discl-tail", kept, {})]  # no token passed: huggingface_hub reads HF_TOKEN itself
    assert "hf_secret" not in result.output and (tmp_path / "out" / "train" / "metadata.jsonl").is_file()


def test_bad_exports_fail_with_one_line_before_writing(run_copy, tmp_path, monkeypatch):
    run, _ = run_copy

    def export(*args):
        result = CliRunner().invoke(main, ["export", str(run.root), *map(str, args), "--no-progress"])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
        return lines[0]

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert f"{busy} is not an empty folder" in export(busy)
    assert (busy / "keep.txt").read_text() == "mine"
    monkeypatch.setitem(sys.modules, "datasets", None)
    assert "pip install discl[hf]" in export(tmp_path / "hf", "--format", "hf")
    assert not (tmp_path / "hf").exists()
    monkeypatch.undo()
    synthetic = pd.read_parquet(run.synthetic)
    synthetic.iloc[1:].to_parquet(run.synthetic)  # generate ran again since the scores
    assert "run `discl score" in export(tmp_path / "stale")
    assert not (tmp_path / "stale").exists()
