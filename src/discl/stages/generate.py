"""Stage `generate`: the spectrum of synthetic images for every hard sample.

1. plan: hard samples x strengths x seeds (x text guidance), prompts from the prompt bank;
2. this shard's rows, minus those already committed with their image on disk;
3. make them, locally or with Ray, committing rows batch by batch;
4. when the whole plan is done, merge the rows into synthetic.parquet (+ imagefolder metadata).
"""

from __future__ import annotations

import math
from dataclasses import asdict

import pandas as pd

from ..config import RunConfig, config_from_dict
from ..data import foundation_rows, load_dataset_tables, load_split
from ..generation.base import Generator
from ..generation.factory import create_generator, generator_name
from ..generation.pixel_diffusion import PixelDiffusionGenerator, PixelDiffusionSpec, train_pixel_diffusion
from ..generation.plan import plan_spectrum
from ..generation.runner import run_plan
from ..generation.shards import parse_shard, select_shard
from ..generation.sources import SourceImages
from ..generation.store import PartStore, done_rows
from ..prompts import PromptBank
from ..rundir import RunDir
from ..tables import read_table, write_table
from . import cache
from .common import fingerprint

GENERATORS = ("pixel-diffusion", "diffusers")
ENGINES = ("local", "ray")


def generator_dir(run: RunDir):
    return run.models / "generator"


def ensure_generator(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> Generator:
    """The configured generator; the demo's pixel-diffusion model is trained on the foundation pool first
    and cached in models/generator."""
    g = cfg.generate
    if g.backend not in GENERATORS:
        raise ValueError(f"unknown generator backend {g.backend!r}; known: {list(GENERATORS)}")
    if g.backend == "diffusers":
        return create_generator(g)
    dataset, classes = load_dataset_tables(run)
    pool = foundation_rows(dataset)
    train_keys = ("sample_size", "channels", "train_steps", "train_batch_size", "train_lr", "train_seed")
    settings = {k: asdict(g)[k] for k in train_keys} | {"image_size": cfg.data.image_size, "data": fingerprint(pool["sample_id"])}
    folder = generator_dir(run)
    if cache.is_current(folder, settings):
        return PixelDiffusionGenerator.load(folder, g.inference_steps)
    echo(f"training the generator on {len(pool)} images ({g.train_steps} steps)")
    images, labels = load_split(run, pool, cfg.data.image_size)
    spec = PixelDiffusionSpec(num_classes=len(classes), sample_size=g.sample_size, channels=g.channels)
    generator = train_pixel_diffusion(
        images, labels, spec, g.train_steps, g.train_batch_size, g.train_lr, g.train_seed, inference_steps=g.inference_steps, progress=progress
    )
    generator.save(folder)
    cache.mark_current(folder, settings)
    return generator


def prompt_bank(cfg: RunConfig) -> PromptBank:
    g = cfg.generate
    return PromptBank.from_json(g.prompt_file, g.prompt_template) if g.prompt_file else PromptBank(g.prompt_template)


def make_refiner(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True):
    """Regenerate-until-good with the score stage's scorer, or None when it is off."""
    g = cfg.generate
    if not g.regenerate:
        return None
    from ..generation.regenerate import Regenerator
    from .score import captions_for, ensure_scorer

    _, classes = load_dataset_tables(run)
    scorer = ensure_scorer(run, cfg, echo, progress)
    return Regenerator(scorer, prompt_bank(cfg), captions_for(classes, cfg.score.caption_template), g.regenerate_threshold, g.regenerate_tries)


def make_worker(run: RunDir, config: dict):
    """(generator, refine) from a plain config dict: what each Ray actor builds once."""
    cfg = config_from_dict(config)
    return ensure_generator(run, cfg, progress=False), make_refiner(run, cfg, progress=False)


def source_size(cfg: RunConfig) -> tuple[int, int]:
    """(width, height) source images are loaded at: generate.resize, else data.image_size squared."""
    if cfg.generate.resize:
        if len(cfg.generate.resize) != 2 or min(cfg.generate.resize) < 1:
            raise ValueError(f"generate.resize must be [width, height], got {cfg.generate.resize}")
        return tuple(cfg.generate.resize)
    return cfg.data.image_size, cfg.data.image_size


def write_imagefolder_metadata(run: RunDir, table: pd.DataFrame) -> None:
    """synthetic/metadata.jsonl, so `datasets.load_dataset("imagefolder", data_dir=...)` reads the folder as it is."""
    meta = table.drop(columns=["path"]).assign(file_name=table["path"].str.removeprefix("synthetic/"))
    tmp = run.synthetic_images / ".metadata.jsonl.tmp"
    meta[["file_name", *table.columns.drop("path")]].to_json(tmp, orient="records", lines=True, force_ascii=False)
    tmp.replace(run.synthetic_images / "metadata.jsonl")


def describe_work(cfg: RunConfig, hard: pd.DataFrame, plan: pd.DataFrame, mine: pd.DataFrame, todo: pd.DataFrame, shard: tuple[int, int]) -> str:
    """What `--dry-run` prints: the plan's size and the denoising work left."""
    g = cfg.generate
    steps = g.inference_steps
    passes = 2 if g.text_guidance > 1 or g.backend == "pixel-diffusion" else 1  # classifier-free guidance doubles the UNet batch
    unet_steps = int(sum(max(1, min(int(steps * s), steps)) for s in todo["strength"])) * passes
    calls = sum(math.ceil(n / g.batch_size) for n in todo.groupby(["strength", "text_guidance"]).size())
    lines = [
        f"plan: {len(hard)} hard samples x {len(g.strengths)} strengths x {len(g.seeds)} seeds = {len(plan)} images "
        f"(text guidance {g.text_guidance}, {generator_name(g)}, {steps} steps)",
        f"shard {shard[0]}/{shard[1]}: {len(mine)} images, {len(mine) - len(todo)} already done, {len(todo)} to make",
        f"work: {calls} pipeline calls at batch size {g.batch_size} (the reference makes {len(todo)}), "
        f"{unet_steps} UNet image-steps{' (x2 for guidance)' if passes == 2 else ''}, engine {g.engine}",
    ]
    if g.regenerate:
        lines.append(f"regenerate: up to {g.regenerate_tries} more draws per image with text similarity <= {g.regenerate_threshold}")
    return "\n".join(lines)


def run_generate(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True, dry_run: bool = False,
                 shard: str | None = None) -> pd.DataFrame:
    g = cfg.generate
    if g.engine not in ENGINES:
        raise ValueError(f"generate.engine must be one of {list(ENGINES)}, got {g.engine!r}")
    # 1. the plan
    hard = read_table(run.hard, "hard")
    if hard.empty:
        raise ValueError(f"{run.hard} lists no hard sample: nothing to generate")
    plan = plan_spectrum(hard, g.strengths, g.seeds, g.text_guidance, prompt_bank(cfg), generator_name(g))
    # 2. this shard's pending rows
    index, count = parse_shard(shard)
    mine = select_shard(plan, index, count)
    store = PartStore(run, "all" if count == 1 else f"shard-{index}-of-{count}")
    store.compact()
    todo = mine[~mine["synthetic_id"].isin(done_rows(run, mine, store.rows())["synthetic_id"])]
    if dry_run:
        echo(describe_work(cfg, hard, plan, mine, todo, (index, count)))
        return todo
    # 3. make them (a temp file left by a killed write is this shard's own: remove it)
    for path in todo["path"]:
        target = run.resolve(path)
        target.with_name(f".{target.name}.tmp").unlink(missing_ok=True)
    if len(todo):
        paths = {sid: run.resolve(p) for sid, p in zip(hard["sample_id"], hard["path"])}
        size = source_size(cfg)
        if g.engine == "ray":
            from ..generation.engine_ray import run_plan_ray

            if g.backend == "pixel-diffusion":
                ensure_generator(run, cfg, echo, progress)  # trained once here, loaded by each actor
            if g.regenerate:
                make_refiner(run, cfg, echo, progress)  # likewise for the scorer
            run_plan_ray(run, todo, asdict(cfg), {k: str(v) for k, v in paths.items()}, size, store, g.batch_size,
                         g.ray_workers, g.ray_gpus_per_worker, g.ray_address, progress)
        else:
            generator = ensure_generator(run, cfg, echo, progress)
            run_plan(run, todo, generator, SourceImages(paths, size), g.batch_size, progress, store, make_refiner(run, cfg, echo, progress))
        store.compact()
    # 4. the table, once the whole plan is done
    done = done_rows(run, plan, store.rows())
    if len(done) < len(plan):
        echo(f"generate: shard {index}/{count} done ({len(todo)} new); {len(done)} of {len(plan)} images of the whole plan "
             f"are done; synthetic.parquet is written when all shards have run")
        return done
    table = plan[["synthetic_id"]].merge(done, on="synthetic_id", how="left")
    write_table(table, run.synthetic, "synthetic")
    write_imagefolder_metadata(run, table)
    table = read_table(run.synthetic, "synthetic")
    echo(f"generate: {len(table)} synthetic images for {len(hard)} hard samples ({len(todo)} new, {len(mine) - len(todo)} already there)")
    return table
