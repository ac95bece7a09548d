"""Stage `generate`: the spectrum of synthetic images for every hard sample.

1. plan: hard samples x strengths x seeds (x text guidance), prompts from the prompt bank;
2. this shard's rows, minus those already committed with their image on disk;
3. make them, locally or with Ray, committing rows batch by batch;
4. when the whole plan is done, merge the rows into synthetic.parquet (+ imagefolder metadata).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, is_dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from ..artefacts import file_digest
from ..atomic import temp_path
from ..config import RunConfig
from ..generation.factory import generator_name
from ..generation.families import family_of_folder
from ..generation.metadata import matching_scores, write_synthetic_metadata
from ..generation.plan import image_fingerprint, plan_spectrum
from ..generation.run_generator import ensure_generator, generator_settings, make_refiner, prompt_bank
from ..generation.runner import run_plan
from ..generation.settings import changes, digest, planned_size, recorded_settings, write_record
from ..generation.shards import parse_shard, select_shard
from ..generation.sources import SourceImages
from ..generation.store import PartStore, current, done_rows, stale
from ..prompts import demo_text_warning
from ..registry import generators
from ..rundir import RunDir
from ..scoring.run_scorer import scorer_key, scores_match
from ..tables import read_table, write_table

ENGINES = ("local", "ray")


def image_settings(run: RunDir, cfg: RunConfig) -> dict:
    """The settings every image depends on besides its own row (source, strength, seed), by config key;
    their digest goes into each image's fingerprint."""
    g = cfg.generate
    backend = generators.get(g.backend)
    keys = ["backend", "inference_steps", "text_guidance", "prompt_template", "prompt_file"]
    keys += backend.settings  # what the backend declares its images depend on
    if g.regenerate:
        keys += ["regenerate", "regenerate_threshold", "regenerate_tries"]
    settings = {f"generate.{k}": _plain(getattr(g, k)) for k in keys if not _later_default(g, k)}
    settings |= {"generate.resize": g.resize} if g.resize else {"generate.source_size": g.source_size}
    if not g.resize and g.source_size == "square":
        settings["data.image_size"] = cfg.data.image_size
    if backend.trained_in_run:
        settings["generator training images"] = generator_settings(run, cfg)["data"]
    if lora_files := _lora_file_digests(g.lora):
        settings["generate.lora files"] = lora_files  # a LoRA retrained in place remakes its images
    if g.regenerate:
        settings |= {"score.caption_template": cfg.score.caption_template, "scorer": scorer_key(run, cfg)}
        if cfg.prompts.names != "class":  # the class names in the captions a retry is judged against
            settings["prompts.names"] = cfg.prompts.names
    return settings


#: Settings added after runs were made: recorded only when set, so that the images of those runs keep
#: their fingerprints (and are not remade) while these stay at their defaults.
LATER_SETTINGS = ("level_scale", "lora", "vae_tiling")


def _later_default(g, key: str) -> bool:
    return key in LATER_SETTINGS and getattr(g, key) == getattr(type(g)(), key)


def _plain(value):
    """Settings as plain values (generate.lora's entries as dicts), for the record and its digest."""
    if isinstance(value, list):
        return [asdict(v) if is_dataclass(v) and not isinstance(v, type) else v for v in value]
    return value


def _lora_file_digests(loras) -> dict[str, str]:
    """The content digest of each local LoRA weights file (hub ids are named by their id, as generate.model is).
    A folder without weight_name: its .safetensors files, one of which diffusers' load_lora_weights picks."""
    digests = {}
    for lora in loras or []:
        path = Path(lora.path)
        if path.is_dir() and lora.weight_name:
            path = path / lora.weight_name
        if path.is_file():
            digests[str(lora.path)] = file_digest(path)
        elif path.is_dir() and (files := sorted(path.glob("*.safetensors"))):
            digests[str(lora.path)] = "+".join(f"{f.name}:{file_digest(f)}" for f in files)
    return digests


SOURCE_SIZES = ("square", "native")


def source_size(cfg: RunConfig) -> tuple[int, int] | None:
    """(width, height) source images are resized to before rounding down to the VAE's multiple:
    generate.resize; None (each file's own size) for generate.source_size "native"; else
    data.image_size squared."""
    g = cfg.generate
    if g.source_size not in SOURCE_SIZES:
        raise ValueError(f"generate.source_size must be one of {list(SOURCE_SIZES)}, got {g.source_size!r}")
    if g.resize:
        if len(g.resize) != 2 or min(g.resize) < 1:
            raise ValueError(f"generate.resize must be [width, height], got {g.resize}")
        if g.source_size == "native":
            raise ValueError(f"generate.resize {g.resize} and generate.source_size 'native' contradict each other; set one")
        return (g.resize[0], g.resize[1])
    if g.source_size == "native":
        return None
    return cfg.data.image_size, cfg.data.image_size


def check_levels(generator, strengths, sources: SourceImages, todo: pd.DataFrame) -> dict | None:
    """A level the configured steps cannot reach (few-step models) stops the run before any image is made;
    the generator knows its family's rule (families/base.py). Returns each level's pipeline strength at the
    first source's size (for the record), or None for generators without levels (the demo's)."""
    check = getattr(generator, "check_levels", None)
    if check is None or not len(todo):
        return None
    width, height = sources.size_of(str(todo["source_id"].iloc[0]))
    check(strengths, (height, width))
    return {str(level): generator.pipeline_strength(level, (height, width)) for level in strengths}


def describe_work(cfg: RunConfig, hard: pd.DataFrame, plan: pd.DataFrame, mine: pd.DataFrame, todo: pd.DataFrame, shard: tuple[int, int],
                  size_of=None) -> str:
    """What `--dry-run` prints: the plan's size and the denoising work left (``size_of``: source_id ->
    (width, height), when sources differ in size and so cannot share a call)."""
    g = cfg.generate
    steps = g.inference_steps
    backend = generators.get(g.backend)
    family = family_of_folder(Path(g.model)) if backend.prompts and g.model else None  # a local folder's, else unknown
    doubled = family is None or family.guidance == "classifier-free"  # embedded or no guidance: one pass
    passes = 2 if (g.text_guidance > 1 and doubled) or backend.trained_in_run else 1  # classifier-free guidance doubles the batch
    unet_steps = int(sum(max(1, min(int(steps * s), steps)) for s in todo["strength"])) * passes
    sized = todo.assign(_size=[size_of(s) for s in todo["source_id"]] if size_of else 0)
    calls = sum(math.ceil(n / g.batch_size) for n in sized.groupby(["strength", "text_guidance", "_size"]).size())
    size = source_size(cfg)
    where = "their own size" if size is None else f"{size[0]}x{size[1]}"
    lines = [
        f"plan: {len(hard)} hard samples x {len(g.strengths)} strengths x {len(g.seeds)} seeds = {len(plan)} images "
        f"(text guidance {g.text_guidance}, {generator_name(g)}, {steps} steps"
        + (f"; family {family.name}, guidance {family.guidance})" if family else ")"),
        f"shard {shard[0]}/{shard[1]}: {len(mine)} images, {len(mine) - len(todo)} already done, {len(todo)} to make",
        f"work: {calls} pipeline calls at batch size {g.batch_size} (the reference makes {len(todo)}), "
        f"{unet_steps} UNet image-steps{' (x2 for guidance)' if passes == 2 else ''}, engine {g.engine}",
        f"sources: at {where}" + (", rounded down to the model's multiple (8 for Stable Diffusion, 16 for SD3 and FLUX)"
                                  if backend.prompts else ""),
    ]
    if g.regenerate:
        lines.append(f"regenerate: up to {g.regenerate_tries} more draws per image with text similarity <= {g.regenerate_threshold}")
    return "\n".join(lines)


def _say_what_is_remade(echo, run: RunDir, mine: pd.DataFrame, committed: pd.DataFrame, done: pd.DataFrame, settings: dict,
                        dry_run: bool = False) -> None:
    again = "a run makes them again" if dry_run else "they are made again"
    old = stale(mine, committed)
    if len(old):
        echo(f"generate: {len(old)} images were made with other settings ({what_changed(run, old, mine, settings)}); {again}")
    made = set(current(mine, committed)["synthetic_id"])
    broken = sorted(made - set(done["synthetic_id"]))
    if broken:
        path = mine.set_index("synthetic_id").loc[broken[0], "path"]
        echo(f"generate: {len(broken)} images are missing or not whole PNGs at the planned size (e.g. {path}); {again}")


def what_changed(run: RunDir, old: pd.DataFrame, plan: pd.DataFrame, settings: dict) -> str:
    """What differs for the committed rows ``old`` between the settings that made them and ``settings``.
    Each row's fingerprint is matched against every settings digest the record knows, so images left by
    a run cut short are named by their own settings, not by those of the last run."""
    known = recorded_settings(run)
    planned = plan.set_index("synthetic_id")[["prompt", "noise_seed"]]
    reasons: Counter[str] = Counter()
    for sid, prompt, noise_seed, fingerprint in zip(old["synthetic_id"], old["prompt"], old["noise_seed"], old["fingerprint"]):
        # A row redrawn by generate.regenerate holds the retry's prompt and seed, and the fingerprint of its plan's.
        tries = [(prompt, int(noise_seed))] + ([(planned.at[sid, "prompt"], int(planned.at[sid, "noise_seed"]))] if sid in planned.index else [])
        made_by, made_prompt = next(((s, p) for d, s in known.items() for p, n in tries if image_fingerprint(d, p, n) == fingerprint),
                                    (None, prompt))
        parts = changes(made_by, settings) if made_by is not None else []
        if sid in planned.index and planned.at[sid, "prompt"] != made_prompt:
            parts.append("the prompt")
        reasons[", ".join(parts) or ("settings not recorded" if made_by is None else "the generator")] += 1
    if len(reasons) == 1:
        return next(iter(reasons))
    return "; ".join(f"{n}: {why}" for why, n in reasons.most_common())


def run_generate(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True, dry_run: bool = False,
                 shard: str | None = None) -> pd.DataFrame:
    g = cfg.generate
    if g.engine not in ENGINES:
        raise ValueError(f"generate.engine must be one of {list(ENGINES)}, got {g.engine!r}")
    # 1. the plan, each image with the fingerprint of what decides it
    hard = read_table(run.hard, "hard")
    if hard.empty:
        raise ValueError(f"{run.hard} lists no hard sample: nothing to generate")
    source = source_size(cfg)  # checks the settings before any work
    if generators.get(g.backend).prompts and (warning := demo_text_warning("generate.prompt_template", g.prompt_template, cfg.data.name)):
        echo(warning)
    settings = image_settings(run, cfg)
    plan = plan_spectrum(hard, g.strengths, g.seeds, g.text_guidance, prompt_bank(run, cfg), generator_name(g), digest(settings))
    # 2. this shard's pending rows: not committed, made with other settings, or whose image is not whole
    index, count = parse_shard(shard)
    mine = select_shard(plan, index, count)
    store = PartStore(run, "all" if count == 1 else f"shard-{index}-of-{count}")
    store.compact()
    committed = store.rows()
    # The size every image of these settings has (None: not known yet, or sources at their native sizes).
    size = planned_size(run, settings) if source is not None else None
    done = done_rows(run, mine, committed, size)
    todo = mine[~mine["synthetic_id"].isin(done["synthetic_id"])]
    _say_what_is_remade(echo, run, mine, committed, done, settings, dry_run)
    if dry_run:
        sizes = SourceImages({sid: run.resolve(p) for sid, p in zip(hard["sample_id"], hard["path"])}, source) if source is None else None
        echo(describe_work(cfg, hard, plan, mine, todo, (index, count), sizes.size_of if sizes else None))
        return todo
    # 3. make them (a temp file left by a killed write is this shard's own: remove it)
    for path in todo["path"]:
        target = run.resolve(path)
        temp_path(target, unique=False).unlink(missing_ok=True)
    if len(todo):
        write_record(run, settings, size)
        levels = None
        paths = {sid: run.resolve(p) for sid, p in zip(hard["sample_id"], hard["path"])}
        if g.engine == "ray":
            from ..generation.engine_ray import run_plan_ray

            if generators.get(g.backend).trained_in_run:
                ensure_generator(run, cfg, echo, progress)  # trained once here, loaded by each actor
            if g.regenerate:
                make_refiner(run, cfg, echo, progress)  # likewise for the scorer
            run_plan_ray(run, todo, asdict(cfg), {k: str(v) for k, v in paths.items()}, source, store, g.batch_size,
                         g.ray_workers, g.ray_gpus_per_worker, g.ray_address, progress)
        else:
            generator = ensure_generator(run, cfg, echo, progress)
            sources = SourceImages(paths, source, multiple=getattr(generator, "multiple", 1))  # the model's size multiple
            levels = check_levels(generator, g.strengths, sources, todo)
            write_record(run, settings, size, levels)
            run_plan(run, todo, generator, sources, g.batch_size, progress, store, make_refiner(run, cfg, echo, progress), size=size)
        store.compact()
        if size is None and source is not None:  # the size these settings make, checked on every later resume
            with Image.open(run.resolve(todo["path"].iloc[0])) as first:
                size = first.size
            write_record(run, settings, size, levels)
    # 4. the table, once the whole plan is done
    done = done_rows(run, plan, store.rows(), size)
    if len(done) < len(plan):
        echo(f"generate: shard {index}/{count} done ({len(todo)} new); {len(done)} of {len(plan)} images of the whole plan "
             f"are done; synthetic.parquet is written when all shards have run")
        return done
    table = plan[["synthetic_id"]].merge(done, on="synthetic_id", how="left")
    write_table(table, run.synthetic, "synthetic")
    write_synthetic_metadata(run, table, matching_scores(run, table))
    table = read_table(run.synthetic, "synthetic")
    echo(f"generate: {len(table)} synthetic images for {len(hard)} hard samples ({len(todo)} new, {len(mine) - len(todo)} already there)")
    if run.scores.exists() and not scores_match(run, table):
        echo(f"generate: {run.scores.name} scores other synthetic images than these; run `discl score {run.root}`")
    return table
