"""Task models by name (``train.task``): what a task type provides, and discl's own two.

A *task* is what the training loop trains (:class:`Task`); a *task type* (:class:`TaskType`) builds one
from a run's settings, and saves and loads what it trained. A task type is a class registered with
``@tasks.register(name, kind=..., loader=...)`` (discl.registry); ``kind`` is the model kind its trained
models are saved as (discl_model.json), which ``discl eval`` loads through ``loader``. Several task types
may save the same kind (a variant of the classifier saves plain classifiers).

This module registers names only: PyTorch and the model libraries are imported when a task is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..registry import tasks

if TYPE_CHECKING:
    import torch

    from ..config import RunConfig
    from ..rundir import RunDir
    from .transforms import Transforms


class Task(Protocol):
    """What the training loop, the evaluation and the curricula ask of a task model.

    ``module``: the parameters to optimise and checkpoint; ``net``: what the training forward pass goes
    through (the loop swaps in its DistributedDataParallel or compiled wrapper); ``transforms``: training
    and evaluation transforms (training/transforms.py). ``loss_is_global`` is what DDP needs to know: True
    when the loss couples the images of a batch (a contrastive loss), so it is the loss of the whole
    global batch rather than an average over each process's part."""

    module: torch.nn.Module
    net: Any
    transforms: Transforms
    loss_is_global: bool

    def to(self, device: torch.device) -> Task: ...

    def loss(self, images: torch.Tensor, labels: torch.Tensor, variants: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) of a training batch of normalised float images."""
        ...

    def set_stage_counts(self, counts: torch.Tensor) -> None:
        """Told the class counts of each stage's training rows before it trains (a no-op for most tasks)."""
        ...

    def set_epoch_counts(self, counts: torch.Tensor) -> None:
        """Told the class counts of each epoch's training rows (after tail sampling) before it trains."""
        ...

    def before_eval(self) -> None: ...

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode logits (N, classes)."""
        ...


@dataclass(frozen=True)
class TaskSpec:
    """What a task type's ``build`` receives: the run (where the demo's models live), its settings, and the
    classes (names in label order; real training images per class)."""

    run: RunDir
    config: RunConfig
    class_names: list[str]
    class_counts: torch.Tensor


class TaskType(Protocol):
    """A registered task type (``@tasks.register``)."""

    def build(self, spec: TaskSpec) -> Task:
        """The task at its starting weights, with its transforms."""
        ...

    def variants_per_row(self, config: RunConfig) -> int:
        """How many times each row is listed per epoch (FLYP: once per caption template)."""
        ...

    def before_training(self, task: Task, config: RunConfig) -> Any:
        """Whatever ``save`` needs from the starting weights (FLYP's WiSE-FT: the zero-shot weights), or None."""
        ...

    def save(self, task: Task, folder: Path, spec: TaskSpec, extra: dict, start: Any) -> None:
        """Save the trained task into ``folder`` as a model of the registered ``kind`` (discl/artefacts.py)."""
        ...

    def load(self, folder: Path) -> Task:
        """A saved model of the registered ``kind``, as a task in evaluation mode."""
        ...

    def loss_label(self, config: RunConfig) -> str:
        """The loss a comparison table reports for it (``discl compare``'s loss column)."""
        ...


class TaskTypeBase:
    """Defaults for :class:`TaskType`: one listing per row, nothing kept from the start, the loss named by
    train.classifier.loss."""

    name: ClassVar[str] = ""

    def variants_per_row(self, config: RunConfig) -> int:
        return 1

    def before_training(self, task: Task, config: RunConfig) -> Any:
        return None

    def loss_label(self, config: RunConfig) -> str:
        return config.train.classifier.loss


def task_type(name: str) -> TaskType:
    """The registered task type ``name`` (UnknownName lists the known ones)."""
    return tasks.get(name).target()


def task_type_of_kind(kind: str) -> TaskType | None:
    """The first registered task type whose trained models are saved as ``kind`` (None: no task saves it)."""
    entry = next((e for e in tasks.entries() if e.info.get("kind") == kind), None)
    return None if entry is None else entry.target()


def task_kinds() -> tuple[str, ...]:
    """Every model kind a registered task type saves (what ``discl eval`` finds in train/<method>/)."""
    return tuple(dict.fromkeys(e.info["kind"] for e in tasks.entries() if e.info.get("kind")))


@tasks.register("classifier", kind="classifier", loader="discl.training.classifier:load_classifier",
                settings=("classifier",))
class ClassifierType(TaskTypeBase):
    """A timm classifier (train.classifier.model) with cross-entropy or Balanced Softmax."""

    def build(self, spec: TaskSpec) -> Task:
        from .classifier import create_classifier
        from .tasks import ClassifierTask
        from .transforms import classifier_transforms

        c = spec.config.train.classifier
        model = create_classifier(c.model, len(spec.class_names), c.seed, c.pretrained)
        transforms = classifier_transforms(model, c.augment, spec.config.data.image_size)
        return ClassifierTask(model, transforms, c.loss, spec.class_counts, c.bs_prior)

    def save(self, task: Task, folder: Path, spec: TaskSpec, extra: dict, start: Any) -> None:
        from .classifier import save_classifier

        save_classifier(task.module, folder, spec.config.train.classifier.model, len(spec.class_names), task.transforms, extra)

    def load(self, folder: Path) -> Task:
        from .classifier import load_classifier
        from .tasks import ClassifierTask

        model, _, transforms = load_classifier(folder)
        return ClassifierTask(model, transforms)


@tasks.register("flyp", kind="flyp", loader="discl.training.flyp:load_flyp_model", settings=("flyp", "classifier"))
class FlypType(TaskTypeBase):
    """CLIP fine-tuned with the FLYP recipe (open_clip; train.flyp), its classifier the zero-shot head."""

    def build(self, spec: TaskSpec) -> Task:
        import torch

        from .flyp import FlypTask, create_open_clip

        f = spec.config.train.flyp
        if f.model == "demo":
            from ..scoring.tiny_clip import load_tiny_clip

            scorer = load_tiny_clip(spec.run.scorer_model)
        else:
            scorer = create_open_clip(f.model, f.pretrained)
        torch.manual_seed(spec.config.train.classifier.seed)
        return FlypTask(scorer, spec.class_names, f.templates)

    def variants_per_row(self, config: RunConfig) -> int:
        f = config.train.flyp
        return len(f.templates) if f.rows_per_template else 1

    def before_training(self, task: Task, config: RunConfig) -> Any:
        if config.train.flyp.wise_alpha is None:
            return None
        return {k: v.clone() for k, v in task.module.state_dict().items()}  # the zero-shot weights, for WiSE-FT

    def save(self, task: Task, folder: Path, spec: TaskSpec, extra: dict, start: Any) -> None:
        from .flyp import FlypTask, save_flyp, wise_ft

        assert isinstance(task, FlypTask)
        f = spec.config.train.flyp
        if start is not None and f.wise_alpha is not None:
            finetuned = task.module.state_dict()
            device = next(iter(finetuned.values())).device
            task.module.load_state_dict(wise_ft({k: v.to(device) for k, v in start.items()}, finetuned, f.wise_alpha))
        files = None
        if f.model == "demo":  # the tiny CLIP's architecture file, which its loader reads by name
            from ..scoring.tiny_clip import architecture_files

            files = architecture_files(task.scorer)
        save_flyp(task, folder, f.model, extra, files)

    def load(self, folder: Path) -> Task:
        from .flyp import load_flyp_model

        return load_flyp_model(folder)

    def loss_label(self, config: RunConfig) -> str:
        return "flyp"  # FLYP trains with the CLIP loss whatever classifier.loss says
