"""The CLIP backends score.backend names (discl.registry.scorers), in the order score.backend "auto"
tries them: each builder takes (name_or_path, pretrained, **options: batch_size, device, precision) and
returns a Scorer (scoring/base.py); its ``detect`` says whether it recognises a name or path.
Nothing heavy is imported until a backend is built."""

from __future__ import annotations

from pathlib import Path

from ..registry import scorers


def _is_tiny_clip(name_or_path: str) -> bool:
    from ..artefacts import model_kind  # the kind its metadata records (older layouts: by their file)

    return Path(name_or_path).is_dir() and model_kind(Path(name_or_path)) == "tiny-clip"


def open_clip_names() -> set[str]:
    import open_clip

    return set(open_clip.list_models())


def _is_transformers(name_or_path: str) -> bool:
    """hf:<id>, a save_pretrained folder, or a hub id ("org/name") whose first part is no open_clip model."""
    path = Path(name_or_path)
    if name_or_path.startswith("hf:") or (path.is_dir() and (path / "config.json").exists()):
        return True
    head = name_or_path.split("/", 1)[0]
    return ("/" in name_or_path and not path.exists() and not name_or_path.startswith("hf-hub:")
            and head not in open_clip_names())


def _is_open_clip(name_or_path: str) -> bool:
    return name_or_path.startswith("hf-hub:") or name_or_path.split("/", 1)[0] in open_clip_names()


@scorers.register("tiny-clip", trained_in_run=True, detect=_is_tiny_clip,
                  settings=("caption_template", "train_steps", "train_batch_size", "train_lr", "train_seed"))
def tiny_clip(name_or_path: str, pretrained: str | None = None, **options):
    """The demo's small open_clip model, trained contrastively in the run directory (models/clip)."""
    from .base import OpenClipScorer
    from .tiny_clip import load_tiny_clip

    scorer = load_tiny_clip(Path(name_or_path))
    return OpenClipScorer(scorer.model, scorer.tokenizer, scorer.name, **options)


@scorers.register("transformers", detect=_is_transformers, settings=("model",))
def transformers_clip(name_or_path: str, pretrained: str | None = None, **options):
    """transformers' CLIPModel: a hub id (openai/clip-vit-base-patch32, the paper's scorer), hf:<id>, or a
    save_pretrained folder."""
    from .transformers_backend import load_transformers_clip

    return load_transformers_clip(name_or_path.removeprefix("hf:"), **options)


@scorers.register("open_clip", detect=_is_open_clip, settings=("model", "pretrained"))
def open_clip_model(name_or_path: str, pretrained: str | None = None, **options):
    """open_clip: a model name and a pretrained tag or local weights file (ViT-B-32 + openai, or "ViT-B-32/openai")."""
    from .factory import load_open_clip, split_open_clip

    model_name, tag = split_open_clip(name_or_path, pretrained)
    return load_open_clip(model_name, tag, **options)
