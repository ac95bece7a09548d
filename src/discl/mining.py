"""Hard-sample rules, out-of-fold folds, and base models loaded from a timm name + local weights."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .artefacts import file_digest, has_model
from .config import MineConfig, RunConfig
from .data import load_dataset_tables
from .data.class_names import normalise_name
from .rundir import RunDir

#: "clip_misclassified" is judged by the zero-shot CLIP, not the base model (scoring/zero_shot.py).
RULES = ("few_shot", "low_true_prob", "misclassified", "hardest_k", "clip_misclassified")


def hardest_per_class(p_true: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """True for the k images of each class with the lowest p(true class) (ties: earlier index first)."""
    out = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique():
        idx = torch.nonzero(labels == c).squeeze(1)
        order = np.lexsort((idx.numpy(), p_true[idx].numpy()))  # by p_true, then index
        out[idx[torch.from_numpy(order[:k])]] = True
    return out


def hard_rules(p_true: torch.Tensor, pred: torch.Tensor, labels: torch.Tensor, few: torch.Tensor, cfg: MineConfig) -> list[str]:
    """For each sample, the rules that flag it as hard, joined by "+" ("" = not hard)."""
    unknown = sorted(set(cfg.rules) - set(RULES))
    if unknown:
        raise ValueError(f"unknown mining rule {unknown[0]!r}; known: {list(RULES)}")
    if "clip_misclassified" in cfg.rules:
        raise ValueError("the clip_misclassified rule is judged by the zero-shot CLIP, not by the base model's predictions")
    fired = {
        "few_shot": few,
        "low_true_prob": p_true < cfg.prob_threshold,
        "misclassified": pred != labels,
    }
    if "hardest_k" in cfg.rules:
        if cfg.hardest_k < 1:
            raise ValueError(f"mine.hardest_k must be >= 1, got {cfg.hardest_k}")
        fired["hardest_k"] = hardest_per_class(p_true, labels, cfg.hardest_k)
    return ["+".join(r for r in cfg.rules if fired[r][i]) for i in range(len(labels))]


def excluded_labels(classes: pd.DataFrame, exclude: list[str]) -> set[int]:
    """Labels of the classes ``mine.exclude_classes`` names, each by label id, class name or class id
    (compared as class_names.normalise_name does)."""
    by_name: dict[str, set[int]] = {}
    for y, name, cid in zip(classes["label"], classes["class_name"], classes["class_id"]):
        for text in (name, cid):
            by_name.setdefault(normalise_name(text), set()).add(int(y))
    labels, unknown = set(), []
    for entry in exclude:
        text = str(entry).strip()
        hits = {int(text)} & set(classes["label"].astype(int)) if text.isdigit() else by_name.get(normalise_name(text), set())
        if not hits:
            unknown.append(text)
        labels |= hits
    if unknown:
        raise ValueError(f"mine.exclude_classes: {unknown} name no class of the dataset "
                         f"(give class names, class ids or label ids, e.g. {classes['class_name'].iloc[0]!r})")
    return labels


def drop_excluded_classes(hard: pd.DataFrame, classes: pd.DataFrame, exclude: list[str], echo=print) -> pd.DataFrame:
    """``hard`` without the samples of the classes in ``exclude`` (iWildCam: "empty" images are never
    hard samples), from mining rules and CSV imports alike."""
    if not exclude:
        return hard
    drop = hard["label"].astype(int).isin(excluded_labels(classes, exclude))
    echo(f"mine: {int(drop.sum())} hard samples of the excluded classes {list(exclude)} dropped (mine.exclude_classes)")
    return hard[~drop].reset_index(drop=True)


def few_shot_mask(labels: np.ndarray, class_counts: dict[int, int], buckets: dict[int, str], below: int | None) -> np.ndarray:
    if below is None:
        return np.array([buckets[int(y)] == "few" for y in labels], dtype=bool)
    return np.array([class_counts[int(y)] < below for y in labels], dtype=bool)


def fold_ids(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index of each image, stratified by class, fixed by ``seed``."""
    from sklearn.model_selection import StratifiedKFold

    if folds < 2:
        raise ValueError(f"out-of-fold predictions need mine.folds >= 2, got {folds}")
    out = np.zeros(len(labels), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for k, (_, held_out) in enumerate(split.split(np.zeros(len(labels)), labels)):
            out[held_out] = k
    return out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """safetensors, or a torch checkpoint read with weights_only=True (tensors only, nothing unpickled)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"base model weights {path} not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as err:
            raise ValueError(f"{path} cannot be read ({' '.join(str(err).split())}): the file is damaged or "
                             "incomplete; save it again (a base model that `discl mine` trained: delete it and rerun `discl mine`)") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means "not a plain state dict"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot read {path} as a plain state dict (torch.load with weights_only=True refused it: {first})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


@dataclass
class Judge:
    """A base model that gives class probabilities for uint8 images."""

    model: torch.nn.Module | None  # None: only the key is known (nothing loaded)
    key: str  # identifies the model, so saved predictions are reused only with it
    image_size: int
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    crop_pct: float = 1.0
    interpolation: str = "bicubic"

    def loaded_model(self) -> torch.nn.Module:
        """The model, which a key-only judge (stages.mine.load_judge(load=False)) does not have."""
        if self.model is None:
            raise ValueError(f"judge {self.key!r} has no model loaded (it was made with load=False)")
        return self.model

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        model = self.loaded_model()
        model.eval()
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].float() / 255.0
            if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
            out.append(model((x - mean) / std).softmax(-1))
        return torch.cat(out) if out else torch.zeros((0, 0))


def load_timm_judge(name: str, weights: Path, num_classes: int, image_size: int | None, fallback_size: int) -> Judge:
    import timm

    from .training import models  # noqa: F401  (registers discl's extra timm models, e.g. resnet10)

    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    state = read_state_dict(weights)
    missing, unexpected = [k for k in model.state_dict() if k not in state], [k for k in state if k not in model.state_dict()]
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        keys = ", ".join(f"{len(v)} {what} (e.g. {v[0]!r})" for what, v in (("missing keys", missing), ("unexpected keys", unexpected)) if v)
        detail = keys or str(err).strip().splitlines()[-1].strip()[:300]  # shapes that differ
        raise ValueError(f"{weights} does not fit timm model {name!r} with {num_classes} classes: {detail}") from None
    data = timm.data.resolve_data_config({}, model=model)
    size = image_size or (data["input_size"][-1] if data.get("input_size") else fallback_size)
    return Judge(model.eval(), timm_judge_key(name, weights, image_size), int(size), tuple(data["mean"]), tuple(data["std"]),
                 float(data.get("crop_pct", 1.0)), str(data.get("interpolation", "bicubic")))


def judge_task(judge: Judge):
    """The judge as a task the data loader can feed: timm's evaluation transform at the judge's input
    size (resize by crop_pct, centre crop) with its mean/std."""
    from .training.tasks import ClassifierTask
    from .training.transforms import saved_classifier_transforms

    transforms = saved_classifier_transforms({"input_size": judge.image_size, "mean": judge.mean, "std": judge.std,
                                              "crop_pct": judge.crop_pct, "interpolation": judge.interpolation})
    return ClassifierTask(judge.loaded_model(), transforms)


def timm_judge_key(name: str, weights: Path, image_size: int | None) -> str:
    return f"timm:{name}:{file_digest(Path(weights))}:{image_size}"


def load_base_classifier(run: RunDir):
    """The base model trained by `discl mine`, with its evaluation transform."""
    from .training.classifier import load_classifier

    model, _, transforms = load_classifier(run.base_model)
    return model, transforms


def load_judge(run: RunDir, cfg: RunConfig, load: bool = True) -> Judge:
    """The base model as a judge of images: loaded weights if configured, else the one trained by
    `discl mine`. With ``load=False`` only its identity (``key``) is filled in, no model is built."""
    m = cfg.mine
    _, classes = load_dataset_tables(run)
    if m.base_weights:
        if not load:
            weights = Path(m.base_weights)
            if not weights.exists():
                raise FileNotFoundError(f"base model weights {weights} not found")
            return Judge(None, timm_judge_key(m.base.model, weights, m.base_image_size), 0)
        return load_timm_judge(m.base.model, Path(m.base_weights), len(classes), m.base_image_size, cfg.data.image_size)
    folder = run.base_model
    if not has_model(folder, "classifier"):
        raise FileNotFoundError(f"no base model in {folder}: run `discl mine` first (it trains none with mine.train_base "
                                "false and rules [few_shot]), or set mine.base_weights")
    settings = run.trained_with(folder)
    key = hashlib.sha1(settings.read_bytes() if settings.exists() else b"untracked").hexdigest()[:16]
    if not load:
        return Judge(None, f"trained:{key}", 0)
    model, transforms = load_base_classifier(run)
    return Judge(model, f"trained:{key}", transforms.input_size, transforms.mean, transforms.std, transforms.crop_pct,
                 transforms.interpolation)
