"""Stage `generate`: the spectrum of synthetic images for every hard sample."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from ..config import RunConfig
from ..data import foundation_rows, load_dataset_tables, load_split
from ..generation.base import Generator
from ..generation.pixel_diffusion import PixelDiffusionGenerator, PixelDiffusionSpec, train_pixel_diffusion
from ..generation.plan import plan_spectrum
from ..generation.runner import run_plan
from ..prompts import PromptBank
from ..rundir import RunDir
from ..tables import read_table, write_table
from . import cache
from .common import fingerprint

GENERATORS = ("pixel-diffusion",)


def generator_dir(run: RunDir):
    return run.models / "generator"


def ensure_generator(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> Generator:
    """The demo's pixel-diffusion model, trained on the foundation pool; cached in models/generator."""
    g = cfg.generate
    if g.backend not in GENERATORS:
        raise ValueError(f"unknown generator backend {g.backend!r}; known: {list(GENERATORS)}")
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


def write_imagefolder_metadata(run: RunDir, plan: pd.DataFrame) -> None:
    """synthetic/metadata.jsonl, so `datasets.load_dataset("imagefolder", data_dir=...)` reads the folder as it is."""
    meta = plan.drop(columns=["path"]).assign(file_name=plan["path"].str.removeprefix("synthetic/"))
    tmp = run.synthetic_images / ".metadata.jsonl.tmp"
    meta[["file_name", *plan.columns.drop("path")]].to_json(tmp, orient="records", lines=True, force_ascii=False)
    tmp.replace(run.synthetic_images / "metadata.jsonl")


def run_generate(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> pd.DataFrame:
    g = cfg.generate
    hard = read_table(run.hard, "hard")
    if hard.empty:
        raise ValueError(f"{run.hard} lists no hard sample: nothing to generate")
    generator = ensure_generator(run, cfg, echo, progress)
    prompts = PromptBank.from_json(g.prompt_file, g.prompt_template) if g.prompt_file else PromptBank(g.prompt_template)
    plan = plan_spectrum(hard, g.strengths, g.seeds, g.text_guidance, prompts, generator.name)
    images, _ = load_split(run, hard, cfg.data.image_size)
    sources = dict(zip(hard["sample_id"], images))
    made = run_plan(run, plan, generator, sources, g.batch_size, progress)
    write_table(plan, run.synthetic, "synthetic")
    write_imagefolder_metadata(run, plan)
    echo(f"generate: {len(plan)} synthetic images for {len(hard)} hard samples ({made} new, {len(plan) - made} already there)")
    return plan
