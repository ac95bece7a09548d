"""Every stage as a Python function (``discl.prepare``, ``discl.mine``, ...), doing what its `discl`
command does: the same settings, the same lock, and the settings it ran with saved to
``RUN/config.yaml`` (put back as they were if the stage fails), so the next stage, from Python or
from the command line, runs with them.

Settings, as on the command line: defaults, then ``RUN/config.yaml``, then ``recipe``, then
``config_file``, then ``overrides`` (``["section.key=value", ...]``, as ``--set`` takes them). Or pass
a ``RunConfig`` as ``config``: it is used as it is (``overrides`` still apply over it). Messages go to
``echo``; ``progress=False`` hides progress bars. Stages import torch only when called.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .config import RunConfig, with_overrides
from .session import generate_locks, report_session, stage_session

if TYPE_CHECKING:
    import pandas as pd

    from .llm import ChatClient
    from .training.callbacks import Callback

Echo = Callable[..., Any]
PathLike = str | Path


def _settings(name: str, config: RunConfig | None, recipe: str | None, config_file: PathLike | None,
              overrides: Iterable[str], extra: Iterable[str] = ()) -> dict[str, Any]:
    """stage_session's settings arguments: loaded like the CLI, or ``config`` (a copy, so stage-only
    changes never reach the caller's object) with ``overrides``, then the stage's ``extra`` settings, over it."""
    if isinstance(overrides, str):  # one setting given bare would be read character by character
        raise TypeError("overrides is a list of 'section.key=value' strings")
    overrides = (*overrides, *extra)
    if any(not isinstance(o, str) for o in overrides):
        raise TypeError("overrides is a list of 'section.key=value' strings")
    command = f"discl.{name}() in Python"
    if config is None:
        return {"config_file": Path(config_file) if config_file is not None else None, "overrides": overrides,
                "recipe": recipe, "command": command}
    if recipe is not None or config_file is not None:
        raise TypeError("give either config= (a RunConfig) or recipe=/config_file=, not both")
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig (from discl.load_config), got {type(config).__name__}")
    return {"config": with_overrides(config, overrides) if overrides else copy.deepcopy(config), "command": command}


def prepare(run_dir: PathLike, config: RunConfig | None = None, *, recipe: str | None = None,
            config_file: PathLike | None = None, overrides: Iterable[str] = (), echo: Echo = print) -> pd.DataFrame:
    """`discl prepare`: build the run directory's tables from the dataset (``data.*``); the only stage
    besides `demo` that creates ``run_dir``.

    Reads the dataset; writes ``dataset.parquet``, ``classes.parquet``, ``skipped.parquet`` and
    ``config.yaml``. Returns the dataset table (one row per image, with its split)."""
    from .stages.prepare import run_prepare
    from .tables import read_table

    with stage_session(run_dir, "prepare", creates=True, **_settings("prepare", config, recipe, config_file, overrides)) as (run, cfg):
        run_prepare(run, cfg, echo)
    return read_table(run.dataset, "dataset")


def mine(run_dir: PathLike, config: RunConfig | None = None, *, recipe: str | None = None, config_file: PathLike | None = None,
         overrides: Iterable[str] = (), echo: Echo = print, progress: bool = True, hard_csv: PathLike | None = None,
         folds: int | None = None) -> pd.DataFrame:
    """`discl mine`: flag hard samples with a base model (trained here, or ``mine.base_weights``) by ``mine.rules``.

    Reads the training split; writes ``models/base/``, ``hard.parquet`` and ``config.yaml``. ``hard_csv``
    imports the hard samples from a reference CSV instead; ``folds`` mines out of fold (``mine.folds``).
    Returns the hard-sample table."""
    from .stages.mine import run_mine

    extra = ([f"mine.hard_csv={Path(hard_csv).resolve()}"] if hard_csv else []) + ([f"mine.folds={folds}"] if folds is not None else [])
    settings = _settings("mine", config, recipe, config_file, overrides, extra)
    with stage_session(run_dir, "mine", **settings) as (run, cfg):
        return run_mine(run, cfg, echo, progress)


def prompts(run_dir: PathLike, config: RunConfig | None = None, *, recipe: str | None = None,
            config_file: PathLike | None = None, overrides: Iterable[str] = (), echo: Echo = print, llm: bool | None = None,
            client: ChatClient | None = None) -> dict[str, list[str]]:
    """`discl prompts` (optional): prompt templates per dataset and, with ``llm`` (default ``prompts.llm``),
    descriptions per class from the chat endpoint in ``prompts.*`` (or ``client``).

    Reads ``classes.parquet``; writes ``prompts.json`` (a cache) and ``config.yaml``. ``llm`` applies to this
    call only. Returns {class name: its prompts}."""
    from .stages.prompts import run_prompts

    with stage_session(run_dir, "prompts", **_settings("prompts", config, recipe, config_file, overrides)) as (run, cfg):
        if llm is not None:
            cfg.prompts.llm = llm
        return run_prompts(run, cfg, echo, client=client)


def generate(run_dir: PathLike, config: RunConfig | None = None, *, recipe: str | None = None,
             config_file: PathLike | None = None, overrides: Iterable[str] = (), echo: Echo = print, progress: bool = True,
             dry_run: bool = False, shard: str | None = None, engine: Literal["local", "ray"] | None = None) -> pd.DataFrame:
    """`discl generate`: the spectrum of synthetic images for every hard sample (``generate.*``).

    Reads ``hard.parquet``; writes ``synthetic/``, ``synthetic.parquet`` and ``config.yaml``. ``dry_run``
    reports the plan and the work left and writes nothing (config.yaml included); ``shard="I/N"`` makes
    only shard I of N (shards may run side by side); ``engine`` ("local" or "ray") applies to this call
    only. Returns the synthetic-image table."""
    from .generation.shards import parse_shard
    from .stages.generate import run_generate

    if engine not in (None, "local", "ray"):  # checked here: the assignment below bypasses config validation
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    lock, others = generate_locks(parse_shard(shard))
    settings = _settings("generate", config, recipe, config_file, overrides)
    with stage_session(run_dir, lock, others=others, saves=not dry_run, **settings) as (run, cfg):
        if engine:
            cfg.generate.engine = engine
        return run_generate(run, cfg, echo, progress, dry_run=dry_run, shard=shard)


def score(run_dir: PathLike, config: RunConfig | None = None, *, recipe: str | None = None,
          config_file: PathLike | None = None, overrides: Iterable[str] = (), echo: Echo = print, progress: bool = True,
          rescore: bool = False) -> pd.DataFrame:
    """`discl score`: CLIP image-image and image-text similarities of every synthetic image, and the filters.

    Reads ``synthetic.parquet``; writes ``embeddings/``, ``scores.parquet``, ``score_summary.parquet`` and
    ``config.yaml``. ``rescore`` applies the current filters to the saved embeddings only (no model is
    loaded). Returns the scores table."""
    from .stages.score import run_score

    with stage_session(run_dir, "score", **_settings("score", config, recipe, config_file, overrides)) as (run, cfg):
        return run_score(run, cfg, echo, progress, rescore=rescore)


def train(run_dir: PathLike, config: RunConfig | None = None, *, recipe: str | None = None,
          config_file: PathLike | None = None, overrides: Iterable[str] = (), echo: Echo = print, progress: bool = True,
          callbacks: Iterable[Callback] = ()) -> pd.DataFrame:
    """`discl train`: the task classifier for each method in ``train.methods`` (resumable; one rank
    under torchrun).

    Reads the real data and the kept synthetic data; writes ``train/<method>/`` and ``config.yaml``.
    ``callbacks`` (``discl.Callback`` subclasses) are told of every method's epochs, stages, checkpoints
    and end. Returns the training log of every method."""
    from .stages.train import run_train_from_env

    with stage_session(run_dir, "train", **_settings("train", config, recipe, config_file, overrides)) as (run, cfg):
        return run_train_from_env(run, cfg, echo, progress, list(callbacks))


def evaluate(run_dir: PathLike, config: RunConfig | None = None, *, recipe: str | None = None,
             config_file: PathLike | None = None, overrides: Iterable[str] = (), echo: Echo = print) -> pd.DataFrame:
    """`discl eval`: top-1 accuracy overall / many / medium / few of each trained method on the test split.

    Reads ``train/<method>/`` and the test split; writes ``metrics.parquet``, ``predictions.parquet`` and
    ``config.yaml``. Returns the metrics table."""
    from .stages.evaluate import run_eval

    with stage_session(run_dir, "eval", **_settings("evaluate", config, recipe, config_file, overrides)) as (run, cfg):
        return run_eval(run, cfg, echo)


COMPARE_METHODS = ("real-only", "all-synthetic", "non-adaptive", "adaptive", "random", "reverse")


def compare(run_dir: PathLike, config: RunConfig | None = None, *, recipe: str | None = None,
            config_file: PathLike | None = None, overrides: Iterable[str] = (), echo: Echo = print, progress: bool = True,
            methods: Iterable[str] = COMPARE_METHODS, seeds: Iterable[int] = (0, 1, 2),
            losses: Iterable[str] = ("ce", "bs")) -> pd.DataFrame:
    """`discl compare`: train every method for every loss ("ce", "bs") and seed on a scored run.

    Reads a scored run; writes ``compare/<task>/`` (models, ``table.md``: mean ± std, the paper's format) and
    ``config.yaml``. Returns the results of every method, loss and seed."""
    from .stages.compare import run_compare

    with stage_session(run_dir, "compare", **_settings("compare", config, recipe, config_file, overrides)) as (run, cfg):
        return run_compare(run, cfg, list(methods), [int(s) for s in seeds], list(losses), echo, progress)


def report(run_dir: PathLike, *, out: PathLike | None = None, max_grids: int = 24, method: str | None = None,
           baseline: str = "real-only") -> Path:
    """`discl report`: one self-contained HTML page of the run (spectra, filter statistics, curriculum,
    training curves, results), comparing ``method`` (default: the first other trained one) with ``baseline``.

    Reads every table of the run (and no settings); writes ``out`` (default ``RUN/report.html``) and
    returns its path."""
    from .report.build import ReportOptions, build_report

    with report_session(run_dir, command="discl.report() in Python") as run:
        return build_report(run, Path(out) if out is not None else None,
                            ReportOptions(max_grids=max_grids, method=method, baseline=baseline))


def export(run_dir: PathLike, out: PathLike, *, format: Literal["imagefolder", "hf"] = "imagefolder", with_real: bool = False,
           include_dropped: bool = False, push_to_hub: str | None = None, echo: Echo = print, progress: bool = True) -> Path:
    """`discl export`: the synthetic images the filter kept (``include_dropped``: all, with ``kept``), and with
    ``with_real`` the real training images, each with its class, level, seed, similarities and verdict.

    ``format="imagefolder"`` writes ``out/train/<label>_<class>/...`` and ``out/train/metadata.jsonl`` (read by
    ``datasets.load_dataset("imagefolder", data_dir=out)``); ``"hf"`` saves a ``datasets.DatasetDict`` with
    ``save_to_disk``; ``push_to_hub`` also pushes that dataset to the named hub repository. Reads the run (no
    settings); ``out`` must not exist or be empty. Returns ``out``."""
    from .stages.export import run_export

    with report_session(run_dir, command="discl.export() in Python", lock="export") as run:
        return run_export(run, out, format, with_real, include_dropped, push_to_hub, echo, progress)


def demo(run_dir: PathLike, config: RunConfig | None = None, *, recipe: str | None = None,
         config_file: PathLike | None = None, overrides: Iterable[str] = (), echo: Echo = print, progress: bool = True) -> dict:
    """`discl demo`: every stage, offline, on the built-in digits-lt data, into a fresh ``run_dir``
    (it must not exist or be empty; its config.yaml is not read).

    Writes everything the stages write, and ``report.html``. Returns {"metrics": the metrics table,
    "clip_zero_shot", "class_consistency", "wall_seconds", "timings": seconds per stage}."""
    from .config import load_config
    from .rundir import RunDir
    from .stages.demo import run_demo

    root = Path(run_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"{root} is not empty; the demo writes into a fresh run directory")
    settings = _settings("demo", config, recipe, config_file, overrides)
    cfg = settings["config"] if "config" in settings else load_config(None, settings["config_file"], settings["overrides"], settings["recipe"])
    return run_demo(RunDir(root), cfg, echo, progress)
