"""Typed configuration for every stage.

A run's configuration is built from three layers, later ones winning:
built-in defaults, a YAML file (``--config``), and ``--set section.key=value``
overrides. The resolved result is saved as ``config.yaml`` in the run
directory, so a stage re-run later on that directory sees what ran before.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class DataConfig:
    # "digits-lt" (built in, offline) or "image-folder" (root/<class name>/<image>).
    name: str = "digits-lt"
    root: str | None = None  # image-folder only
    image_size: int = 16
    # digits-lt: long-tailed training split n_c = max_per_class * imbalance_ratio^(-c / (C - 1)).
    imbalance_ratio: float = 50.0
    max_per_class: int = 50
    val_per_class: int = 15
    test_per_class: int = 30
    # image-folder without train/val/test subfolders: fractions held out per class.
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    # Many/medium/few buckets from training counts: many > many_above, few < few_below.
    many_above: int = 15
    few_below: int = 5
    # imagenet-lt, iwildcam and csv: bucket thresholds of real datasets (many > 100, few < 20).
    lt_many_above: int = 100
    lt_few_below: int = 20
    # imagenet-lt: root = the ImageNet folder; the split files ImageNet_LT_{train,val,test}.txt
    # (lines "train/n01440764/n01440764_10026.JPEG 0") are read from split_dir (default: root).
    split_dir: str | None = None
    # iwildcam: root = the folder holding iwildcam_v2.0/ (read through the wilds package, no download).
    # csv: root = a CSV file with columns path,label[,split][,class_name]; relative paths are read
    # from the CSV's folder; rows without a split are split like image-folder.
    csv_path_column: str = "path"
    csv_label_column: str = "label"
    csv_split_column: str = "split"
    # Display names of the classes, for any dataset: a CSV (a name column and a label or class_id
    # column) or JSON ({label id or class id: name}, or a list of names by label id). imagenet-lt and
    # iwildcam already name their classes in English; the ids stay in classes.parquet's class_id.
    class_names: str | None = None


@dataclass
class AugmentConfig:
    """Image transforms of a timm classifier, built by timm.data.create_transform (docs/curricula.md).
    The defaults suit the demo's 16-pixel digits; the recipes use timm's ImageNet values."""

    input_size: int | None = None  # side of the training/eval input; None: data.image_size
    # Evaluation: resize the shorter side to input_size / crop_pct, then centre crop (timm's crop_pct).
    crop_pct: float = 1.0
    # Training: RandomResizedCrop over this fraction of the area and aspect ratio, then a horizontal flip
    # with probability hflip; optional colour jitter (e.g. 0.4) and RandAugment (e.g. "rand-m9-mstd0.5").
    scale: list[float] = field(default_factory=lambda: [0.75, 1.0])
    ratio: list[float] = field(default_factory=lambda: [0.9, 1.1])
    hflip: float = 0.0
    color_jitter: float | None = None
    auto_augment: str | None = None
    interpolation: str = "bicubic"  # bilinear | bicubic | ...
    # Normalisation; None: the model's own (its pretrained config; ImageNet's for timm models).
    mean: list[float] | None = None
    std: list[float] | None = None


@dataclass
class DeviceConfig:
    """Where and how a model runs, and how images reach it (training, evaluation, mining)."""

    # auto: cuda (cuda:LOCAL_RANK under torchrun) when CUDA is available, else cpu; or cpu, cuda, cuda:N.
    device: str = "auto"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 trains with a gradient scaler)
    # DataLoader worker processes that decode images; None: the usable CPU cores (shared by the
    # processes of one machine under torchrun); 0: decode in the main process.
    num_workers: int | None = None
    eval_batch_size: int = 256
    channels_last: bool = False
    # Unreadable or missing images are skipped and counted; above this fraction of an epoch (or of an
    # evaluation) the run stops with an error naming the files.
    max_skipped_fraction: float = 0.01


@dataclass
class TrainRuntime(DeviceConfig):
    compile: bool = False  # torch.compile the model
    # Split each batch into this many micro-batches (same optimisation batch, less memory).
    accumulate: int = 1
    eval_every: int = 1  # validation accuracy every k epochs (and after the last)
    checkpoint_every_steps: int = 0  # > 0: also checkpoint inside an epoch, every that many optimiser steps


@dataclass
class ClassifierConfig:
    """A timm classifier and how to train it (the base model and the task model)."""

    model: str = "resnet10t"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    seed: int = 0
    # Weights loaded at the edge: None (random), a local .safetensors/.pth file, or a hub id ("hf-hub:...").
    pretrained: str | None = None
    loss: str = "ce"  # "ce" (cross-entropy) or "bs" (Balanced Softmax: log class prior added to the logits in training)
    # Balanced Softmax prior: "real" = class counts of the real training split; "stage" = class counts of
    # each stage's training data (real + synthetic), which the synthetic tail images change.
    bs_prior: str = "real"
    optimizer: str = "adamw"  # "sgd", "adam" or "adamw"
    momentum: float = 0.9  # sgd only
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to zero
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class BaseModelConfig(ClassifierConfig, TrainRuntime):
    """The mine stage's base model: what to train and where to run it."""


@dataclass
class MineConfig:
    # Any of: "few_shot" (class with few training images), "low_true_prob" (p(true class) <
    # prob_threshold), "misclassified", "hardest_k" (the hardest_k images of each class with the
    # lowest p(true class)). A sample is hard when any listed rule fires.
    # "clip_misclassified": images the zero-shot CLIP (the score stage's scorer, one caption per class
    # from score.caption_template) puts in another class; no base model, so it combines only with few_shot.
    rules: list[str] = field(default_factory=lambda: ["few_shot", "low_true_prob"])
    prob_threshold: float = 0.5
    # few_shot: classes with fewer than this many training images (ImageNet-LT: 20). None: the
    # dataset's "few" bucket (data.few_below), which the demo's digits-lt scales to its size.
    few_shot_below: int | None = None
    hardest_k: int = 5
    # >= 2: out-of-fold predictions: k base models, each judging only the images it did not train on.
    folds: int = 1
    # A base model not trained here: timm name base.model + this local weights file
    # (.safetensors, or a torch state dict loaded with weights_only=True), for the dataset's classes.
    base_weights: str | None = None
    base_image_size: int | None = None  # input size of that model (None: its timm default, else data.image_size)
    # Import the reference's hard-sample CSV (ImageNet-LT or iWildCam format) instead of the rules;
    # its file paths are resolved against hard_csv_root (default: the CSV's folder).
    hard_csv: str | None = None
    hard_csv_root: str | None = None
    # Classes whose images are never hard samples (by class name, class id or label id), whatever
    # the rules or the CSV say; the reference's iWildCam recipe excludes "empty".
    exclude_classes: list[str] = field(default_factory=list)
    # The base model judges hardness (and, in the demo, class consistency); Balanced Softmax keeps a
    # long-tailed model from pushing tail images towards head classes. 60 epochs: with random crops the
    # demo's judge needs them to fit the tail classes.
    base: BaseModelConfig = field(default_factory=lambda: BaseModelConfig(loss="bs", epochs=60))


@dataclass
class GeneratorConfig:
    # "pixel-diffusion": the small class-conditional diffusion model trained in-process.
    backend: str = "pixel-diffusion"
    # "{name}" is the class name; with prompt_file (JSON: class name -> descriptions), one
    # description per (class, seed) fills "{description}", e.g. "a 8k real photo: {description}".
    prompt_template: str = "a photo of the digit {name}"
    prompt_file: str | None = None
    strengths: list[float] = field(default_factory=lambda: [round(0.1 * i, 1) for i in range(1, 11)])
    seeds: list[int] = field(default_factory=lambda: [10, 20, 30, 40])
    text_guidance: float = 2.0
    inference_steps: int = 25
    batch_size: int = 64
    # pixel-diffusion: the space it denoises in and how it is trained.
    sample_size: int = 8
    channels: int = 1
    train_steps: int = 1000
    train_batch_size: int = 128
    train_lr: float = 2e-3
    train_seed: int = 0
    # "diffusers": any Stable Diffusion 1.x/2.x, SDXL or SDXL-refiner img2img model (docs/generation.md).
    # model: an alias (sd15, sd21, sdxl, sdxl-refiner), a hub id or a local pipeline folder.
    model: str | None = None
    local_files_only: bool = False
    dtype: str = "fp32"  # fp32 | fp16 | bf16
    device: str = "cpu"
    attention: str = "sdpa"  # sdpa | eager
    cpu_offload: bool = False
    compile: bool = False  # torch.compile the UNet
    scheduler: str = "default"  # default (the model's own) | ddim | euler | euler-a | dpm++ | pndm | lms
    negative_prompt: str = ""
    resize: list[int] | None = None  # [width, height], rounded to the VAE's multiple, e.g. [480, 270]
    # Size of the sources fed to img2img, unless resize is set: "square" (data.image_size squared) or
    # "native" (each image's own size, as the reference's ImageNet-LT). The model works at that size
    # rounded DOWN to its VAE's multiple (8), as diffusers' image processor does: a 500x375 photo runs at
    # 496x368, resize [480, 270] at 480x264.
    source_size: str = "square"
    aesthetic_score: float = 6.0  # SDXL refiner conditioning
    negative_aesthetic_score: float = 2.5
    # Images decoded per VAE call: the decoder's memory grows with it and with the image size.
    vae_batch_size: int = 4
    # Scale: "local" or "ray" (Ray Data, one pipeline per actor); ray_address None starts Ray locally.
    engine: str = "local"
    ray_address: str | None = None
    ray_workers: int = 1
    ray_gpus_per_worker: float = 0.0
    # Regenerate-until-good: while cos(image, class caption) <= threshold under the score stage's scorer,
    # draw again with another prompt of the class, up to regenerate_tries more times; keep the best.
    regenerate: bool = False
    regenerate_threshold: float = 0.3
    regenerate_tries: int = 5


@dataclass
class ScorerConfig:
    # "tiny-clip": a small open_clip model trained contrastively in-process (the demo).
    # "open_clip" / "transformers" / "auto": a CLIP made by discl.scoring.factory.create_scorer
    # from `model` (+ `pretrained`), e.g. model "ViT-B-32", pretrained "openai" or a local checkpoint;
    # or model "openai/clip-vit-base-patch32" (the paper's scorer) or a local save_pretrained folder.
    backend: str = "tiny-clip"
    model: str | None = None
    pretrained: str | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    precision: str = "fp32"  # fp32 | fp16 (GPU) | bf16
    # Side of the square the image files are read at (resize + centre crop); None: data.image_size
    # for tiny-clip, the model's input size otherwise.
    image_size: int | None = None
    # "caption": every image is compared with its class caption (caption_template);
    # "prompt": with the prompt that generated it (each distinct prompt embedded once).
    text_source: str = "caption"
    caption_template: str = "a photo of the digit {name}"
    # Keep a synthetic image when cos(image, class caption) >= text_threshold and
    # cos(image, source) >= image_threshold. 0.55 suits the demo's tiny CLIP (about 95% of
    # real images pass); with OpenAI CLIP the paper used 0.25 (iWildCam) and 0.3 (ImageNet-LT).
    text_threshold: float = 0.55
    image_threshold: float | None = 0.0
    image_max: float | None = None  # with image_threshold: keep image_sim within a band
    # ALIA-style filter with the base model from `discl mine`: drop images it assigns to another
    # class with p >= confident_wrong, and/or images whose true class has p >= too_easy.
    confident_wrong: float | None = None
    too_easy: float | None = None
    max_per_class: int | None = None  # keep at most this many per (class, level), highest text_sim first
    batch_size: int = 256
    train_steps: int = 600
    train_batch_size: int = 128
    train_lr: float = 1e-3
    train_seed: int = 0


@dataclass
class PromptsConfig:
    """`discl prompts`: a template per dataset, optionally LLM-written descriptions per class."""

    dataset: str = "generic"  # template preset: generic | iwildcam | imagenet-lt | digits-lt
    template: str | None = None  # overrides the preset; "{name}" / "{description}"
    llm: bool = False  # ask an OpenAI-compatible chat endpoint for descriptions
    base_url: str = "https://api.openai.com/v1"  # or a local server, e.g. http://127.0.0.1:8000/v1
    model: str = "gpt-4o-mini"
    api_key_env: str | None = "OPENAI_API_KEY"  # the key is read from this variable; null: no key
    n_descriptions: int = 10
    min_words: int = 15
    temperature: float = 1.0
    attempts: int = 3  # replies per class that may fail validation before giving up on it
    timeout_s: float = 60.0
    max_retries: int = 4  # per request, on timeouts, connection errors, 429 and 5xx
    backoff_s: float = 1.0  # doubled after each retry (capped at 30 s); Retry-After is honoured
    on_error: str = "fallback"  # fallback: classes without descriptions use the template; error: stop
    output: str = "prompts.json"  # relative to the run directory


@dataclass
class CurriculumConfig:
    """Options of the curricula (docs/curricula.md)."""

    stage_epochs: list[int] = field(default_factory=list)  # non-adaptive/reverse: explicit lengths (default: even split)
    fixed_level: int = 50  # "fixed"
    stage_length: int = 1  # adaptive and random: epochs per stage
    warmup: bool = False  # adaptive: first stage on a uniform mix of all levels
    min_level: int = 0  # adaptive: only levels >= this (the paper used 50 on iWildCam)
    smoothing: float = 0.0  # adaptive: weight of the previous score in an exponential moving average
    val_sources: int = 2  # adaptive: sources held out for the curriculum validation set
    cuda_threshold: float = 0.6
    cuda_max_strength: int = 10
    cuda_probe_per_class: int = 32
    # ImageNet-LT recipe: keep non_tail_ratio of the non-tail real images each epoch and sample tail
    # images (real few-bucket images + the stage's synthetic images) to tail_fraction of the epoch.
    tail_sampling: bool = False
    non_tail_ratio: float = 0.3
    tail_fraction: float = 0.136


@dataclass
class FlypConfig:
    """CLIP fine-tuning with the FLYP recipe (train.task = "flyp")."""

    # "demo" = the run's tiny CLIP (models/clip); otherwise an open_clip architecture name.
    model: str = "demo"
    pretrained: str | None = None  # open_clip pretrained tag or a local weights file
    templates: list[str] = field(default_factory=lambda: ["a photo of the digit {name}"])
    wise_alpha: float | None = None  # WiSE-FT: weights = (1 - a) * zero-shot + a * fine-tuned


@dataclass
class TrainConfig(TrainRuntime):
    # Methods to train (curricula by name, see docs/curricula.md), e.g. "real-only", "non-adaptive".
    methods: list[str] = field(default_factory=lambda: ["real-only", "non-adaptive"])
    classifier: ClassifierConfig = field(default_factory=lambda: ClassifierConfig(epochs=40))
    # Non-adaptive curriculum: image-guidance levels from synthetic to real, spread over
    # the first curriculum_epochs epochs; the rest of training uses real data only.
    levels: list[int] = field(default_factory=lambda: [10, 30, 50, 100])
    curriculum_epochs: int = 32
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    task: str = "classifier"  # "classifier" (timm) or "flyp" (open_clip)
    flyp: FlypConfig = field(default_factory=FlypConfig)
    resume: bool = True  # continue from train/<method>/checkpoint.safetensors when its settings match


@dataclass
class EvalConfig(DeviceConfig):
    """`discl eval` (and `discl compare`'s test pass): where the trained models run."""


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    mine: MineConfig = field(default_factory=MineConfig)
    generate: GeneratorConfig = field(default_factory=GeneratorConfig)
    score: ScorerConfig = field(default_factory=ScorerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    pass


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key {key!r}; known keys here: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        key = f"{where}.{name}" if where else name
        kwargs[name] = _build(hint, value, key) if dataclasses.is_dataclass(hint) else _coerce(hint, value, key)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, key) for v in value]
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    try:
        if base is bool and isinstance(value, str):
            return {"true": True, "false": False}[value.lower()]
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base in (int, str, bool) and isinstance(value, base):
            return value
        return base(value)
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{key}: cannot read {value!r} as {getattr(base, '__name__', base)}") from None


def _merge(into: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def parse_override(text: str) -> dict[str, Any]:
    """``"train.levels=[10,50,100]"`` -> ``{"train": {"levels": [10, 50, 100]}}`` (values read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    out: dict[str, Any] = {}
    node = out
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(
    run_dir: Path | None = None, config_file: Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    values = RunConfig().to_dict()
    saved = Path(run_dir) / "config.yaml" if run_dir is not None else None
    for path in (saved, config_file):
        if path is not None and Path(path).exists():
            loaded = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"{path}: expected a YAML mapping at the top level")
            _merge(values, loaded)
        elif path is not None and path is config_file:
            raise ConfigError(f"config file not found: {path}")
    for text in overrides:
        _merge(values, parse_override(text))
    return _build(RunConfig, values, "")


def save_config(config: RunConfig, run_dir: Path) -> Path:
    path = Path(run_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path
