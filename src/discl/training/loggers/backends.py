"""The logger backends of train.loggers, each on its library's own client (imported only here)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from . import LoggerSpec


class TensorBoardLogger:
    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))

    def log_params(self, params: dict[str, Any]) -> None:
        self.writer.add_text("settings", "```\n" + json.dumps(params, indent=1, default=str) + "\n```", 0)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_image(self, key: str, image: Image.Image, step: int) -> None:
        self.writer.add_image(key, np.asarray(image.convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, spec: LoggerSpec):
        import wandb

        folder = Path(os.environ.get("WANDB_DIR") or spec.directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.wandb = wandb
        # WANDB_MODE (offline, disabled), WANDB_ENTITY and the API key are read by wandb itself, from the environment.
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "discl"), name=spec.name, group=spec.run_root.name,
                              job_type=spec.method, dir=str(folder), reinit="create_new",
                              settings=wandb.Settings(console="off"))

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def log_image(self, key: str, image: Image.Image, step: int) -> None:
        self.run.log({key: self.wandb.Image(image)}, step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowLogger:
    def __init__(self, spec: LoggerSpec):
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            # discl's default: a local store in the run directory (MLflow keeps its file store, in maintenance
            # mode, behind this switch; a database or server is one MLFLOW_TRACKING_URI away).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (spec.directory / "mlruns").resolve().as_uri()
        self.client = MlflowClient(uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "discl")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else self.client.create_experiment(name)
        self.run_id = self.client.create_run(experiment_id, run_name=spec.name,
                                             tags={"discl.method": spec.method, "discl.run": str(spec.run_root)}).info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        # MLflow caps a parameter's value (6000 characters); settings are short, lists of templates the longest.
        values = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(values), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=values[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def log_image(self, key: str, image: Image.Image, step: int) -> None:
        self.client.log_image(self.run_id, image, artifact_file=f"{key}.png")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
