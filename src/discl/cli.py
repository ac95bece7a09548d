"""The `discl` command line: one subcommand per stage, all working on one run directory."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .config import ConfigError, load_config, save_config
from .rundir import RunDir


def _options(fn):
    fn = click.option("--no-progress", is_flag=True, help="Hide progress bars.")(fn)
    fn = click.option(
        "--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
        help="Override one config value (YAML syntax), e.g. --set train.classifier.epochs=10. Repeatable.",
    )(fn)
    fn = click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                      help="YAML config file (see docs/config.md); applied over the run directory's config.yaml.")(fn)
    return fn


def _setup(run_dir: Path, config_file, overrides):
    run = RunDir(run_dir)
    cfg = load_config(run.root, config_file, overrides)
    save_config(cfg, run.root)
    return run, cfg


def _stage(name: str, help_text: str, needs_progress: bool = True):
    def register(fn):
        @main.command(name, help=help_text)
        @click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
        @_options
        def command(run_dir, config_file, overrides, no_progress):
            run, cfg = _setup(run_dir, config_file, overrides)
            if needs_progress:
                fn(run, cfg, click.echo, not no_progress)
            else:
                fn(run, cfg, click.echo)

        return command

    return register


class _Group(click.Group):
    """Known input errors end with one clear line, not a traceback."""

    def invoke(self, ctx):
        from .data.image_folder import DatasetError
        from .llm import LLMError
        from .tables import TableError

        try:
            return super().invoke(ctx)
        except (ConfigError, DatasetError, TableError, LLMError, FileNotFoundError, ValueError, OSError) as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="discl")
def main():
    """DisCL: synthetic-to-real curricula from image-guided diffusion.

    Stages, in order: prepare, mine, prompts (optional), generate, score, train, eval. Each reads and
    writes one run directory and can be re-run alone. `discl demo` runs them all
    offline on the built-in digits-lt data.
    """


def _prepare(run, cfg, echo):
    from .stages.prepare import run_prepare

    run_prepare(run, cfg, echo)


def _train(run, cfg, echo, progress):
    from .stages.train import run_train
    from .training import ddp

    from .training.device import resolve_device

    # Under torchrun: this process's device (cuda:LOCAL_RANK), then the process group (NCCL on GPUs, gloo on CPU).
    ddp.init_from_env(resolve_device(cfg.train.device, "train.device"))
    try:
        run_train(run, cfg, echo if ddp.is_main() else (lambda *_: None), progress)
    finally:
        if ddp.active():
            import torch.distributed as dist

            dist.destroy_process_group()


def _eval(run, cfg, echo):
    from .stages.evaluate import run_eval

    run_eval(run, cfg, echo)


_stage("prepare", "Build the dataset tables (dataset.parquet, classes.parquet, skipped.parquet).", False)(_prepare)
_stage("train", "Train the task classifier for each method in train.methods (train/<method>/).")(_train)
_stage("eval", "Top-1 accuracy overall / many / medium / few on the test split (metrics.parquet).", False)(_eval)


@main.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Where to write the HTML (default: RUN_DIR/report.html).")
@click.option("--max-grids", default=24, show_default=True, help="Spectrum grids to show; larger runs show a stable sample.")
@click.option("--method", default=None, help="The DisCL method to compare with the baseline (default: the first other trained method).")
@click.option("--baseline", default="real-only", show_default=True)
def report(run_dir, out, max_grids, method, baseline):
    """Write one self-contained HTML file: spectra, filter statistics, curriculum, training curves, results."""
    from .report.build import ReportOptions, build_report

    path = build_report(RunDir(run_dir), out, ReportOptions(max_grids=max_grids, method=method, baseline=baseline))
    click.echo(f"report: {path}")


@main.command("mine")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--hard-csv", type=click.Path(dir_okay=False, path_type=Path),
              help="Import the hard samples from a reference CSV (ImageNet-LT or iWildCam format) instead of mining.")
@click.option("--folds", type=int, help="Out-of-fold predictions from this many base models (same as --set mine.folds=K).")
@_options
def mine(run_dir, config_file, overrides, no_progress, hard_csv, folds):
    """Flag hard samples with a base model (trained here, or mine.base_weights) by mine.rules (hard.parquet)."""
    from .stages.mine import run_mine

    extra = ([f"mine.hard_csv={hard_csv.resolve()}"] if hard_csv else []) + ([f"mine.folds={folds}"] if folds is not None else [])
    run, cfg = _setup(run_dir, config_file, (*overrides, *extra))
    run_mine(run, cfg, click.echo, not no_progress)


@main.command("score")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--rescore", is_flag=True,
              help="Apply the current filters to the saved embeddings only; never load a model (fails if any is missing).")
@_options
def score(run_dir, config_file, overrides, no_progress, rescore):
    """CLIP image-image and image-text similarity and the filters (scores.parquet, score_summary.parquet)."""
    from .stages.score import run_score

    run, cfg = _setup(run_dir, config_file, overrides)
    run_score(run, cfg, click.echo, not no_progress, rescore=rescore)


@main.command("prompts")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--llm/--no-llm", default=None, help="Ask the chat endpoint in prompts.* for descriptions (default: prompts.llm).")
@_options
def prompts(run_dir, config_file, overrides, no_progress, llm):
    """Prompt templates per dataset, and optional LLM descriptions per class (cached in prompts.json)."""
    from .stages.prompts import run_prompts

    run, cfg = _setup(run_dir, config_file, overrides)
    if llm is not None:
        cfg.prompts.llm = llm
    run_prompts(run, cfg, click.echo)


@main.command("generate")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan's size and the work left; make nothing.")
@click.option("--shard", metavar="I/N", help="Make only shard I of N (0-based; stable assignment by source id), for job arrays.")
@click.option("--engine", type=click.Choice(["local", "ray"]), help="Overrides generate.engine: this process, or Ray Data actors.")
@_options
def generate(run_dir, dry_run, shard, engine, config_file, overrides, no_progress):
    """Make the spectrum of synthetic images for every hard sample (synthetic/, synthetic.parquet)."""
    from .stages.generate import run_generate

    run, cfg = _setup(run_dir, config_file, overrides)
    if engine:  # for this invocation only, not saved in config.yaml
        cfg.generate.engine = engine
    run_generate(run, cfg, click.echo, not no_progress, dry_run=dry_run, shard=shard)


@main.command("compare")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--methods", multiple=True, default=("real-only", "all-synthetic", "non-adaptive", "adaptive", "random", "reverse"),
              show_default=True, help="Curricula to compare (repeat the option, or give \"a,b,c\").")
@click.option("--seeds", multiple=True, default=("0", "1", "2"), show_default=True, help="Seeds (repeat the option, or give \"0,1,2\").")
@click.option("--losses", multiple=True, default=("ce", "bs"), show_default=True, help="ce and/or bs (Balanced Softmax).")
@_options
def compare(run_dir, methods, seeds, losses, config_file, overrides, no_progress):
    """Train every method for every loss and seed; write compare/table.md (mean ± std, the paper's format)."""
    from .stages.compare import run_compare

    run, cfg = _setup(run_dir, config_file, overrides)
    run_compare(run, cfg, _spread(methods), [int(s) for s in _spread(seeds)], _spread(losses), click.echo, not no_progress)


def _spread(values) -> list:
    """Accept both `--seeds 0 --seeds 1` and `--seeds "0 1"` / `--seeds 0,1`."""
    out = []
    for v in values:
        out += str(v).replace(",", " ").split()
    return out


@main.command("demo")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the run (default: runs/demo-<date>-<time>).")
@_options
def demo(run_dir, config_file, overrides, no_progress):
    """Run every stage offline on digits-lt and print the paper's table."""
    from .stages.demo import run_demo

    if run_dir is None:
        run_dir = Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    if Path(run_dir).exists() and any(Path(run_dir).iterdir()):
        raise click.UsageError(f"{run_dir} is not empty; the demo writes into a fresh run directory")
    cfg = load_config(None, config_file, overrides)
    run_demo(RunDir(run_dir), cfg, click.echo, not no_progress)


if __name__ == "__main__":
    main()
