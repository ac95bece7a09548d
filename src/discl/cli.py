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
        from .tables import TableError

        try:
            return super().invoke(ctx)
        except (ConfigError, DatasetError, TableError, FileNotFoundError, ValueError, OSError) as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="discl")
def main():
    """DisCL: synthetic-to-real curricula from image-guided diffusion.

    Stages, in order: prepare, mine, generate, score, train, eval. Each reads and
    writes one run directory and can be re-run alone. `discl demo` runs them all
    offline on the built-in digits-lt data.
    """


def _prepare(run, cfg, echo):
    from .stages.prepare import run_prepare

    run_prepare(run, cfg, echo)


def _mine(run, cfg, echo, progress):
    from .stages.mine import run_mine

    run_mine(run, cfg, echo, progress)


def _generate(run, cfg, echo, progress):
    from .stages.generate import run_generate

    run_generate(run, cfg, echo, progress)


def _score(run, cfg, echo, progress):
    from .stages.score import run_score

    run_score(run, cfg, echo, progress)


def _train(run, cfg, echo, progress):
    from .stages.train import run_train
    from .training import ddp

    ddp.init_from_env()  # under torchrun: join the process group (gloo on CPU, nccl on GPU)
    run_train(run, cfg, echo if ddp.is_main() else (lambda *_: None), progress)


def _eval(run, cfg, echo):
    from .stages.evaluate import run_eval

    run_eval(run, cfg, echo)


_stage("prepare", "Build the dataset tables (dataset.parquet, classes.parquet, skipped.parquet).", False)(_prepare)
_stage("mine", "Train the base classifier and flag hard samples (hard.parquet).")(_mine)
_stage("generate", "Make the spectrum of synthetic images for every hard sample (synthetic/, synthetic.parquet).")(_generate)
_stage("score", "CLIP image-image and image-text similarity and the filter (scores.parquet).")(_score)
_stage("train", "Train the task classifier for each method in train.methods (train/<method>/).")(_train)
_stage("eval", "Top-1 accuracy overall / many / medium / few on the test split (metrics.parquet).", False)(_eval)


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
