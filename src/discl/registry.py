"""Name registries for what a run can be built from: curricula, dataset adapters, generator and scorer
backends, filters, task models and training loggers (as timm's ``@register_model``).

Each implementation registers itself where it is defined::

    from discl.registry import curricula

    @curricula.register("my-curriculum", synthetic=True)
    def build(spec):            # spec: what the training run knows (discl.curricula.CurriculumSpec)
        ...

and from then on the name works everywhere a name is read: the config check, the CLI, ``--help``,
error messages and docs/config.md all list the registry. discl's own implementations live in the
modules each registry imports on first use (``builtin``); a plugin is any module that registers names,
imported before the run starts: in Python, import it first; from the command line, list it in the
environment variable ``DISCL_PLUGINS`` (comma-separated module names) or declare it as an entry point
of the group ``discl.plugins`` in its package. Registering is light: discl's own registering modules
import nothing heavy (PyTorch is imported when something is built), so checking a config and ``--help``
stay fast.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

PLUGINS_ENV = "DISCL_PLUGINS"
ENTRY_POINT_GROUP = "discl.plugins"


@dataclass(frozen=True)
class Entry:
    """One registered name. ``target`` is what the registry hands out (a builder function or a class);
    ``info`` what the implementation declares about itself (what it needs, which settings it reads);
    ``parameter``: the name also takes a value after a dash, e.g. ``fixed-<level>``."""

    name: str
    target: Any
    summary: str
    info: dict[str, Any] = field(default_factory=dict)
    parameter: str | None = None

    def __getattr__(self, key: str) -> Any:  # entry.synthetic reads info["synthetic"]
        info = self.__dict__.get("info", {})
        if key in info:
            return info[key]
        raise AttributeError(f"{self.name!r} declares no {key!r}")


class UnknownName(ValueError):
    """A name no registered implementation has; the message lists the known ones."""


class Registry:
    def __init__(self, kind: str, setting: str, builtin: Sequence[str], defaults: dict[str, Any] | None = None):
        self.kind, self.setting = kind, setting
        self._builtin = tuple(builtin)
        self._defaults = dict(defaults or {})
        self._entries: dict[str, Entry] = {}
        self._loading = False
        self._loaded = False

    # -- registering
    def register(self, name: str, /, *, summary: str | None = None, parameter: str | None = None, **info: Any) -> Callable:
        """Decorator: register ``target`` under ``name``. Keywords other than summary/parameter are the
        implementation's declarations (``info``), over the registry's defaults."""
        unknown = set(info) - set(self._defaults)
        if self._defaults and unknown:
            raise TypeError(f"{self.kind} {name!r}: unknown declaration(s) {sorted(unknown)}; known: {sorted(self._defaults)}")
        if not name or name != name.strip() or "," in name:
            raise ValueError(f"{self.kind} name {name!r}: must be a non-empty name without commas or spaces around it")

        def decorator(target: Any) -> Any:
            if name in self._entries and self._entries[name].target is not target:
                raise ValueError(f"{self.kind} {name!r} is registered twice ({_where(self._entries[name].target)} and {_where(target)})")
            doc = (summary or (target.__doc__ or "").strip().split("\n\n")[0]).strip()
            self._entries[name] = Entry(name, target, " ".join(doc.split()), {**self._defaults, **info}, parameter)
            return target

        return decorator

    def unregister(self, name: str) -> None:
        """Remove a name (tests that register a throwaway implementation clean up with this)."""
        self._entries.pop(name, None)

    # -- reading
    def _load(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            for module in self._builtin:
                importlib.import_module(module)
            load_plugins()
            self._loaded = True
        finally:
            self._loading = False

    def names(self) -> list[str]:
        return [entry.name for entry in self.entries()]

    def entries(self) -> list[Entry]:
        """discl's own in the order of its modules (not of whichever was imported first), then plugins'."""
        self._load()
        rank = {module: i for i, module in enumerate(self._builtin)}
        ordered = sorted(enumerate(self._entries.values()),
                         key=lambda ie: (rank.get(getattr(ie[1].target, "__module__", ""), len(rank)), ie[0]))
        return [entry for _, entry in ordered]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def find(self, name: str) -> Entry | None:
        self._load()
        if name in self._entries:
            return self._entries[name]
        # fixed-50: the longest registered name that takes a parameter
        for entry in sorted(self._entries.values(), key=lambda e: -len(e.name)):
            if entry.parameter and name.startswith(entry.name + "-") and len(name) > len(entry.name) + 1:
                return entry
        return None

    def get(self, name: str) -> Entry:
        entry = self.find(name)
        if entry is None:
            raise UnknownName(f"unknown {self.kind} {name!r} ({self.setting}); known: {self.describe_names()}")
        return entry

    def parameter_of(self, name: str) -> str | None:
        """``50`` for ``fixed-50``; None for a plain name."""
        entry = self.get(name)
        return name[len(entry.name) + 1 :] if entry.parameter and name != entry.name else None

    def describe_names(self) -> str:
        """The known names as --help and error messages list them, e.g. "real-only, fixed, fixed-<level>"."""
        parts = []
        for entry in self.entries():
            parts.append(entry.name)
            if entry.parameter:
                parts.append(f"{entry.name}-<{entry.parameter}>")
        return ", ".join(parts)


def _where(target: Any) -> str:
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


_plugins_loaded: set[str] = set()


class PluginError(ImportError):
    """A plugin module named in DISCL_PLUGINS does not import."""


def load_plugins() -> list[str]:
    """Import the plugin modules named in DISCL_PLUGINS and the ``discl.plugins`` entry points (once each)."""
    names = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    found = []
    try:
        from importlib.metadata import entry_points

        found = list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # a broken installed distribution must not stop discl itself
        found = []
    for module in names:
        if module not in _plugins_loaded:
            _plugins_loaded.add(module)
            try:
                importlib.import_module(module)
            except ImportError as err:
                # The command line prints this as one line; the cause stays chained for Python callers.
                raise PluginError(f"{PLUGINS_ENV} names {module!r}, which cannot be imported: {err}; fix the name "
                                  f"or unset {PLUGINS_ENV}") from err
    for ep in found:
        if ep.value not in _plugins_loaded:
            _plugins_loaded.add(ep.value)
            ep.load()
    return names + [ep.value for ep in found]


#: train.methods: what decides, epoch by epoch, which synthetic images a model trains on.
curricula = Registry(
    "curriculum", "train.methods", ["discl.curricula.schedules", "discl.curricula.adaptive", "discl.curricula.cuda"],
    # synthetic: trains on generated images (then it has a curriculum period, train.curriculum_epochs);
    # validation: needs the curriculum validation set (its sources leave training);
    # augmentation: augments real images itself (needs the real training rows);
    # settings: the train.curriculum keys it reads (docs/config.md lists them);
    # check: parameter -> None, or what is wrong with it (fixed-<level>: checked with the config).
    defaults={"synthetic": True, "validation": False, "augmentation": False, "settings": (), "check": None},
)

#: data.name: turns a source of images into the run's dataset table.
datasets = Registry(
    "dataset", "data.name",
    ["discl.data.digits", "discl.data.image_folder", "discl.data.imagenet_lt", "discl.data.iwildcam", "discl.data.csv_table",
     "discl.data.hf_datasets"],
    # root: what data.root must name (None: the adapter reads no data.root); lt_buckets: many/medium/few
    # by data.lt_many_above / lt_few_below (the ImageNet-LT convention), else by many_above / few_below.
    defaults={"root": None, "lt_buckets": False, "settings": ()},
)

#: generate.backend: the image-to-image model of the generate stage.
generators = Registry(
    "generator backend", "generate.backend", ["discl.generation.backends"],
    # trained_in_run: the generate stage trains it in the run directory first (the demo's model);
    # recorded_as: cfg -> the generator name recorded with every image (known without loading the model);
    # settings: the generate.* keys its images depend on (in every image's fingerprint);
    # prompts: conditioned on the text prompts (else on the class labels).
    defaults={"trained_in_run": False, "recorded_as": None, "settings": (), "prompts": False},
)

#: the diffusers model families generate.backend "diffusers" runs, detected from the loaded pipeline's class.
families = Registry(
    "diffusers family", "generate.model",
    ["discl.generation.families.stable_diffusion", "discl.generation.families.sd3", "discl.generation.families.flux"],
    # What an adapter declares about its family, read by the engine and the stages (never the family's name):
    # pipelines: the img2img pipeline class names it runs; detect: pipe -> bool where families share a class;
    # latent_channels; latent_multiple: latent pixels per denoiser token side (sizes are multiples of the VAE
    # factor x this); guidance: "classifier-free" (a doubled batch above 1), "embedded" (a model input) or "none";
    # schedule: "discrete" (DDPM-style timesteps) or "flow-matching"; min_steps: the fewest inference steps;
    # denoiser: the pipeline attribute holding the UNet or transformer.
    defaults={"pipelines": (), "detect": None, "latent_channels": 4, "latent_multiple": 1, "guidance": "classifier-free",
              "schedule": "discrete", "min_steps": 1, "denoiser": "unet", "settings": ()},
)

#: score.backend: the CLIP model the score stage (and mining, quality) embeds with.
scorers = Registry(
    "scorer backend", "score.backend", ["discl.scoring.backends"],
    # trained_in_run: the score stage trains it in the run directory first (the demo's tiny CLIP);
    # detect: name_or_path -> bool, for score.backend "auto" (tried in registration order).
    defaults={"trained_in_run": False, "detect": None, "settings": ()},
)

#: the score stage's filters, in the order they run; each reads its own score.* settings.
filters = Registry(
    "filter", "score.*", ["discl.scoring.filters"],
    # survivors: runs on what the other filters kept (the per-class cap), after them.
    defaults={"survivors": False, "settings": ()},
)

#: train.task: the task model a method trains (a class following discl.training.task_registry.TaskType).
tasks = Registry(
    "task", "train.task", ["discl.training.task_registry"],
    # kind: the kind its trained models are saved as (discl_model.json; `discl eval` loads every registered kind);
    # loader: "module:function" that loads a saved model of that kind (artefacts.load_pretrained);
    # settings: the train.* sections it reads.
    defaults={"kind": None, "loader": None, "settings": ()},
)

#: train.loggers: where a training run's metrics also go (rank 0 only; discl.training.loggers).
loggers = Registry(
    "logger", "train.loggers", ["discl.training.loggers"],
    # package: the module it imports (checked before any work); extra: `pip install discl[<extra>]` installs it.
    defaults={"package": None, "extra": None},
)

REGISTRIES = {"curriculum": curricula, "dataset": datasets, "generator": generators, "family": families, "scorer": scorers,
              "filter": filters, "task": tasks, "logger": loggers}
