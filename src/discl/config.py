"""Typed configuration for every stage.

A run's configuration is built from three layers, later ones winning:
built-in defaults, a YAML file (``--config``), and ``--set section.key=value``
overrides. The result is validated as a whole before any stage runs (types, ranges and
choices per field, see config_types.py; a few rules across fields below), and a command
whose settings are valid saves it as ``config.yaml`` in the run directory, so a stage
re-run later on that directory sees what ran before.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import Field, Strict, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass as _pydantic_dataclass
from pydantic_core import ErrorDetails
from typing_extensions import dataclass_transform  # typing's own is Python >= 3.11; pydantic depends on this

from .atomic import atomic_write_text
from .config_types import (
    SECTION,
    Channels,
    Cosine,
    Count,
    Device,
    Flag,
    Float,
    Fraction,
    Int,
    Invalid,
    Level,
    Name,
    NonEmpty,
    NonNegative,
    Pair,
    PipelineDevice,
    Positive,
    PositiveFloat,
    PositiveFraction,
    TemplateDescription,
    TemplateName,
    Text,
    Triple,
    Unique,
    Url,
)
from .registry import Entry, Registry, curricula, datasets, generators, loggers, scorers, tasks
from .rundir import RunDir

_T = TypeVar("_T")


@dataclass_transform(field_specifiers=(field, Field))  # type checkers: a section is a dataclass
def section(cls: type[_T]) -> type[_T]:
    """A config section: a dataclass whose fields pydantic validates on construction; a bad value is a
    one-line ConfigError naming the field (``MineConfig(rules=["x"])`` as much as a YAML file)."""
    made: Any = _pydantic_dataclass(cls, config=SECTION)  # pydantic validates its fields
    init = made.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except ValidationError as err:
            raise ConfigError(_first_error(err, {}, made.__name__)) from None

    made.__init__ = __init__
    return made


@section
class DataConfig:
    # "digits-lt" (built in, offline) or "image-folder" (root/<class name>/<image>).
    name: Name = "digits-lt"  # the dataset adapter (docs/config.md, "Registered names")
    root: Text | None = None  # image-folder only
    image_size: Positive = 16
    # digits-lt: long-tailed training split n_c = max_per_class * imbalance_ratio^(-c / (C - 1)).
    imbalance_ratio: Annotated[float, Strict(), Field(ge=1)] = 50.0
    max_per_class: Positive = 50
    val_per_class: Count = 15
    test_per_class: Count = 30
    # image-folder without train/val/test subfolders: fractions held out per class.
    val_fraction: Fraction = 0.1
    test_fraction: Fraction = 0.2
    split_seed: Int = 0
    # Many/medium/few buckets from training counts: many > many_above, few < few_below.
    many_above: Count = 15
    few_below: Count = 5
    # imagenet-lt, iwildcam and csv: bucket thresholds of real datasets (many > 100, few < 20).
    lt_many_above: Count = 100
    lt_few_below: Count = 20
    # imagenet-lt: root = the ImageNet folder; the split files ImageNet_LT_{train,val,test}.txt
    # (lines "train/n01440764/n01440764_10026.JPEG 0") are read from split_dir (default: root).
    split_dir: Text | None = None
    # iwildcam: root = the folder holding iwildcam_v2.0/ (read through the wilds package, no download).
    # csv: root = a CSV file with columns path,label[,split][,class_name]; relative paths are read
    # from the CSV's folder; rows without a split are split like image-folder.
    csv_path_column: Name = "path"
    csv_label_column: Name = "label"
    csv_split_column: Name = "split"
    # hf: root = a Hugging Face dataset: a hub id ("user/name"), a local dataset folder (what
    # datasets.load_dataset reads, e.g. an image folder or Parquet files), or a folder written by
    # save_to_disk. Its images are written once into the run directory (data/hf/); docs/datasets.md.
    hf_config: Name | None = None  # the dataset's configuration (load_dataset's name); hub ids and local folders
    hf_revision: Name | None = None  # a hub dataset's branch, tag or commit
    image_column: Name = "image"  # the column of Image feature
    label_column: Name = "label"  # the column of ClassLabel feature; its names are the class names
    # The dataset's splits that become train / val / test; None (val, test): "validation" (or "valid",
    # "val") and "test" when the dataset has them, else carved out of the training split as image-folder
    # does (val_fraction, test_fraction, by a stable hash of each row).
    hf_train_split: Name = "train"
    hf_val_split: Name | None = None
    hf_test_split: Name | None = None
    # Display names of the classes, for any dataset: a CSV (a name column and a label or class_id
    # column) or JSON ({label id or class id: name}, or a list of names by label id). imagenet-lt and
    # iwildcam already name their classes in English; the ids stay in classes.parquet's class_id.
    class_names: Name | None = None

    @model_validator(mode="after")
    def _check(self):
        _registered(datasets, "name", self.name)
        if self.val_fraction + self.test_fraction >= 1:
            raise Invalid("test_fraction", self.test_fraction, f"val_fraction + test_fraction must be below 1 (val_fraction is {self.val_fraction})")
        for many, few in (("many_above", "few_below"), ("lt_many_above", "lt_few_below")):
            if getattr(self, few) > getattr(self, many) + 1:
                raise Invalid(few, getattr(self, few), f"must not exceed {many} + 1 = {getattr(self, many) + 1}")
        return self


@section
class AugmentConfig:
    """Image transforms of a timm classifier, built by timm.data.create_transform (docs/curricula.md).
    The defaults suit the demo's 16-pixel digits; the recipes use timm's ImageNet values."""

    input_size: Positive | None = None  # side of the training/eval input; None: data.image_size
    # Evaluation: resize the shorter side to input_size / crop_pct, then centre crop (timm's crop_pct).
    crop_pct: PositiveFraction = 1.0
    # Training: RandomResizedCrop over this fraction of the area and aspect ratio, then a horizontal flip
    # with probability hflip; optional colour jitter (e.g. 0.4) and RandAugment (e.g. "rand-m9-mstd0.5").
    scale: Annotated[list[PositiveFraction], Pair] = field(default_factory=lambda: [0.75, 1.0])
    ratio: Annotated[list[PositiveFloat], Pair] = field(default_factory=lambda: [0.9, 1.1])
    hflip: Fraction = 0.0
    color_jitter: NonNegative | None = None
    auto_augment: Name | None = None
    interpolation: Literal["bilinear", "bicubic", "nearest", "box", "hamming", "lanczos", "random"] = "bicubic"
    # Normalisation; None: the model's own (its pretrained config; ImageNet's for timm models).
    mean: Annotated[list[Float], Triple] | None = None
    std: Annotated[list[PositiveFloat], Triple] | None = None

    @model_validator(mode="after")
    def _check(self):
        for name in ("scale", "ratio"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise Invalid(name, [lo, hi], "must be [low, high] with low <= high")
        return self


@section
class DeviceConfig:
    """Where and how a model runs, and how images reach it (training, evaluation, mining)."""

    # auto: cuda (cuda:LOCAL_RANK under torchrun) when CUDA is available, else cpu; or cpu, cuda, cuda:N.
    device: Device = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast; fp16 trains with a gradient scaler
    # DataLoader worker processes that decode images; None: the usable CPU cores (shared by the
    # processes of one machine under torchrun); 0: decode in the main process.
    num_workers: Count | None = None
    eval_batch_size: Positive = 256
    channels_last: Flag = False
    # Unreadable or missing images are skipped and counted; above this fraction of an epoch (or of an
    # evaluation) the run stops with an error naming the files.
    max_skipped_fraction: Fraction = 0.01


@section
class TrainRuntime(DeviceConfig):
    compile: Flag = False  # torch.compile the model
    # Split each batch into this many micro-batches (less memory, one optimiser step per batch). A
    # per-image loss is averaged over the whole batch; FLYP's contrastive loss stays the whole batch's
    # (gradient caching). BatchNorm normalises over each micro-batch, so its statistics differ.
    accumulate: Positive = 1
    # Under DDP, BatchNorm layers normalise over the global batch (SyncBatchNorm) as one process would;
    # false: over each process's share (faster, results then depend on the number of processes).
    sync_batchnorm: Flag = True
    eval_every: Positive = 1  # validation accuracy every k epochs (and after the last)
    checkpoint_every_steps: Count = 0  # > 0: also checkpoint inside an epoch, every that many optimiser steps


@section
class ClassifierConfig:
    """A timm classifier and how to train it (the base model and the task model)."""

    model: Name = "resnet10t"
    epochs: Positive = 30
    batch_size: Positive = 64
    lr: PositiveFloat = 2e-3
    weight_decay: NonNegative = 5e-4
    seed: Int = 0
    # Weights loaded at the edge: None (random), a local .safetensors/.pth file, or a hub id ("hf-hub:...").
    pretrained: Name | None = None
    loss: Literal["ce", "bs"] = "ce"  # "ce" (cross-entropy) or "bs" (Balanced Softmax: log class prior added to the logits in training)
    # Balanced Softmax prior: "real" = class counts of the real training split; "stage" = class counts of
    # each stage's training data (real + synthetic), which the synthetic tail images change; "epoch" =
    # class counts of the rows each epoch trains on, after tail sampling (a class absent from an epoch
    # counts as one row): the label distribution the model is fitted to, so the tail is not rebalanced twice.
    bs_prior: Literal["real", "stage", "epoch"] = "real"
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    momentum: Annotated[float, Strict(), Field(ge=0, lt=1)] = 0.9  # sgd only
    warmup_epochs: NonNegative = 1.0  # linear warm-up, then cosine decay to zero
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@section
class BaseModelConfig(ClassifierConfig, TrainRuntime):
    """The mine stage's base model: what to train and where to run it."""

    @model_validator(mode="after")
    def _check(self):
        _check_accumulate(self.accumulate, self.batch_size, "batch_size")
        return self


@section
class MineConfig:
    # Any of: "few_shot" (class with few training images), "low_true_prob" (p(true class) <
    # prob_threshold), "misclassified", "hardest_k" (the hardest_k images of each class with the
    # lowest p(true class)). A sample is hard when any listed rule fires.
    # "clip_misclassified": images the zero-shot CLIP (the score stage's scorer, one caption per class
    # from score.caption_template) puts in another class; no base model, so it combines only with few_shot.
    rules: Annotated[list[Literal["few_shot", "low_true_prob", "misclassified", "hardest_k", "clip_misclassified"]], NonEmpty, Unique] = field(
        default_factory=lambda: ["few_shot", "low_true_prob"])
    prob_threshold: Fraction = 0.5
    # few_shot: classes with fewer than this many training images (ImageNet-LT: 20). None: the
    # dataset's "few" bucket (data.few_below), which the demo's digits-lt scales to its size.
    few_shot_below: Positive | None = None
    hardest_k: Positive = 5
    # >= 2: out-of-fold predictions: k base models, each judging only the images it did not train on.
    folds: Positive = 1
    # A base model not trained here: timm name base.model + this local weights file
    # (.safetensors, or a torch state dict loaded with weights_only=True), for the dataset's classes.
    base_weights: Name | None = None
    base_image_size: Positive | None = None  # input size of that model (None: its timm default, else data.image_size)
    # Import the reference's hard-sample CSV (ImageNet-LT or iWildCam format) instead of the rules;
    # its file paths are resolved against hard_csv_root (default: the CSV's folder).
    hard_csv: Name | None = None
    hard_csv_root: Name | None = None
    # False: with rules [few_shot] alone (which need no model) no base model is trained; later uses of
    # the judge (score's ALIA filter, `discl quality`) then need mine.base_weights.
    train_base: Flag = True
    # Classes whose images are never hard samples (by class name, class id or label id), whatever
    # the rules or the CSV say; the reference's iWildCam recipe excludes "empty".
    exclude_classes: Annotated[list[Name], Unique] = field(default_factory=list)
    # The base model judges hardness (and, in the demo, class consistency); Balanced Softmax keeps a
    # long-tailed model from pushing tail images towards head classes. 60 epochs: with random crops the
    # demo's judge needs them to fit the tail classes.
    base: BaseModelConfig = field(default_factory=lambda: BaseModelConfig(loss="bs", epochs=60))


@section
class LoraWeights:
    """One LoRA adapter of generate.lora."""

    path: Name  # a local .safetensors file or folder, or a hub id
    scale: Float = 1.0  # its weight (peft's adapter weight; 0 turns it off)
    weight_name: Name | None = None  # the file inside a folder or hub repo holding several


@section
class GeneratorConfig:
    # "pixel-diffusion": the small class-conditional diffusion model trained in-process.
    backend: Name = "pixel-diffusion"  # the image-to-image backend (docs/config.md, "Registered names")
    # "{name}" is the class name; with prompt_file (JSON: class name -> descriptions), one
    # description per (class, seed) fills "{description}", e.g. "a 8k real photo: {description}".
    prompt_template: TemplateDescription = "a photo of the digit {name}"
    # A relative prompt_file is read from the run directory (where `discl prompts` writes prompts.json),
    # else from the current directory.
    prompt_file: Name | None = None
    strengths: Annotated[list[PositiveFraction], NonEmpty, Unique] = field(default_factory=lambda: [round(0.1 * i, 1) for i in range(1, 11)])
    seeds: Annotated[list[Int], NonEmpty, Unique] = field(default_factory=lambda: [10, 20, 30, 40])
    text_guidance: NonNegative = 2.0
    inference_steps: Positive = 25
    batch_size: Positive = 64
    # pixel-diffusion: the space it denoises in and how it is trained.
    sample_size: Positive = 8
    channels: Channels = 1
    train_steps: Positive = 1000
    train_batch_size: Positive = 128
    train_lr: PositiveFloat = 2e-3
    train_seed: Int = 0
    # "diffusers": an img2img model of a family discl knows (SD 1.x/2.x, SDXL and its refiner, SD3/3.5,
    # FLUX.1 dev/schnell: `discl registry family`; docs/generation.md), detected from its pipeline.
    # model: an alias (sd15, sd21, sdxl, sdxl-refiner), a hub id or a local pipeline folder.
    model: Name | None = None
    # What a level (a strength in strengths) means: "strength" passes it to the pipeline as it is (the
    # reference's meaning); "noise" starts each model from the noise Stable Diffusion has at that strength
    # (matched by signal-to-noise ratio on the model's own schedule), the same closeness on every model.
    level_scale: Literal["strength", "noise"] = "strength"
    # LoRA adapters loaded into the pipeline (load_lora_weights), e.g. [{path: some/lora, scale: 0.8}].
    lora: list[LoraWeights] = field(default_factory=list)
    local_files_only: Flag = False
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    device: PipelineDevice = "cpu"
    attention: Literal["sdpa", "eager"] = "sdpa"
    cpu_offload: Flag = False  # enable_model_cpu_offload: one model part on the GPU at a time (24 GB cards)
    vae_tiling: Flag = False  # decode and encode large images in tiles (bounded VAE memory; tile seams may differ slightly)
    compile: Flag = False  # torch.compile the UNet or transformer
    # default: the model's own; the others are discrete-timestep schedulers (Stable Diffusion families only)
    scheduler: Literal["default", "ddim", "euler", "euler-a", "dpm++", "pndm", "lms"] = "default"
    negative_prompt: Text = ""
    resize: Annotated[list[Positive], Pair] | None = None  # [width, height], rounded to the model's multiple, e.g. [480, 270]
    # Size of the sources fed to img2img, unless resize is set: "square" (data.image_size squared) or
    # "native" (each image's own size, as the reference's ImageNet-LT). The model works at that size
    # rounded DOWN to its multiple (8 for SD/SDXL, 16 for SD3 and FLUX), as diffusers' image processor
    # does: a 500x375 photo runs at 496x368 (on SD and FLUX alike), resize [480, 270] at 480x264 on SD, 480x256 on FLUX.
    source_size: Literal["square", "native"] = "square"
    aesthetic_score: Float = 6.0  # SDXL refiner conditioning
    negative_aesthetic_score: Float = 2.5
    # Images decoded per VAE call: the decoder's memory grows with it and with the image size.
    vae_batch_size: Positive = 4
    # Scale: "local" or "ray" (Ray Data, one pipeline per actor); ray_address None starts Ray locally.
    engine: Literal["local", "ray"] = "local"
    ray_address: Name | None = None
    ray_workers: Positive = 1
    ray_gpus_per_worker: NonNegative = 0.0
    # Regenerate-until-good: while cos(image, class caption) <= threshold under the score stage's scorer,
    # draw again with another prompt of the class, up to regenerate_tries more times; keep the best.
    regenerate: Flag = False
    regenerate_threshold: Cosine = 0.3
    regenerate_tries: Count = 5

    @model_validator(mode="after")
    def _check(self):
        _registered(generators, "backend", self.backend)
        if self.backend == "diffusers" and not self.model:
            raise Invalid("model", self.model, "backend 'diffusers' needs a model: an alias (sd15, sd21, sdxl, sdxl-refiner), a hub id or a local pipeline folder")
        if self.resize and self.source_size == "native":
            raise Invalid("source_size", self.source_size, f"'native' contradicts resize {self.resize}: set one of them")
        return self


@section
class ScorerConfig:
    # "tiny-clip": a small open_clip model trained contrastively in-process (the demo).
    # "open_clip" / "transformers" / "auto": a CLIP made by discl.scoring.factory.create_scorer
    # from `model` (+ `pretrained`), e.g. model "ViT-B-32", pretrained "openai" or a local checkpoint;
    # or model "openai/clip-vit-base-patch32" (the paper's scorer) or a local save_pretrained folder.
    # "auto": the first registered backend (discl.registry.scorers) that recognises `model`.
    backend: Name = "tiny-clip"
    model: Name | None = None
    pretrained: Name | None = None
    device: Device = "auto"
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"  # fp16: GPU only
    # Side of the square the image files are read at (resize + centre crop); None: data.image_size
    # for tiny-clip, the model's input size otherwise.
    image_size: Positive | None = None
    # "caption": every image is compared with its class caption (caption_template);
    # "prompt": with the prompt that generated it (each distinct prompt embedded once).
    text_source: Literal["caption", "prompt"] = "caption"
    caption_template: TemplateName = "a photo of the digit {name}"
    # Keep a synthetic image when cos(image, class caption) >= text_threshold and
    # cos(image, source) >= image_threshold. 0.55 suits the demo's tiny CLIP (about 95% of
    # real images pass); with OpenAI CLIP the paper used 0.25 (iWildCam) and 0.3 (ImageNet-LT).
    text_threshold: Cosine = 0.55
    image_threshold: Cosine | None = 0.0
    image_max: Cosine | None = None  # with image_threshold: keep image_sim within a band
    # ALIA-style filter with the base model from `discl mine`: drop images it assigns to another
    # class with p >= confident_wrong, and/or images whose true class has p >= too_easy.
    confident_wrong: Fraction | None = None
    too_easy: Fraction | None = None
    max_per_class: Positive | None = None  # keep at most this many per (class, level), highest text_sim first
    batch_size: Positive = 256
    train_steps: Positive = 600
    train_batch_size: Positive = 128
    train_lr: PositiveFloat = 1e-3
    train_seed: Int = 0

    @model_validator(mode="after")
    def _check(self):
        entry = _registered(scorers, "backend", self.backend, also=("auto",))
        if not (entry and entry.trained_in_run) and not self.model:
            raise Invalid("model", self.model, f"backend {self.backend!r} needs a model, e.g. ViT-B-32 or openai/clip-vit-base-patch32")
        if self.image_max is not None and self.image_threshold is not None and self.image_max < self.image_threshold:
            raise Invalid("image_max", self.image_max, f"must be >= image_threshold ({self.image_threshold})")
        return self


@section
class PromptsConfig:
    """`discl prompts`: a template per dataset, optionally LLM-written descriptions per class."""

    dataset: Literal["generic", "iwildcam", "imagenet-lt", "digits-lt"] = "generic"  # template preset
    template: TemplateDescription | None = None  # overrides the preset
    llm: Flag = False  # ask an OpenAI-compatible chat endpoint for descriptions
    base_url: Url = "https://api.openai.com/v1"  # or a local server, e.g. http://127.0.0.1:8000/v1
    model: Name = "gpt-4o-mini"
    api_key_env: Name | None = "OPENAI_API_KEY"  # the key is read from this variable; null: no key
    n_descriptions: Positive = 10
    min_words: Count = 15
    temperature: Annotated[float, Strict(), Field(ge=0, le=2)] = 1.0
    attempts: Positive = 3  # replies per class that may fail validation before giving up on it
    timeout_s: PositiveFloat = 60.0
    max_retries: Count = 4  # per request, on timeouts, connection errors, 429 and 5xx
    backoff_s: NonNegative = 1.0  # doubled after each retry (capped at 30 s); Retry-After is honoured
    on_error: Literal["fallback", "error"] = "fallback"  # fallback: classes without descriptions use the template; error: stop
    output: Name = "prompts.json"  # relative to the run directory
    # The class names generation prompts and the filter's captions use: "class" (the classes' names) or
    # "reference" (the names the reference's generation and filter code use for prompts.dataset where they
    # differ; iWildCam: "bird" and "bat" for the classes "unknown bird" and "unknown bat").
    names: Literal["class", "reference"] = "class"


@section
class CurriculumConfig:
    """Options of the curricula (docs/curricula.md)."""

    stage_epochs: list[Positive] = field(default_factory=list)  # non-adaptive/reverse: explicit lengths (default: even split)
    fixed_level: Level = 50  # "fixed"
    stage_length: Positive = 1  # adaptive and random: epochs per stage
    warmup: Flag = False  # adaptive: a warm-up stage first (warmup_data), then the adaptive choice
    # The warm-up stage's data: "levels" (a uniform mix of every candidate level's synthetic images with the
    # real rows) or "real" (warmup_rows real rows drawn at random, as the reference's uniform set).
    warmup_data: Literal["levels", "real"] = "levels"
    warmup_rows: Positive = 30000  # warmup_data "real": how many real rows (all of them when fewer)
    # adaptive: what the first choice's progress is measured from: "measured" (p(true) before training)
    # or "zero" (the reference: an empty last performance, so the first choice ranks levels by p(true)
    # itself). A warm-up stage always measures its baseline.
    progress_start: Literal["measured", "zero"] = "measured"
    min_level: Level = 0  # adaptive: only levels >= this (the paper used 50 on iWildCam)
    smoothing: Annotated[float, Strict(), Field(ge=0, lt=1)] = 0.0  # adaptive: weight of the previous score in an exponential moving average
    val_sources: Positive = 2  # adaptive: sources held out for the curriculum validation set
    # adaptive: the curriculum-validation image of each (source, level): the kept image of the lowest
    # grid seed, or one drawn at random (seeded by classifier.seed, the same in every process).
    val_image: Literal["lowest-seed", "random"] = "lowest-seed"
    cuda_threshold: Fraction = 0.6
    cuda_max_strength: Positive = 10
    cuda_probe_per_class: Positive = 32
    # ImageNet-LT recipe: each epoch keeps non_tail_ratio of the non-tail real images and samples tail
    # images (real few-bucket images + the stage's synthetic images) to tail_fraction of the epoch.
    # "none": plain epochs; "curricula": every method that trains on synthetic images; "all": every
    # method, the real-only baseline too (what the reference's training script does).
    tail_sampling: Literal["none", "curricula", "all"] = "none"
    # "reference": every real tail image once, synthetic fill without replacement unless too few, real
    # tail with replacement after the curriculum; "replacement": the whole tail share with replacement.
    tail_rule: Literal["reference", "replacement"] = "reference"
    # Which synthetic rows are tail rows: "all" (every synthetic row) or "few" (the reference: only those
    # of few-bucket classes; the others join the non-tail rows and are subsampled with them).
    synthetic_tail: Literal["all", "few"] = "all"
    non_tail_ratio: Fraction = 0.3
    tail_fraction: Annotated[float, Strict(), Field(ge=0, lt=1)] = 0.136
    # Real rows in a curriculum stage: "all" (the reference's ImageNet-LT trainer) or "non-hard" (the
    # paper's description: synthetic images mixed with the real images of the non-hard samples; the hard
    # samples' own real images come back at level 100 and after the curriculum) or "unreplaced" (the
    # reference's iWildCam code: drops only the real images of hard samples that kept a synthetic image).
    stage_real: Literal["all", "non-hard", "unreplaced"] = "all"

    @field_validator("tail_sampling", mode="before")
    @classmethod
    def _tail_sampling_was_a_flag(cls, value):
        # Runs made before the per-method choice saved true/false, which applied to every method.
        return {True: "all", False: "none"}.get(value, value) if isinstance(value, bool) else value


@section
class FlypConfig:
    """CLIP fine-tuning with the FLYP recipe (train.task = "flyp")."""

    # "demo" = the run's tiny CLIP (models/clip); otherwise an open_clip architecture name.
    model: Name = "demo"
    pretrained: Name | None = None  # open_clip pretrained tag or a local weights file
    templates: Annotated[list[TemplateName], NonEmpty] = field(default_factory=lambda: ["a photo of the digit {name}"])
    # True: each image is listed once per template in every epoch (the reference); False: once, its
    # caption's template chosen by its place in the epoch's shuffled order.
    rows_per_template: Flag = True
    wise_alpha: Fraction | None = None  # WiSE-FT: weights = (1 - a) * zero-shot + a * fine-tuned


@section
class TrainConfig(TrainRuntime):
    # Methods to train (curricula by name, see docs/curricula.md), e.g. "real-only", "non-adaptive".
    methods: Annotated[list[Name], NonEmpty, Unique] = field(default_factory=lambda: ["real-only", "non-adaptive"])
    classifier: ClassifierConfig = field(default_factory=lambda: ClassifierConfig(epochs=40))
    # Non-adaptive curriculum: image-guidance levels from synthetic to real, spread over
    # the first curriculum_epochs epochs; the rest of training uses real data only.
    levels: Annotated[list[Level], NonEmpty, Unique] = field(default_factory=lambda: [10, 30, 50, 100])
    curriculum_epochs: Count = 32
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    # The task model, by registered name (docs/extending.md): "classifier" (timm) or "flyp" (open_clip).
    task: Name = "classifier"
    flyp: FlypConfig = field(default_factory=FlypConfig)
    resume: Flag = True  # continue from train/<method>/checkpoint.safetensors when its settings match
    # Where each epoch's metrics also go, on rank 0 only (each an optional extra, docs/training-loops.md): any of
    # "tensorboard", "wandb" (WANDB_MODE=offline works offline), "mlflow". Changes no result.
    loggers: Annotated[list[Name], Unique] = field(default_factory=list)
    # Which epoch's weights are saved: "final"; "best-val": the epoch most accurate on the validation
    # split; "best-test": on the test split (what the reference's ImageNet-LT script reports: it
    # chooses on test, so its figure is optimistic; offered only to reproduce it); "best-id-val": on the
    # id_val split (iWildCam's in-distribution validation split, FLYP's model selection).
    select: Literal["final", "best-val", "best-test", "best-id-val"] = "final"
    # Steps per epoch: "pass" (one pass over the stage's rows) or "real" (the reference's iWildCam
    # trainer: int(real training rows x rows per image / batch size) steps in every epoch, whatever the
    # stage holds; the stage's rows are drawn in passes, reshuffled each time they run out).
    epoch_length: Literal["pass", "real"] = "pass"

    @model_validator(mode="after")
    def _check(self):
        entries = [_registered(curricula, "methods", method) for method in self.methods]
        _registered(tasks, "task", self.task)
        for name in self.loggers:
            _registered(loggers, "loggers", name)
        _check_accumulate(self.accumulate, self.classifier.batch_size, "classifier.batch_size")
        if any(e and e.synthetic for e in entries) and self.curriculum_epochs > self.classifier.epochs:
            raise Invalid("curriculum_epochs", self.curriculum_epochs, f"must not exceed classifier.epochs ({self.classifier.epochs})")
        return self


@section
class EvalConfig(DeviceConfig):
    """`discl eval` (and `discl compare`'s test pass): where the trained models run."""


@section
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


_RUN_CONFIG = TypeAdapter(RunConfig)  # validates a whole config given as plain values


def _registered(registry: Registry, field: str, name: str, also: tuple[str, ...] = ()) -> Entry | None:
    """The registry's entry for ``name`` (a curriculum, dataset, backend), None for one of ``also`` (names the
    setting takes besides the registry's, like score.backend "auto"), else an Invalid listing the known names."""
    if name in also:
        return None
    entry = registry.find(name)
    if entry is None:
        raise Invalid(field, name, f"must be one of: {', '.join(also + (registry.describe_names(),))}")
    parameter = registry.parameter_of(name)
    check = entry.info.get("check")
    if parameter is not None and check is not None and (problem := check(parameter)):
        raise Invalid(field, name, problem)
    return entry


def _check_accumulate(accumulate: int, batch_size: int, batch_key: str) -> None:
    if accumulate > batch_size:
        raise Invalid("accumulate", accumulate, f"micro-batches per batch must not exceed {batch_key} ({batch_size})")


def _where(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _section_at(path: list[str], cls: type | None = None) -> type | None:
    """The config section class at a dotted path below ``cls`` (default RunConfig), or None when there is none."""
    cls = cls or RunConfig
    hints = typing.get_type_hints
    for part in path:
        kind = hints(cls).get(part) if dataclasses.is_dataclass(cls) else None
        if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
            return None
        cls = kind
    return cls


def _first_error(err: ValidationError, origins: dict[str, str], where: str = "") -> str:
    errors = err.errors()
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _message(errors[0], origins, where) + more


def _message(error: ErrorDetails, origins: dict[str, str], where: str = "") -> str:
    """One line: the key, the value and what is allowed, and where the value came from."""
    loc = (where, *error["loc"]) if where else tuple(error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if error["type"] == "unexpected_keyword_argument":
        section = _section_at([str(p) for p in error["loc"][:-1]], globals()[where] if where else RunConfig)
        known = sorted(f.name for f in dataclasses.fields(section)) if section else []
        text = f"unknown config key {_where(loc)!r}; known keys here: {known}"
    elif isinstance(cause, Invalid):
        loc = (*loc, *cause.field.split("."))
        text = f"{_where(loc)} = {cause.value!r}: {cause.allowed}"
    else:
        allowed = str(cause) if error["type"] == "value_error" and cause is not None else error["msg"]
        allowed = allowed.replace("Input should be", "must be").replace("List should have", "must have").replace(" after validation", "")
        text = f"{_where(loc)} = {error['input']!r}: {allowed}"
    key = _where(loc)
    source = next((origins[k] for k in (key.split("[")[0], *_parents(key)) if k in origins), None)
    return text + (f" (from {source})" if source else "")


def _parents(key: str) -> list[str]:
    parts = key.split("[")[0].split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def config_from_dict(values: dict[str, Any], origins: dict[str, str] | None = None) -> RunConfig:
    """A validated RunConfig from plain values (as ``to_dict`` gives); ConfigError names the first bad key."""
    if not isinstance(values, dict):
        raise ConfigError(f"config: expected a mapping of sections, got {values!r}")
    try:
        return _RUN_CONFIG.validate_python(values)
    except ValidationError as err:
        raise ConfigError(_first_error(err, origins or {})) from None


def _merge(into: dict[str, Any], update: dict[str, Any], origin: str, origins: dict[str, str], prefix: str = "") -> dict[str, Any]:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, origin, origins, dotted + ".")
        else:
            into[key] = value
            origins[dotted] = origin
    return into


_NULLS = {"", "~", "null", "Null", "NULL"}


class _YamlLoader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where 1e-5 (no dot) is text; read it as the number everyone means (YAML 1.2)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # a SafeLoader subclass: plain values only, no objects


def _is_text(kind: Any) -> bool:
    """Whether a field holds text: str, or a choice among strings."""
    if kind is str:
        return True
    return typing.get_origin(kind) is Literal and all(isinstance(a, str) for a in typing.get_args(kind))


def _override_value(path: list[str], raw: str) -> Any:
    """Text fields take the raw text (so "a 8k real photo: {description}" stays a string); other fields
    read the value as YAML (numbers, booleans, lists)."""
    section = _section_at(path[:-1])
    kind = typing.get_type_hints(section).get(path[-1]) if section else None
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    optional = type(None) in typing.get_args(kind)
    if _is_text(kind) or (optional and len(args) == 1 and _is_text(args[0])):
        if optional and raw.strip() in _NULLS:
            return None
        return _unquoted(raw)
    try:
        return _load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {'.'.join(path)}={raw}: not a valid YAML value ({_yaml_problem(err)})") from None


def _unquoted(raw: str) -> str:
    """A text value as written, except that one wholly in YAML quotes ('...' or "...") is that YAML string."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            return raw
        return value if isinstance(value, str) else raw
    return raw


def parse_override(text: str) -> dict[str, Any]:
    """``"train.levels=[10,50,100]"`` -> ``{"train": {"levels": [10, 50, 100]}}``; text fields take the text as it is."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    parts = dotted.strip().split(".")
    out: dict[str, Any] = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = _override_value(parts, raw)
    return out


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = _load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {_yaml_problem(err)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a YAML mapping of sections at the top level")
    return loaded


def load_config(
    run_dir: Path | None = None, config_file: Path | None = None, overrides: list[str] | tuple[str, ...] = (),
    recipe: str | None = None,
) -> RunConfig:
    """Defaults, then RUN/config.yaml, then the shipped ``recipe``, then ``config_file``, then
    ``overrides``; validated as a whole."""
    values = RunConfig().to_dict()
    origins: dict[str, str] = {}
    saved = RunDir(run_dir).config if run_dir is not None else None
    if saved is not None and saved.exists():
        _merge(values, _read_yaml(saved), str(saved), origins)
    if recipe is not None:
        from .recipes import recipe_path

        try:
            path = recipe_path(recipe)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        _merge(values, _read_yaml(path), f"recipe {recipe}", origins)
    if config_file is not None:
        if not Path(config_file).exists():
            raise ConfigError(f"config file not found: {config_file}")
        _merge(values, _read_yaml(Path(config_file)), str(config_file), origins)
    for text in overrides:
        _merge(values, parse_override(text), "--set", origins)
    return config_from_dict(values, origins)


def with_overrides(config: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """``config`` with ``overrides`` (``section.key=value``, as ``--set`` takes them) applied; validated as a whole."""
    values = config.to_dict()
    origins: dict[str, str] = {}
    for text in overrides:
        _merge(values, parse_override(text), "--set", origins)
    return config_from_dict(values, origins)


def save_config(config: RunConfig, run_dir: Path) -> Path:
    """Write RUN/config.yaml atomically (temp file + rename): a crash leaves the old file or the new one."""
    path = RunDir(run_dir).config
    return atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
