"""The run's generator and its regenerate-until-good refiner: what the generate stage's local engine and each
Ray actor (generation/engine_ray.py) build. The demo's pixel-diffusion model is trained once on the
foundation pool and cached in ``models/generator``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from .. import model_cache
from ..config import RunConfig, config_from_dict
from ..data import foundation_rows, load_dataset_tables, load_split
from ..prompts import PromptBank
from ..registry import generators
from ..rundir import RunDir
from .base import Generator
from .factory import create_generator
from .pixel_diffusion import PixelDiffusionGenerator, PixelDiffusionSpec, train_pixel_diffusion


def generator_settings(run: RunDir, cfg: RunConfig) -> dict:
    """What the demo's pixel-diffusion model is trained with (its cache key)."""
    g = cfg.generate
    dataset, _ = load_dataset_tables(run)
    train_keys = ("sample_size", "channels", "train_steps", "train_batch_size", "train_lr", "train_seed")
    return {k: asdict(g)[k] for k in train_keys} | {"image_size": cfg.data.image_size,
                                                    "data": model_cache.fingerprint(foundation_rows(dataset)["sample_id"])}


def ensure_generator(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> Generator:
    """The configured generator; the demo's pixel-diffusion model is trained on the foundation pool first
    and cached in models/generator (a retrained model replaces the old one only once it is saved whole)."""
    g = cfg.generate
    if not generators.get(g.backend).trained_in_run:
        return create_generator(g)
    settings = generator_settings(run, cfg)
    return model_cache.train_once(run, run.generator_model, settings, "the generator",
                                  lambda: _train_generator(run, cfg, settings, echo, progress),
                                  lambda folder: PixelDiffusionGenerator.load(folder, g.inference_steps), echo)


def _train_generator(run: RunDir, cfg: RunConfig, settings: dict, echo, progress: bool) -> Generator:
    g = cfg.generate
    dataset, classes = load_dataset_tables(run)
    pool = foundation_rows(dataset)
    echo(f"training the generator on {len(pool)} images ({g.train_steps} steps)")
    images, labels = load_split(run, pool, cfg.data.image_size)
    spec = PixelDiffusionSpec(num_classes=len(classes), sample_size=g.sample_size, channels=g.channels)
    generator = train_pixel_diffusion(
        images, labels, spec, g.train_steps, g.train_batch_size, g.train_lr, g.train_seed, inference_steps=g.inference_steps, progress=progress
    )
    model_cache.save_beside(run.generator_model, generator.save, settings)
    return generator


def prompt_file(run: RunDir, cfg: RunConfig) -> Path | None:
    """generate.prompt_file: a relative path is read from the run directory (where `discl prompts`
    writes prompts.json), else from the current directory."""
    name = cfg.generate.prompt_file
    if not name:
        return None
    in_run = run.resolve(name)
    return in_run if in_run.exists() or Path(name).is_absolute() or not Path(name).exists() else Path(name)


def prompt_bank(run: RunDir, cfg: RunConfig) -> PromptBank:
    from ..prompts import prompt_names

    path = prompt_file(run, cfg)
    names = prompt_names(load_dataset_tables(run)[1], cfg.prompts.dataset, cfg.prompts.names) if cfg.prompts.names != "class" else {}
    if path:
        return PromptBank.from_json(path, cfg.generate.prompt_template, names)
    return PromptBank(cfg.generate.prompt_template, names=names)


def make_refiner(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True):
    """Regenerate-until-good with the score stage's scorer, or None when it is off."""
    g = cfg.generate
    if not g.regenerate:
        return None
    from ..scoring.run_scorer import ensure_scorer, filter_captions
    from .regenerate import Regenerator

    _, classes = load_dataset_tables(run)
    scorer = ensure_scorer(run, cfg, echo, progress)
    return Regenerator(scorer, prompt_bank(run, cfg), filter_captions(classes, cfg), g.regenerate_threshold, g.regenerate_tries)


def make_worker(run: RunDir, config: dict):
    """(generator, refine) from a plain config dict: what each Ray actor builds once."""
    cfg = config_from_dict(config)
    return ensure_generator(run, cfg, progress=False), make_refiner(run, cfg, progress=False)
