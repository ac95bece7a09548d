"""The `discl` command line: one subcommand per stage, all working on one run directory."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click

from .config import ConfigError, load_config
from .lock import LockHeld
from .rundir import RunDir
from .session import generate_locks, report_session, stage_session


def _options(fn):
    fn = click.option("--no-progress", is_flag=True, help="Hide progress bars.")(fn)
    fn = click.option(
        "--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
        help="Override one config value, e.g. --set train.classifier.epochs=10 (read as YAML; text fields take the "
             "value as written). Repeatable.",
    )(fn)
    fn = click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                      help="YAML config file (see docs/config.md); applied over the run directory's config.yaml "
                           "and the recipe.")(fn)
    fn = click.option("--recipe", metavar="NAME", expose_value=False, callback=_keep_recipe,
                      help="One of the paper's recipes shipped with discl (`discl recipes` lists them), applied over "
                           "the run directory's config.yaml; --config and --set still override it.")(fn)
    return fn


def _keep_recipe(ctx, _param, value):
    """--recipe reaches load_config through the context, so every stage takes it without a new argument."""
    ctx.meta["discl.recipe"] = value
    return value


def _recipe() -> str | None:
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get("discl.recipe") if ctx is not None else None


@contextmanager
def _session(run_dir: Path, config_file, overrides, lock: str, creates: bool = False, others: str | None = None,
             saves: bool = True):
    """The shared stage session (session.py) with this command's --recipe."""
    with stage_session(run_dir, lock, config_file=config_file, overrides=overrides, recipe=_recipe(), creates=creates,
                       others=others, saves=saves) as (run, cfg):
        yield run, cfg


def _listing(*kinds: str) -> type[click.Command]:
    """A command whose --help ends with the names registered for ``kinds`` (discl.registry), read only when
    help is shown, so starting a command imports no implementation."""

    class Listed(click.Command):
        def format_epilog(self, ctx, formatter):
            from .registry import REGISTRIES

            for kind in kinds:
                registry = REGISTRIES[kind]
                with formatter.section(f"Registered ({registry.setting})"):
                    formatter.write_text(registry.describe_names())
            formatter.write_paragraph()
            formatter.write_text("`discl registry` describes each; plugins: docs/extending.md.")
            super().format_epilog(ctx, formatter)

    return Listed


def _stage(name: str, help_text: str, needs_progress: bool = True, creates: bool = False, lists: tuple[str, ...] = ()):
    def register(fn):
        @main.command(name, help=help_text, cls=_listing(*lists) if lists else click.Command)
        @click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
        @_options
        def command(run_dir, config_file, overrides, no_progress):
            with _session(run_dir, config_file, overrides, name, creates) as (run, cfg):
                if needs_progress:
                    fn(run, cfg, click.echo, not no_progress)
                else:
                    fn(run, cfg, click.echo)

        return command

    return register


class _Group(click.Group):
    """Known input errors end with one clear line, not a traceback."""

    def invoke(self, ctx):
        from pickle import UnpicklingError

        from safetensors import SafetensorError

        from .data.image_folder import DatasetError
        from .llm import LLMError
        from .registry import PluginError
        from .tables import TableError

        known = (ConfigError, DatasetError, TableError, LLMError, LockHeld, FileNotFoundError, ValueError, OSError,
                 UnpicklingError, SafetensorError, PluginError)
        try:
            return super().invoke(ctx)
        except known as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            click.echo(f"error: {' '.join(lines) or type(err).__name__}", err=True)
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
    from .stages.train import run_train_from_env

    run_train_from_env(run, cfg, echo, progress)


def _eval(run, cfg, echo):
    from .stages.evaluate import run_eval_from_env

    run_eval_from_env(run, cfg, echo)


_stage("prepare", "Build the dataset tables (dataset.parquet, classes.parquet, skipped.parquet).", False, creates=True,
       lists=("dataset",))(_prepare)
_stage("train", "Train the task classifier for each method in train.methods (train/<method>/).", lists=("curriculum", "task", "logger"))(_train)
_stage("eval", "Top-1 accuracy overall / many / medium / few on the test split (metrics.parquet).", False)(_eval)


@main.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Where to write the HTML (default: RUN_DIR/report.html).")
@click.option("--max-grids", default=24, show_default=True, help="Spectrum grids to show; larger runs show a stable sample.")
@click.option("--method", default=None, help="The DisCL method to compare with the baseline (default: the first other trained method).")
@click.option("--baseline", default="real-only", show_default=True)
def report(run_dir, out, max_grids, method, baseline):
    """Write one self-contained HTML file: spectra, filter statistics, curriculum, training curves, results."""
    from .report.build import ReportOptions, build_report

    with report_session(run_dir) as run:
        path = build_report(run, out, ReportOptions(max_grids=max_grids, method=method, baseline=baseline))
    click.echo(f"report: {path}")


@main.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["imagefolder", "hf"]), default="imagefolder", show_default=True,
              help="imagefolder: OUT/train/<label>_<class>/ + metadata.jsonl (datasets.load_dataset(\"imagefolder\", "
                   "data_dir=OUT)); hf: a datasets.DatasetDict saved with save_to_disk.")
@click.option("--with-real", is_flag=True, help="Also export the real training images.")
@click.option("--include-dropped", is_flag=True, help="Also export the synthetic images the filter dropped (kept=false).")
@click.option("--push-to-hub", metavar="REPO", help="Also push the dataset to this hub repository with datasets' push_to_hub "
                                                     "(the token is huggingface_hub's: HF_TOKEN or a saved login).")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def export(run_dir, out, fmt, with_real, include_dropped, push_to_hub, no_progress):
    """Export the kept synthetic images (and --with-real the real training images) with their class, level, seed,
    similarities and verdict, for another tool (docs/datasets.md)."""
    from .stages.export import run_export

    with report_session(run_dir, lock="export") as run:
        run_export(run, out, fmt, with_real, include_dropped, push_to_hub, click.echo, not no_progress)


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
    with _session(run_dir, config_file, (*overrides, *extra), "mine") as (run, cfg):
        run_mine(run, cfg, click.echo, not no_progress)


@main.command("score", cls=_listing("scorer", "filter"))
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--rescore", is_flag=True,
              help="Apply the current filters to the saved embeddings only; never load a model (fails if any is missing).")
@_options
def score(run_dir, config_file, overrides, no_progress, rescore):
    """CLIP image-image and image-text similarity and the filters (scores.parquet, score_summary.parquet)."""
    from .stages.score import run_score

    with _session(run_dir, config_file, overrides, "score") as (run, cfg):
        run_score(run, cfg, click.echo, not no_progress, rescore=rescore)


@main.command("prompts")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--llm/--no-llm", default=None, help="Ask the chat endpoint in prompts.* for descriptions (default: prompts.llm).")
@_options
def prompts(run_dir, config_file, overrides, no_progress, llm):
    """Prompt templates per dataset, and optional LLM descriptions per class (cached in prompts.json)."""
    from .stages.prompts import run_prompts

    with _session(run_dir, config_file, overrides, "prompts") as (run, cfg):
        if llm is not None:
            cfg.prompts.llm = llm
        run_prompts(run, cfg, click.echo)


@main.command("generate", cls=_listing("generator"))
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan's size and the work left; make nothing (config.yaml included).")
@click.option("--shard", metavar="I/N", help="Make only shard I of N (0-based; stable assignment by source id), for job arrays.")
@click.option("--engine", type=click.Choice(["local", "ray"]), help="Overrides generate.engine: this process, or Ray Data actors.")
@_options
def generate(run_dir, dry_run, shard, engine, config_file, overrides, no_progress):
    """Make the spectrum of synthetic images for every hard sample (synthetic/, synthetic.parquet)."""
    from .generation.shards import parse_shard
    from .stages.generate import run_generate

    lock, others = generate_locks(parse_shard(shard))
    with _session(run_dir, config_file, overrides, lock, others=others, saves=not dry_run) as (run, cfg):
        if engine:  # for this invocation only, not saved in config.yaml
            cfg.generate.engine = engine
        run_generate(run, cfg, click.echo, not no_progress, dry_run=dry_run, shard=shard)


@main.command("compare", cls=_listing("curriculum"))
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--methods", multiple=True, default=("real-only", "all-synthetic", "non-adaptive", "adaptive", "random", "reverse"),
              show_default=True, help="Curricula to compare (repeat the option, or give \"a,b,c\").")
@click.option("--seeds", multiple=True, default=("0", "1", "2"), show_default=True, help="Seeds (repeat the option, or give \"0,1,2\").")
@click.option("--losses", multiple=True, default=("ce", "bs"), show_default=True, help="ce and/or bs (Balanced Softmax).")
@_options
def compare(run_dir, methods, seeds, losses, config_file, overrides, no_progress):
    """Train every method for every loss and seed; write compare/table.md (mean ± std, the paper's format)."""
    from .stages.compare import run_compare

    with _session(run_dir, config_file, overrides, "compare") as (run, cfg):
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
    cfg = load_config(None, config_file, overrides, _recipe())
    run_demo(RunDir(run_dir), cfg, click.echo, not no_progress)


@main.command("recipes")
@click.argument("name", required=False)
def recipes(name):
    """List the paper's recipes shipped with discl, or print one (a config file: use it with --recipe NAME)."""
    from .recipes import recipe_names, recipe_text

    if name is None:
        for known in recipe_names():
            first = recipe_text(known).splitlines()[0].lstrip("# ")
            click.echo(f"{known}: {first}")
        click.echo("Use one with `discl prepare RUN --recipe NAME --set data.root=...`; every value is in docs/recipes.md.")
        return
    from .recipes import recipe_path

    recipe_path(name)  # a clear error for an unknown name
    click.echo(recipe_text(name), nl=False)


@main.command("registry")
@click.argument("kind", required=False, type=click.Choice(["curriculum", "dataset", "generator", "family", "scorer", "filter",
                                                              "task", "logger"]))
def registry(kind):
    """List what the settings can name: curricula, dataset adapters, generator and scorer backends, filters,
    task models and training loggers (discl's own and those of plugins: docs/extending.md), with what each needs and which settings it reads."""
    from .registry import REGISTRIES, load_plugins

    load_plugins()  # a plugin that does not import is one error line before anything is listed
    for name, reg in REGISTRIES.items():
        if kind not in (None, name):
            continue
        click.echo(f"{reg.kind} ({reg.setting}):")
        for entry in reg.entries():
            shown = entry.name + (f"-<{entry.parameter}>" if entry.parameter else "")
            flags = [k for k, v in entry.info.items() if v is True]
            extra = [f"flags: {', '.join(flags)}"] if flags else []
            if entry.info.get("settings"):
                extra.append("settings: " + ", ".join(entry.info["settings"]))
            click.echo(f"  {shown}: {entry.summary}" + (f" [{'; '.join(extra)}]" if extra else ""))


if __name__ == "__main__":
    main()
