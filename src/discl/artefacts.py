"""One save/load pair for every model discl saves, after diffusers' and transformers' ``save_pretrained``.

A saved model is a folder with one metadata file, ``discl_model.json``::

    {"kind": "classifier", "format_version": 1, "weights": "model.safetensors", "config": {...}}

- ``kind``: what the folder holds (``classifier``, ``flyp``, ``tiny-clip``, ``pixel-diffusion``), so no
  reader guesses a type from which files exist;
- ``format_version``: this layout's version (a newer one is refused with a message, not misread);
- ``weights``: the safetensors file of its tensors (read without pickle);
- ``config``: the model's own settings (architecture, class count, input transform, what it was trained with).

Folders written by earlier versions (``model.json``, ``flyp.json``, ``discl-tiny-clip.json``,
``generator.json`` and no ``discl_model.json``) are read through :data:`LEGACY`.

A save is atomic as a whole: every file is written in full (and fsynced) under a temp name first, so
a full disk or a crash while writing leaves the old model as it was; then the metadata goes, the new
files are renamed in, and the new metadata is renamed in last. A crash between those renames leaves
no model (a reader says so) rather than new weights described by old settings. The folder may hold
other files (a method's folder keeps its checkpoint and logs), which are left alone."""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import fsync_replace, temp_path

META = "discl_model.json"
FORMAT_VERSION = 1
#: The kinds saved by discl's own stages besides the task models, with their loaders (module:function, imported
#: only when a model of that kind is loaded). Task models' kinds and loaders are declared where each task type
#: is registered (``discl.registry.tasks``: ``kind``, ``loader``), so a new task type adds its own.
OWN_LOADERS = {
    "tiny-clip": "discl.scoring.tiny_clip:load_tiny_clip",
    "pixel-diffusion": "discl.generation.pixel_diffusion:PixelDiffusionGenerator.load",
}

#: Layouts of earlier versions: (file that marked the folder, kind, weights file or folder). Checked in this
#: order: a FLYP model of the demo holds both flyp.json and the tiny CLIP's architecture file.
LEGACY = (
    ("flyp.json", "flyp", "open_clip_model.safetensors"),
    ("model.json", "classifier", "model.safetensors"),
    ("generator.json", "pixel-diffusion", "unet"),  # diffusers' UNet2DModel.save_pretrained folder
    ("discl-tiny-clip.json", "tiny-clip", "open_clip_model.safetensors"),
)



def loaders() -> dict[str, str]:
    """The loader of every kind: the task types' (registry), then discl's other models'."""
    from .registry import tasks

    out: dict[str, str] = {}
    for entry in tasks.entries():
        if entry.info.get("kind") and entry.info.get("loader"):
            out.setdefault(entry.info["kind"], entry.info["loader"])
    return out | OWN_LOADERS


def kinds() -> list[str]:
    """Every kind of model a folder may hold."""
    return list(loaders())


class ModelFormatError(ValueError):
    """A folder's metadata is not one this version of discl can read."""


def save_pretrained(folder: Path, kind: str, tensors: Mapping[str, torch.Tensor], config: dict,
                    weights: str = "model.safetensors", files: Mapping[str, bytes] | None = None) -> Path:
    """Save a model of ``kind`` into ``folder``: ``tensors`` in the safetensors file ``weights``, ``config`` in
    the metadata, and ``files`` (name -> bytes: e.g. an architecture file a library reads by name) beside them."""
    if kind not in loaders():
        raise ValueError(f"unknown model kind {kind!r}; known: {kinds()}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"kind": kind, "format_version": FORMAT_VERSION, "weights": weights, "config": config}
    json.dumps(meta, default=list)  # before any file is touched: a bad config fails here
    written: dict[str, Path] = {}  # final name -> its temp file, written in full
    try:
        written[weights] = temp_path(folder / weights)
        save_file(state, str(written[weights]))
        # What later tables (metrics, predictions) record as "made from this model", to tell a retrained one.
        meta["weights_digest"] = file_digest(written[weights])
        text = json.dumps(meta, indent=2, default=list)
        for name, data in (files or {}).items():
            written[name] = temp_path(folder / name)
            written[name].write_bytes(data)
        written[META] = temp_path(folder / META)
        written[META].write_text(text, encoding="utf-8")
    except BaseException:
        for tmp in written.values():
            tmp.unlink(missing_ok=True)
        raise
    # The metadata (and an older layout's metadata file, which would describe the folder) goes first, so a
    # crash during the renames leaves no model rather than a mix of old and new files. discl-tiny-clip.json
    # stays: it is open_clip's architecture file, in both layouts.
    (folder / META).unlink(missing_ok=True)
    for marker, kind, _ in LEGACY:
        if kind != "tiny-clip" and marker not in written:
            (folder / marker).unlink(missing_ok=True)
    for name, tmp in written.items():
        if name != META:
            fsync_replace(tmp, folder / name)
    fsync_replace(written[META], folder / META)
    return folder


def file_digest(path: Path) -> str:
    """A short digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


#: How each kind of saved model is made again when its files are damaged.
REPAIR = {
    "classifier": "`discl train RUN` (or `discl compare RUN` for a model under compare/) trains it again",
    "flyp": "`discl train RUN` (or `discl compare RUN` for a model under compare/) trains it again",
    "tiny-clip": "delete the folder; `discl score RUN` trains it again",
    "pixel-diffusion": "delete the folder; `discl generate RUN` trains it again",
}


class DamagedModelError(ValueError):
    """A saved model's files cannot be read: the message names the file and how to make it again."""


def damaged(path: Path, kind: str | None, err: BaseException) -> DamagedModelError:
    detail = " ".join(str(err).split()) or type(err).__name__
    repair = REPAIR.get(kind or "", "delete it and run the stage that made it again")
    return DamagedModelError(f"{path} cannot be read ({detail}): the file is damaged or incomplete; {repair}")


def read_meta(folder: Path) -> dict[str, Any]:
    """The metadata of the model in ``folder`` (``kind``, ``format_version``, ``weights``, ``config``); a folder of
    an earlier version is described the same way, with ``legacy`` naming the file it was read from."""
    folder = Path(folder)
    path = folder / META
    if path.exists():
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise damaged(path, None, err) from None
        version = meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFormatError(f"{path} has format_version {version!r}; this discl reads up to {FORMAT_VERSION}: "
                                   "upgrade discl, or train the model again")
        if meta.get("kind") not in loaders():
            raise ModelFormatError(f"{path}: unknown model kind {meta.get('kind')!r}; known: {kinds()}")
        return meta
    for marker, kind, weights in LEGACY:
        if (folder / marker).exists():
            if kind == "tiny-clip":  # the marker is the architecture; what it was trained with was in scorer.json
                extra = folder / "scorer.json"
                config = json.loads(extra.read_text()) if extra.exists() else {}
            else:
                config = json.loads((folder / marker).read_text())
            return {"kind": kind, "format_version": 0, "weights": weights, "config": config, "legacy": marker}
    raise FileNotFoundError(f"no saved model in {folder} (no {META}): run the stage that trains it first")


def model_kind(folder: Path) -> str | None:
    """The kind of model saved in ``folder``, or None when it holds none."""
    try:
        return read_meta(folder)["kind"]
    except FileNotFoundError:
        return None


def has_model(folder: Path, kind: str | None = None) -> bool:
    found = model_kind(folder)
    return found is not None and (kind is None or found == kind)


def load_weights(folder: Path, meta: dict | None = None) -> dict[str, torch.Tensor]:
    """The tensors of the model in ``folder`` (safetensors: no pickle); a damaged file is named, with its repair."""
    meta = meta or read_meta(folder)
    path = Path(folder) / meta["weights"]
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        if isinstance(err, FileNotFoundError):
            raise FileNotFoundError(f"{path} is missing; {REPAIR.get(meta['kind'], 'run the stage that made it again')}") from None
        raise damaged(path, meta["kind"], err) from None


def model_record(folder: Path) -> dict[str, Any]:
    """What identifies the model in ``folder`` for tables made from it: the digest of its weights and the
    settings (and input digests) it was trained with."""
    meta = read_meta(folder)
    digest = meta.get("weights_digest") or file_digest(Path(folder) / meta["weights"])
    return {"digest": digest, "settings": meta["config"].get("settings")}


def load_pretrained(folder: Path, kind: str | None = None, **options):
    """The model saved in ``folder``, built by its kind's loader (see :func:`loaders`): a timm classifier
    (with its config and transform), a FLYP task, a tiny CLIP scorer or a pixel-diffusion generator.
    ``kind``: the kind the caller expects (another one is an error)."""
    found = read_meta(folder)["kind"]
    if kind is not None and found != kind:
        raise ModelFormatError(f"{folder} holds a {found} model, not a {kind} model")
    module, _, attr = loaders()[found].partition(":")
    loader: Any = importlib.import_module(module)
    for part in attr.split("."):
        loader = getattr(loader, part)
    return loader(Path(folder), **options)
