"""Issue 25's tries, through the command line: a model is kept only while what made it is unchanged, a
failed stage leaves the run directory as it was, and a damaged file is named (and repaired where it can be)."""

import errno
import re

import pandas as pd
import pytest
from click.testing import CliRunner

import discl
from discl.cli import main
from discl.config import ConfigError, load_config
from discl.lock import RunLock
from discl.tables import table_meta

from .conftest import tree_state


def cli(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def fails_cleanly(args, root, expected: str, ignore: str | None = None) -> str:
    """``discl *args`` exits 2 with one `error:` line containing ``expected`` and leaves ``root`` as it was
    (files whose path matches ``ignore`` excepted: a retrain's staging folder, which a rerun resumes from)."""
    def state():
        return {k: v for k, v in tree_state(root).items() if not (ignore and re.search(ignore, k))}

    before = state()
    result = cli(args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert state() == before
    return lines[0]


def weights(run, method: str) -> bytes:
    return (run.method_dir(method) / "model.safetensors").read_bytes()


def test_a_new_kept_set_makes_the_models_that_read_it_stale_and_only_those_retrain(run_copy):
    run, _ = run_copy
    root = run.root
    real, curriculum = weights(run, "real-only"), weights(run, "non-adaptive")
    # score keeps other images: eval refuses the curriculum model, naming what changed and the command
    threshold = float(pd.read_parquet(run.scores)["text_sim"].median())  # about half the images kept
    assert cli(["score", root, "--no-progress", "--rescore", "--set", f"score.text_threshold={threshold}"]).exit_code == 0
    kept = int(pd.read_parquet(run.scores)["kept"].sum())
    assert 0 < kept < len(pd.read_parquet(run.scores))
    fails_cleanly(["eval", root], root, f"{run.method_dir('non-adaptive')} holds a model trained on other inputs or settings "
                  f"than the run's (changed: the kept synthetic images (synthetic.parquet + scores.parquet)); run `discl train {root}` first")
    # train redoes exactly what depends on the kept set: the real-only model stays byte for byte
    result = cli(["train", root, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"non-adaptive: the settings or inputs changed since {run.method_dir('non-adaptive')} was trained (the kept synthetic images" in result.output
    assert "real-only: the settings" not in result.output
    assert weights(run, "real-only") == real and weights(run, "non-adaptive") != curriculum
    log = pd.read_parquet(run.method_dir("non-adaptive") / "log.parquet")
    assert log["n_synthetic"].max() <= kept
    assert not any(p.name.startswith(".") for p in run.train.iterdir())  # staging folders swapped in
    # the report marks the results table (and the examples) as older than their model until eval runs
    assert cli(["report", root]).exit_code == 0
    page = run.report.read_text()
    assert "This table is older than its inputs: non-adaptive retrained or removed after metrics.parquet was written" in page
    assert "retrained since: older than its model" in page
    assert cli(["eval", root]).exit_code == 0
    assert table_meta(run.metrics)["models"]["non-adaptive"]["settings"]["inputs"]["kept synthetic"]
    assert cli(["report", root]).exit_code == 0
    assert "older than its inputs" not in run.report.read_text()


def test_a_new_hard_set_makes_the_curriculum_model_stale(run_copy):
    run, _ = run_copy
    hard = pd.read_parquet(run.hard)
    hard.iloc[:-1].to_parquet(run.hard)  # as `discl mine --hard-csv NEW.csv` would leave it
    fails_cleanly(["eval", run.root], run.root, "(changed: the hard samples (hard.parquet)); run `discl train")


def test_new_class_buckets_make_every_model_stale(run_copy):
    """The buckets decide tail sampling (and the names FLYP's captions): a prepare with another data.few_below
    leaves the training rows as they were but not the models."""
    run, _ = run_copy
    classes = pd.read_parquet(run.classes)
    classes.loc[classes["bucket"] != "few", "bucket"] = "few"  # as a prepare with a higher data.few_below would
    classes.to_parquet(run.classes)
    fails_cleanly(["eval", run.root], run.root, "(changed: the classes, their names and head/tail buckets (classes.parquet)); "
                  "run `discl train")


def test_the_base_model_is_current_only_for_the_labels_it_learnt(run_copy):
    """The same images with other labels (a dataset read with another label column) make the cached base
    classifier stale, though every sample id is the same."""
    from discl.model_cache import classifier_settings, is_current

    run, cfg = run_copy
    dataset = pd.read_parquet(run.dataset)
    train = dataset[dataset["split"] == "train"]
    assert is_current(run.base_model, classifier_settings(cfg.mine.base, cfg.data.image_size, train))
    relabelled = train.assign(label=(train["label"] + 1) % (train["label"].max() + 1))
    assert not is_current(run.base_model, classifier_settings(cfg.mine.base, cfg.data.image_size, relabelled))


def test_a_failed_retrain_leaves_every_model_and_config_as_they_were(run_copy):
    """One truncated synthetic image above the threshold: one error line naming it; the real-only method,
    already retrained under the new settings, waits in its staging folder; train/ and config.yaml are
    unchanged, so eval still accepts every model."""
    run, _ = run_copy
    scores = pd.read_parquet(run.scores)
    kept = scores[scores["kept"] & (scores["image_guidance"] == 0)]["synthetic_id"]  # a level the curriculum trains on
    synthetic = pd.read_parquet(run.synthetic).set_index("synthetic_id")
    broken = run.resolve(synthetic.loc[kept.iloc[0], "path"])
    broken.write_bytes(broken.read_bytes()[:40])
    line = fails_cleanly(["train", run.root, "--no-progress", "--set", "train.classifier.epochs=3",
                          "--set", "train.max_skipped_fraction=0"], run.root, "non-adaptive: ", ignore=r"^train/\.")
    assert "could not be read, e.g." in line and broken.name in line and "fix or remove those files" in line
    assert (run.train / ".real-only.next" / "discl_model.json").exists()
    assert cli(["eval", run.root]).exit_code == 0


def test_score_train_and_generate_exclude_each_other(run_copy):
    run, _ = run_copy
    with RunLock(run.root, "score", command="discl score (test holder)"):
        fails_cleanly(["train", run.root, "--no-progress"], run.root, "is busy: pid ")
        fails_cleanly(["compare", run.root, "--no-progress"], run.root, "`discl score (test holder)`")
    with RunLock(run.root, "train", command="discl train (test holder)"):
        fails_cleanly(["score", run.root, "--no-progress", "--rescore"], run.root, "`discl train (test holder)`")
        # generate rewrites image files in place: neither it nor a shard of it runs beside train
        fails_cleanly(["generate", run.root, "--no-progress"], run.root, "`discl train (test holder)`")
        fails_cleanly(["generate", run.root, "--no-progress", "--shard", "1/3"], run.root, "`discl train (test holder)`")
    with RunLock(run.root, "generate-shard-2-of-3", command="discl generate (test holder)"):
        fails_cleanly(["train", run.root, "--no-progress"], run.root, "`discl generate (test holder)`")
        fails_cleanly(["score", run.root, "--no-progress"], run.root, "`discl generate (test holder)`")


def test_the_api_refuses_a_config_of_other_data(run_copy):
    run, _ = run_copy
    before = tree_state(run.root)
    other = load_config(run.root, None, ["data.max_per_class=7"])
    with pytest.raises(ConfigError, match=r"config= has other data settings than .*config.yaml \(data.max_per_class 20 -> 7\)"):
        discl.train(run.root, config=other, echo=lambda *_: None, progress=False)
    assert tree_state(run.root) == before


def test_a_full_disk_in_generate_puts_config_yaml_back(run_copy, monkeypatch):
    """Once the stage runs, every write fails with ENOSPC (the config.yaml of --set included): the old
    config.yaml is back, by a rename, which needs no space."""
    import discl.atomic
    import discl.stages.generate as stage

    run, _ = run_copy
    saved = run.config.read_bytes()

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    def generate(*_args, **_kwargs):
        monkeypatch.setattr(discl.atomic, "fsync_replace", full)  # no file can be written any more
        full()

    monkeypatch.setattr(stage, "run_generate", generate)
    result = cli(["generate", run.root, "--no-progress", "--set", "generate.text_guidance=5.0"])
    assert result.exit_code == 2 and result.stderr.strip() == "error: [Errno 28] No space left on device"
    assert run.config.read_bytes() == saved
    assert not list(run.root.glob(".config.yaml*"))


def test_a_truncated_task_model_is_named_with_its_repair(run_copy):
    run, _ = run_copy
    path = run.method_dir("real-only") / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    fails_cleanly(["eval", run.root], run.root, f"error: {path} cannot be read (")
    line = fails_cleanly(["eval", run.root], run.root, "the file is damaged or incomplete; `discl train RUN`")
    assert "trains it again" in line


def test_a_damaged_cached_generator_is_trained_again(run_copy):
    from discl import model_cache
    from discl.artefacts import read_meta
    from discl.generation.pixel_diffusion import PixelDiffusionGenerator

    run, _ = run_copy
    folder = run.generator_model
    settings = model_cache.json.loads(model_cache.settings_path(folder).read_text())
    weights_file = folder / read_meta(folder)["weights"]
    weights_file.write_bytes(b"\x00" * 10)
    said = []
    got = model_cache.train_once(run, folder, settings, "the generator", lambda: "trained again", PixelDiffusionGenerator.load, said.append)
    assert got == "trained again"
    assert said[0].startswith(f"warning: {weights_file} cannot be read (") and said[0].endswith("training the generator again")


def test_score_repairs_a_truncated_embeddings_file(run_copy):
    run, _ = run_copy
    scores = pd.read_parquet(run.scores)
    shard = sorted((run.clip_embeddings).glob("synthetic-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:50])
    result = cli(["score", run.root, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"warning: {shard} cannot be read (" in result.output and "its vectors are embedded again" in result.output
    pd.testing.assert_frame_equal(pd.read_parquet(run.scores)[["synthetic_id", "text_sim", "image_sim", "kept"]],
                                  scores[["synthetic_id", "text_sim", "image_sim", "kept"]], atol=1e-5)
    assert cli(["score", run.root, "--no-progress", "--rescore"]).exit_code == 0  # the store is whole again


def test_a_plugin_that_does_not_import_is_one_line(run_copy, monkeypatch):
    """In a fresh process, as from the shell: `discl registry` and a stage each end with one error line."""
    import os
    import subprocess
    import sys

    run, _ = run_copy
    env = dict(os.environ, DISCL_PLUGINS="no_such_module")
    expected = ("error: DISCL_PLUGINS names 'no_such_module', which cannot be imported: No module named 'no_such_module'; "
                "fix the name or unset DISCL_PLUGINS")
    for args in (["registry"], ["train", str(run.root), "--no-progress"]):
        done = subprocess.run([sys.executable, "-m", "discl.cli", *args], env=env, capture_output=True, text=True)
        assert done.returncode == 2 and done.stdout == "" and done.stderr.strip() == expected, done.stderr


def test_workers_beyond_the_data_and_cores_are_capped_with_one_line(run_copy):
    from discl.training.stream import resolve_workers, usable_cores

    run, _ = run_copy
    assert resolve_workers(500, 3) == min(3, usable_cores())
    assert resolve_workers(0, 3) == 0 and resolve_workers(None, 0) == 0
    result = cli(["eval", run.root, "--set", "eval.num_workers=500"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "data loader workers" in line]
    assert notes == [f"note: 500 data loader workers asked for; using {usable_cores()} ({usable_cores()} usable cores per process, "
                     f"{int((pd.read_parquet(run.dataset)['split'] == 'test').sum())} rows to read)"]


def test_a_truncated_table_is_named_with_the_command_that_writes_it(run_copy):
    run, _ = run_copy
    run.scores.write_bytes(run.scores.read_bytes()[:64])
    fails_cleanly(["train", run.root, "--no-progress"], run.root,
                  f"error: {run.scores} cannot be read as a Parquet table (")
    fails_cleanly(["eval", run.root], run.root, "the file is damaged or incomplete; `discl score RUN` writes it again")
