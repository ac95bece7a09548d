"""Scorer backends built from tiny random models saved to tmp and loaded back through create_scorer,
checked against each library's own (PIL) preprocessing and forward pass."""

import gzip
import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from discl.scoring.factory import create_scorer
from discl.scoring.preprocess import TensorPreprocess


@pytest.fixture(scope="module")
def hf_clip_dir(tmp_path_factory):
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    d = tmp_path_factory.mktemp("hf-clip")
    merges = gzip.open(default_bpe()).read().decode().split("\n")[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer.from_pretrained(d, model_max_length=77)
    assert len(tok) == 49408  # transformers 5 can silently build a 2-token tokenizer
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                         max_position_embeddings=77, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(d)
    tok.save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def open_clip_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("oc-clip")
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (d / "discl-test-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d / "discl-test-clip.json")
    torch.manual_seed(1)
    model = open_clip.create_model("discl-test-clip", pretrained=None)
    torch.save(model.state_dict(), d / "weights.pt")
    return d / "weights.pt", model.eval()


def _images(n=4, h=48, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)


def _pil(images):
    return [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images]


def test_transformers_folder_matches_the_libraries_own_pipeline(hf_clip_dir):
    from transformers import CLIPImageProcessor, CLIPModel

    scorer = create_scorer(str(hf_clip_dir))
    assert type(scorer).__name__ == "TransformersClipScorer" and len(scorer.tokenizer) == 49408
    images = _images()  # not square: resize of the shorter side + centre crop must match
    ours = scorer.embed_images(images)
    pixels = CLIPImageProcessor.from_pretrained(hf_clip_dir)(images=_pil(images), return_tensors="pt").pixel_values
    model = CLIPModel.from_pretrained(hf_clip_dir)
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=pixels).pooler_output
        text_ref = model.get_text_features(**scorer.tokenizer(["a red fox", "a photo of a cat"], padding=True, return_tensors="pt")).pooler_output
    ref = ref / ref.norm(dim=-1, keepdim=True)
    assert ours.shape == (4, 16)
    assert (ours * ref).sum(-1).min() > 0.995
    text = scorer.embed_texts(["a red fox", "a photo of a cat"])
    assert torch.allclose(text, text_ref / text_ref.norm(dim=-1, keepdim=True), atol=1e-5)


def test_open_clip_local_checkpoint_matches_open_clip_preprocess(open_clip_checkpoint):
    path, model = open_clip_checkpoint
    scorer = create_scorer("discl-test-clip", pretrained=str(path))
    assert scorer.name == f"discl-test-clip/{path}"
    images = _images(seed=3)
    ours = scorer.embed_images(images)
    preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
    with torch.no_grad():
        ref = model.encode_image(torch.stack([preprocess(p) for p in _pil(images)]), normalize=True)
    assert (ours * ref).sum(-1).min() > 0.995
    tokens = open_clip.get_tokenizer("discl-test-clip")(["a red fox"])
    with torch.no_grad():
        assert torch.allclose(scorer.embed_texts(["a red fox"]), model.encode_text(tokens, normalize=True), atol=1e-5)
    # "name/tag" spelling of the same thing
    assert torch.allclose(create_scorer(f"discl-test-clip/{path}").embed_images(images), ours, atol=1e-6)


def test_batching_does_not_change_embeddings(open_clip_checkpoint):
    path, _ = open_clip_checkpoint
    big = create_scorer("discl-test-clip", pretrained=str(path), batch_size=64)
    small = create_scorer("discl-test-clip", pretrained=str(path), batch_size=3)
    images = _images(10, 32, 32, seed=5)
    assert torch.allclose(big.embed_images(images), small.embed_images(images), atol=1e-5)


def test_bf16_on_cpu_is_close_to_fp32_and_fp16_on_cpu_is_refused(open_clip_checkpoint):
    path, _ = open_clip_checkpoint
    images = _images(4, 32, 32)
    fp32 = create_scorer("discl-test-clip", pretrained=str(path)).embed_images(images)
    bf16 = create_scorer("discl-test-clip", pretrained=str(path), precision="bf16").embed_images(images)
    assert bf16.dtype == torch.float32 and torch.allclose(bf16.norm(dim=-1), torch.ones(4), atol=1e-4)
    assert (fp32 * bf16).sum(-1).min() > 0.98
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        create_scorer("discl-test-clip", pretrained=str(path), precision="fp16", device="cpu")


def test_tensor_preprocess_matches_torchvision_resize_and_crop():
    from torchvision.transforms import v2

    images = _images(2, 50, 30, seed=7)
    ours = TensorPreprocess(24, mean=(0, 0, 0), std=(1, 1, 1))(images)
    ref = v2.Compose([v2.Resize(24, antialias=True, interpolation=v2.InterpolationMode.BICUBIC), v2.CenterCrop(24),
                      v2.ToDtype(torch.float32, scale=True)])(images)
    assert ours.shape == (2, 3, 24, 24)
    # torchvision resizes uint8 and rounds to uint8 (steps of 1/255): equal up to that rounding.
    diff = (ours - ref).abs()
    assert diff.mean() < 0.004 and diff.max() < 0.04


@pytest.mark.parametrize("name, message", [
    ("not-a-model", "cannot make a scorer from 'not-a-model'"),
    ("", "no scorer model given"),
])
def test_unknown_scorer_names_are_explained(name, message):
    with pytest.raises(ValueError, match=message):
        create_scorer(name)


def test_missing_checkpoint_file_is_named(tmp_path, open_clip_checkpoint):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        create_scorer("discl-test-clip", pretrained=str(tmp_path / "nope.pt"))


def test_tiny_clip_folder_loads_through_the_factory(tmp_path):
    from discl.scoring.tiny_clip import create_tiny_clip, save_tiny_clip, tiny_clip_config

    scorer = create_tiny_clip(tiny_clip_config(16), tmp_path / "clip")
    save_tiny_clip(scorer, tmp_path / "clip")
    loaded = create_scorer(str(tmp_path / "clip"))
    images = _images(3, 16, 16)
    assert np.allclose(loaded.embed_images(images).numpy(), scorer.embed_images(images).numpy(), atol=1e-6)
