"""train.loggers: TensorBoard, W&B (offline) and MLflow (local store) each get the epoch table, the learning
rate, each stage's level, the adaptive curriculum's scores per level and the spectrum grids, read back with each
library's own reader; a missing package stops before any work; adding a logger changes no result and a run
resumes from its checkpoint with one."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import discl
from discl.config import load_config
from discl.model_cache import method_settings

from .conftest import tree_state

QUIET = {"echo": lambda *_: None, "progress": False}


def wandb_records(path: Path) -> list:
    """The protobuf records of a W&B transaction log (.wandb: LevelDB-style log blocks of 32 KiB after a
    7-byte header), as `wandb sync` reads them."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, chunks = 7, 32768, b"", []
    while pos + 7 <= len(data):
        space = block - pos % block
        if space < 7:
            pos += space
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # the rest of the block is padding
            pos += space
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        else:
            chunks.append(pending + chunk)
    records = []
    for chunk in chunks:
        record = pb.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


def test_every_logger_gets_the_epochs_the_curriculum_scores_and_the_spectrum_grids(run_copy, monkeypatch):
    run, _ = run_copy
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("MLFLOW_TRACKING_URI", "WANDB_DIR", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    log = discl.train(run.root, overrides=["train.methods=[adaptive]", "train.loggers=[tensorboard, wandb, mlflow]"], **QUIET)
    assert len(log) == 4
    curriculum = pd.read_parquet(run.method_dir("adaptive") / "curriculum_log.parquet")
    scored = curriculum[curriculum["level"] >= 0]
    assert len(scored) >= 2  # the adaptive curriculum scored levels at its stage ends
    last_end = scored[scored["epoch"] == scored["epoch"].max()]

    # TensorBoard: event files read by tensorboard's own EventAccumulator
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.root / "logs" / "tensorboard" / "train" / "adaptive"), size_guidance={"images": 0})
    events.Reload()
    for column in ("train_loss", "val_acc", "lr", "level", "n_synthetic"):
        got = [(e.step, e.value) for e in events.Scalars(column)]
        assert [s for s, _ in got] == log["epoch"].tolist(), column
        np.testing.assert_allclose([v for _, v in got], log[column].to_numpy(dtype=float), rtol=1e-6)
    for r in last_end.itertuples():
        (event,) = [e for e in events.Scalars(f"curriculum/progress/level_{r.level}") if e.step == r.epoch]
        assert event.value == pytest.approx(r.progress, rel=1e-6)
    chosen = int(last_end.loc[last_end["chosen"], "level"].iloc[0])
    assert [e.value for e in events.Scalars("curriculum/chosen_level") if e.step == last_end["epoch"].iloc[0]] == [chosen]
    grids = [tag for tag in events.Tags()["images"] if tag.startswith("spectrum/")]
    hard = pd.read_parquet(run.hard)
    assert len(grids) == min(8, len(hard)) and all(tag.split("/")[-1] in set(hard["sample_id"]) for tag in grids)

    # W&B: the offline run folder's transaction log
    (wandb_file,) = (run.root / "logs" / "wandb").glob("offline-run-*/run-*.wandb")
    history = {}
    config = {}
    for record in wandb_records(wandb_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            history.setdefault(int(items["_step"]), {}).update(items)
        elif kind == "config":
            config |= {item.key: item.value_json for item in record.config.update}
    for row in log.itertuples():
        assert float(history[row.epoch]["val_acc"]) == pytest.approx(row.val_acc, rel=1e-6)
        assert float(history[row.epoch]["lr"]) == pytest.approx(row.lr, rel=1e-6)
    assert config["method"] == '"adaptive"' and config["train.levels"] == '"[0, 50, 100]"'
    images = [key for step in history.values() for key in step if key.startswith("spectrum/") and key.endswith("/_type")]
    assert len(images) == len(grids)

    # MLflow: its local store, read through its client
    from mlflow.tracking import MlflowClient

    client = MlflowClient((run.root / "logs" / "mlruns").resolve().as_uri())
    (mlrun,) = client.search_runs([client.get_experiment_by_name("discl").experiment_id])
    assert mlrun.info.run_name == "train/adaptive" and mlrun.info.status == "FINISHED"
    history_lr = sorted((m.step, m.value) for m in client.get_metric_history(mlrun.info.run_id, "lr"))
    np.testing.assert_allclose([v for _, v in history_lr], log["lr"].to_numpy(dtype=float), rtol=1e-6)
    levels = sorted((m.step, m.value) for m in client.get_metric_history(mlrun.info.run_id, "level"))
    assert [int(v) for _, v in levels] == log["level"].tolist()
    assert mlrun.data.params["train.classifier.epochs"] == "4"
    artifacts = [a.path for a in client.list_artifacts(mlrun.info.run_id, "spectrum")]
    assert len(artifacts) == len({tag.split("/")[1] for tag in grids})  # one folder per class shown


def test_a_logger_whose_package_is_missing_stops_before_any_work(run_copy, monkeypatch):
    import importlib.util

    run, _ = run_copy
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    before = tree_state(run.root)
    with pytest.raises(ValueError) as err:
        discl.train(run.root, overrides=["train.loggers=[tensorboard, wandb]"], **QUIET)
    assert str(err.value) == ("train.loggers names 'wandb', whose package 'wandb' is not installed: "
                              "pip install 'discl[wandb]'")
    assert tree_state(run.root) == before


def test_loggers_are_not_part_of_the_settings_a_model_is_checked_against(tiny_config, tiny_overrides):
    rows = pd.DataFrame({"sample_id": ["a", "b"]})
    with_loggers = load_config(None, None, [*tiny_overrides, "train.loggers=[tensorboard, mlflow]"])
    assert method_settings(with_loggers, "adaptive", rows) == method_settings(tiny_config, "adaptive", rows)


def test_a_run_resumes_from_its_checkpoint_with_a_logger_added_to_the_same_result(run_copy):
    run, cfg = run_copy
    from discl.training.methods import load_inputs, train_method

    done = pd.read_parquet(run.method_dir("real-only") / "log.parquet")  # the fixture's uninterrupted run
    folder = run.method_dir("real-only")
    for path in folder.iterdir():
        path.unlink()
    inputs = load_inputs(run, cfg, ["real-only"], lambda *_: None)
    part, _ = train_method(run, cfg, "real-only", inputs, folder, stop_after=2, **QUIET)
    assert len(part) == 2
    said: list[str] = []
    log = discl.train(run.root, overrides=["train.methods=[real-only]", "train.loggers=[tensorboard]"],
                      echo=said.append, progress=False)
    assert any("resuming after epoch 2 of 4" in line for line in said)
    assert len(log) == 4
    again = pd.read_parquet(folder / "log.parquet")
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), done.drop(columns="seconds"))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.root / "logs" / "tensorboard" / "train" / "real-only"))
    events.Reload()
    assert [e.step for e in events.Scalars("val_acc")] == [2, 3]  # the epochs this call trained
    assert "spectrum" not in " ".join(events.Tags()["images"])  # real-only trains on no synthetic image
