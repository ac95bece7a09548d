"""CLIP fine-tuning with the FLYP recipe (Goyal et al., "Finetune like you pretrain", CVPR 2023).

Training uses the pretraining objective: open_clip's ``ClipLoss`` between each image and a
caption of its class ("a photo of {name}." ...). The classifier is the zero-shot head: the
normalised mean caption embedding of each class, scaled by the model's logit scale. WiSE-FT
(Wortsman et al., CVPR 2022) optionally interpolates the fine-tuned weights with the zero-shot ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch

from ..artefacts import load_weights, read_meta, save_pretrained
from ..scoring.base import OpenClipScorer
from .transforms import clip_transforms


class FlypTask:
    """The loop's task interface (training/tasks.py) for an open_clip model, with open_clip's own
    train/eval preprocessing. The contrastive loss is global: the training loop gathers every
    process's (and every micro-batch's) image and caption features, whatever their sizes, and computes
    it on the whole batch (training/microbatch.py)."""

    loss_is_global = True

    def __init__(self, scorer: OpenClipScorer, class_names: Sequence[str], templates: Sequence[str]):
        if not templates:
            raise ValueError("FLYP needs at least one caption template")
        self.scorer = scorer
        self.module = scorer.model
        self.net = scorer.model
        self.transforms = clip_transforms(scorer.model)
        self.class_names = list(class_names)
        self.templates = list(templates)
        captions = [[t.format(name=n) for t in self.templates] for n in self.class_names]
        # tokens[c, t]: class c with template t
        self.tokens = scorer.tokenizer([c for per_class in captions for c in per_class]).view(len(captions), len(self.templates), -1)
        self.loss_fn = open_clip.ClipLoss()  # on features already gathered: the whole batch's loss
        self.device = torch.device("cpu")
        self._head: torch.Tensor | None = None

    def to(self, device: torch.device) -> FlypTask:
        self.device = device
        self.module.to(device)
        self.tokens = self.tokens.to(device)
        self._head = None
        return self

    @torch.no_grad()
    def head(self) -> torch.Tensor:
        """Zero-shot classifier weights (C, D) from the current text tower."""
        was_training = self.module.training
        self.module.eval()
        emb = self.module.encode_text(self.tokens.flatten(0, 1), normalize=True).view(*self.tokens.shape[:2], -1)
        self.module.train(was_training)
        return torch.nn.functional.normalize(emb.float().mean(1), dim=-1)

    def encode(self, images: torch.Tensor, labels: torch.Tensor, variants: torch.Tensor | None = None):
        """(image features, caption features, logit scale) through ``net`` (the DDP wrapper in training)."""
        # The caption template of each image: its variant (the sampler's choice), else its place in the batch.
        which = variants if variants is not None else torch.arange(len(labels), device=labels.device)
        text = self.tokens[labels, which % len(self.templates)]
        image_features, text_features, scale = self.net(images, text)[:3]
        return image_features, text_features, scale

    def global_loss(self, image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The contrastive loss of the whole batch's features (row i of both is one image and its caption)."""
        return self.loss_fn(image_features, text_features, scale)

    def train_logits(self, image_features: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Class logits of training images (for the logged accuracy): the head of the last evaluation."""
        if self._head is None:
            self._head = self.head()
        return scale.detach() * image_features.detach().float() @ self._head.T

    def loss(self, images: torch.Tensor, labels: torch.Tensor, variants: torch.Tensor | None = None):
        """(loss, logits) of one process's batch on its own (the loop uses the global form above)."""
        image_features, text_features, scale = self.encode(images, labels, variants)
        return self.global_loss(image_features, text_features, scale), self.train_logits(image_features, scale)

    def set_stage_counts(self, counts: torch.Tensor) -> None:
        """The contrastive loss has no class prior to adapt to a stage's data."""

    def set_epoch_counts(self, counts: torch.Tensor) -> None:
        """Nor to an epoch's."""

    def before_eval(self) -> None:
        self._head = self.head()
        self.module.eval()

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        if self._head is None:
            self._head = self.head()
        features = self.module.encode_image(images, normalize=True).float()
        return self.module.logit_scale.exp().float() * features @ self._head.T


def wise_ft(zero_shot: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) * zero-shot + alpha * fine-tuned, for floating-point tensors (others from the fine-tuned)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"WiSE-FT alpha must lie in [0, 1], got {alpha}")
    if set(zero_shot) != set(finetuned):
        raise ValueError("WiSE-FT needs two state dicts of the same architecture")
    return {k: torch.lerp(zero_shot[k], v, alpha) if v.is_floating_point() else v for k, v in finetuned.items()}


def create_open_clip(name: str, pretrained: str | None) -> OpenClipScorer:
    """An open_clip model by architecture name; ``pretrained`` is an open_clip tag, a hub id or a local file."""
    model = open_clip.create_model(name, pretrained=pretrained, weights_only=True)  # a file is read as tensors, never unpickled
    return OpenClipScorer(model, open_clip.get_tokenizer(name), name)


def save_flyp(task: FlypTask, folder: Path, model_name: str, extra: dict | None = None,
              files: dict[str, bytes] | None = None) -> None:
    """The fine-tuned CLIP, with its classes and caption templates (``files``: e.g. the demo's tiny CLIP
    architecture file), atomic as a whole (discl/artefacts.py)."""
    config = {"task": "flyp", "model": model_name, "class_names": task.class_names, "templates": task.templates, **(extra or {})}
    save_pretrained(folder, "flyp", task.module.state_dict(), config, weights="open_clip_model.safetensors", files=files)


def load_flyp(folder: Path, scorer: OpenClipScorer) -> FlypTask:
    """Fill ``scorer`` (built with the saved architecture) with the saved weights."""
    meta = read_meta(folder)
    if meta["kind"] != "flyp":
        raise FileNotFoundError(f"no FLYP model in {folder} (it holds a {meta['kind']} model)")
    scorer.model.load_state_dict(load_weights(folder, meta))
    scorer.model.eval()
    return FlypTask(scorer, meta["config"]["class_names"], meta["config"]["templates"])


def load_flyp_model(folder: Path) -> FlypTask:
    """The FLYP model saved in ``folder``, its architecture built from what was saved: the demo's tiny CLIP
    from its architecture file, else open_clip's architecture by name."""
    config = read_meta(folder)["config"]
    if config["model"] == "demo":
        from ..scoring.tiny_clip import architecture_from

        scorer = architecture_from(folder)
    else:
        scorer = create_open_clip(config["model"], None)
    return load_flyp(folder, scorer)
