"""One save/load pair for every saved model (discl/artefacts.py): the metadata names the kind, loads need no
pickle, saves are atomic as a whole, and folders written by earlier versions still load."""

import json

import pytest
import torch
from safetensors.torch import save_file

import discl.artefacts as artefacts
from discl.artefacts import META, ModelFormatError, has_model, load_pretrained, model_kind, read_meta
from discl.config import AugmentConfig
from discl.generation.pixel_diffusion import PixelDiffusionGenerator, PixelDiffusionSpec, build_unet, training_scheduler
from discl.scoring.factory import create_scorer
from discl.scoring.tiny_clip import create_tiny_clip, load_tiny_clip, save_tiny_clip, tiny_clip_config
from discl.stages.evaluate import is_trained, load_task, saved_meta
from discl.training.classifier import create_classifier, load_classifier, save_classifier
from discl.training.flyp import FlypTask, save_flyp
from discl.training.tasks import ClassifierTask
from discl.training.transforms import classifier_transforms


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def classifier():
    model = create_classifier("resnet10t", 3, seed=0)
    return model, classifier_transforms(model, AugmentConfig(), 16)


def _generator(seed=0):
    spec = PixelDiffusionSpec(num_classes=3, sample_size=8, channels=1)
    torch.manual_seed(seed)
    return PixelDiffusionGenerator(build_unet(spec), dict(training_scheduler().config), spec, inference_steps=4)


def _images(generator):
    images = torch.randint(0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return generator.img2img(images, [0, 2], ["a", "b"], 0.5, 2.0, [3, 4])


def test_every_kind_round_trips_with_its_kind_in_one_metadata_file(tmp_path, classifier):
    model, transforms = classifier
    save_classifier(model, tmp_path / "classifier", "resnet10t", 3, transforms, {"method": "real-only"})
    loaded, config, _ = load_classifier(tmp_path / "classifier")
    assert _same(_state(loaded), _state(model)) and config["method"] == "real-only"

    scorer = create_tiny_clip(tiny_clip_config(16), tmp_path / "clip", seed=1)
    save_tiny_clip(scorer, tmp_path / "clip")
    assert _same(_state(load_tiny_clip(tmp_path / "clip").model), _state(scorer.model))

    task = FlypTask(scorer, ["zero", "one", "two"], ["a photo of {name}."])
    save_flyp(task, tmp_path / "flyp", "demo", {"method": "m"}, {"discl-tiny-clip.json": (tmp_path / "clip" / "discl-tiny-clip.json").read_bytes()})
    flyp = load_pretrained(tmp_path / "flyp")
    assert isinstance(flyp, FlypTask) and flyp.class_names == ["zero", "one", "two"] and _same(_state(flyp.module), _state(scorer.model))

    generator = _generator()
    generator.save(tmp_path / "generator")
    again = load_pretrained(tmp_path / "generator", inference_steps=4)
    assert torch.equal(_images(again), _images(generator))

    for name, kind in (("classifier", "classifier"), ("clip", "tiny-clip"), ("flyp", "flyp"), ("generator", "pixel-diffusion")):
        folder = tmp_path / name
        meta = json.loads((folder / META).read_text())
        assert meta["kind"] == kind == model_kind(folder)
        assert meta["format_version"] == artefacts.FORMAT_VERSION and (folder / meta["weights"]).is_file()
        assert meta["weights"].endswith(".safetensors")  # tensors only: nothing to unpickle
        # No older layout's marker is written, so nothing can read the folder as another kind.
        assert not {"model.json", "flyp.json", "generator.json", "scorer.json"} & {p.name for p in folder.iterdir()}
        assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temp file left
    assert read_meta(tmp_path / "generator")["config"]["spec"]["num_classes"] == 3


def _legacy_classifier(folder, model, transforms, extra=None):
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    meta = {"model": "resnet10t", "num_classes": 3, "transform": transforms.describe(), **(extra or {})}
    (folder / "model.json").write_text(json.dumps(meta))


def test_folders_of_earlier_versions_still_load(tmp_path, classifier):
    model, transforms = classifier
    _legacy_classifier(tmp_path / "classifier", model, transforms, {"settings": {"method": "real-only"}})
    meta = read_meta(tmp_path / "classifier")
    assert (meta["kind"], meta["legacy"], meta["format_version"]) == ("classifier", "model.json", 0)
    assert _same(_state(load_classifier(tmp_path / "classifier")[0]), _state(model))
    assert is_trained(tmp_path / "classifier") and saved_meta(tmp_path / "classifier")["settings"] == {"method": "real-only"}
    assert isinstance(load_task(tmp_path / "classifier"), ClassifierTask)

    # The tiny CLIP: its open_clip architecture file, weights and scorer.json.
    scorer = create_tiny_clip(tiny_clip_config(16), tmp_path / "clip", seed=2)
    save_file({k: v.contiguous() for k, v in scorer.model.state_dict().items()}, str(tmp_path / "clip" / "open_clip_model.safetensors"))
    (tmp_path / "clip" / "scorer.json").write_text("{}")
    assert model_kind(tmp_path / "clip") == "tiny-clip"
    assert _same(_state(create_scorer(str(tmp_path / "clip")).model), _state(scorer.model))  # found by the legacy file

    # A FLYP model of the demo: flyp.json beside the tiny CLIP's architecture file; flyp.json decides.
    flyp = tmp_path / "flyp"
    flyp.mkdir()
    (flyp / "discl-tiny-clip.json").write_bytes((tmp_path / "clip" / "discl-tiny-clip.json").read_bytes())
    save_file({k: v.contiguous() for k, v in scorer.model.state_dict().items()}, str(flyp / "open_clip_model.safetensors"))
    (flyp / "flyp.json").write_text(json.dumps({"task": "flyp", "model": "demo", "class_names": ["a", "b"], "templates": ["{name}"]}))
    assert model_kind(flyp) == "flyp" and is_trained(flyp)
    task = load_task(flyp)
    assert isinstance(task, FlypTask) and _same(_state(task.module), _state(scorer.model))

    # The pixel-diffusion generator: diffusers' unet/ folder and generator.json; the same images as before.
    generator = _generator(seed=3)
    generator.unet.save_pretrained(tmp_path / "generator" / "unet")
    (tmp_path / "generator" / "generator.json").write_text(json.dumps(
        {"spec": {"num_classes": 3, "sample_size": 8, "channels": 1, "block_out_channels": [32, 64]},
         "scheduler": generator.scheduler_config}, default=list))
    old = PixelDiffusionGenerator.load(tmp_path / "generator", 4)
    assert torch.equal(_images(old), _images(generator))
    old.save(tmp_path / "resaved")  # and the new layout makes the same images
    assert torch.equal(_images(PixelDiffusionGenerator.load(tmp_path / "resaved", 4)), _images(generator))


def test_the_kind_comes_from_the_metadata_not_from_which_files_exist(tmp_path, classifier):
    model, transforms = classifier
    folder = tmp_path / "m"
    _legacy_classifier(folder, model, transforms)
    scorer = create_tiny_clip(tiny_clip_config(16), tmp_path / "clip")
    save_flyp(FlypTask(scorer, ["a", "b"], ["{name}"]), folder, "demo",
              files={"discl-tiny-clip.json": (tmp_path / "clip" / "discl-tiny-clip.json").read_bytes()})
    assert model_kind(folder) == "flyp" and not (folder / "model.json").exists()  # the old marker went with the save
    (folder / "model.json").write_text("{}")  # a stray marker of another kind changes nothing
    assert model_kind(folder) == "flyp" and isinstance(load_task(folder), FlypTask)
    assert model_kind(tmp_path / "nothing") is None and not has_model(folder, "classifier")
    with pytest.raises(FileNotFoundError, match="no tiny CLIP"):
        load_tiny_clip(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no classifier"):
        load_classifier(folder)


def test_a_failed_save_leaves_the_old_model_and_a_crash_between_renames_leaves_none(tmp_path, classifier, monkeypatch):
    model, transforms = classifier
    save_classifier(model, tmp_path, "resnet10t", 3, transforms, {"method": "old"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    changed = create_classifier("resnet10t", 3, seed=1)

    with pytest.raises(TypeError):  # a config that is not JSON fails before any file is touched
        save_classifier(changed, tmp_path, "resnet10t", 3, transforms, {"method": object()})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    renamed = []

    def crash_on_second(tmp, path):
        if renamed:
            raise OSError("power cut")
        renamed.append(path)
        real(tmp, path)

    real = artefacts.fsync_replace
    monkeypatch.setattr(artefacts, "fsync_replace", crash_on_second)
    with pytest.raises(OSError, match="power cut"):
        save_classifier(changed, tmp_path, "resnet10t", 3, transforms, {"method": "new"})
    # New weights are in, the new metadata is not: no model at all, never new weights under the old metadata.
    assert not has_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="no classifier"):
        load_classifier(tmp_path)


def test_metadata_of_a_newer_format_or_unknown_kind_is_refused(tmp_path):
    (tmp_path / META).write_text(json.dumps({"kind": "classifier", "format_version": 99, "weights": "w", "config": {}}))
    with pytest.raises(ModelFormatError, match="format_version 99"):
        read_meta(tmp_path)
    (tmp_path / META).write_text(json.dumps({"kind": "vae", "format_version": 1, "weights": "w", "config": {}}))
    with pytest.raises(ModelFormatError, match="unknown model kind 'vae'"):
        model_kind(tmp_path)
    with pytest.raises(ValueError, match="unknown model kind"):
        artefacts.save_pretrained(tmp_path / "x", "vae", {}, {})
