import numpy as np
import pandas as pd
import pytest
import torch

from discl.scoring.embeddings import EmbeddingStore
from discl.scoring.filters import ImageSimInBand, TextSimAtLeast, apply_filters
from discl.scoring.tiny_clip import create_tiny_clip, load_tiny_clip, save_tiny_clip, tiny_clip_config, train_tiny_clip
from discl.stages.score import similarity_frame


def _unit(v):
    v = torch.tensor(v, dtype=torch.float32)
    return v / v.norm(dim=-1, keepdim=True)


def apply_thresholds(scores, text_threshold, image_threshold):
    return apply_filters(scores, [TextSimAtLeast(text_threshold), ImageSimInBand(image_threshold)])


def test_similarities_are_cosines_against_source_and_class_caption(tmp_path):
    synthetic = pd.DataFrame({"synthetic_id": ["x", "y"], "source_id": ["s1", "s2"], "label": [0, 1], "image_guidance": [10, 90]})
    images = _unit([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    sources = {"s1": _unit([1.0, 1.0, 0.0]), "s2": _unit([0.0, 1.0, 1.0])}
    captions = {0: _unit([0.0, 0.0, 1.0]), 1: _unit([0.0, 1.0, 0.0])}
    store = EmbeddingStore(tmp_path / "emb", key="test", echo=lambda *_: None)
    store.add("synthetic", ["x", "y"], images.numpy())
    store.add("source", list(sources), torch.stack(list(sources.values())).numpy())
    store.add("text", ["caption 0", "caption 1"], torch.stack([captions[0], captions[1]]).numpy())
    table = similarity_frame(synthetic, store, ["caption 0", "caption 1"])
    assert np.allclose(table["image_sim"], [1 / np.sqrt(2), 1.0], atol=1e-6)
    assert np.allclose(table["text_sim"], [0.0, 1 / np.sqrt(2)], atol=1e-6)


def test_filter_names_every_failed_rule():
    scores = pd.DataFrame({"synthetic_id": list("abcd"), "text_sim": [0.3, 0.1, 0.3, 0.1], "image_sim": [0.9, 0.9, 0.2, 0.2]})
    out = apply_thresholds(scores, text_threshold=0.25, image_threshold=0.5)
    assert out["kept"].tolist() == [True, False, False, False]
    assert out["drop_reason"].tolist() == ["", "text_sim<0.25", "image_sim<0.5", "text_sim<0.25+image_sim<0.5"]


def test_nan_similarity_is_an_error_naming_the_image():
    scores = pd.DataFrame({"synthetic_id": ["ok", "bad"], "text_sim": [0.3, float("nan")], "image_sim": [0.5, 0.5]})
    with pytest.raises(ValueError, match="bad"):
        apply_thresholds(scores, 0.25, 0.0)


def test_tiny_clip_embeds_trains_and_round_trips(tmp_path):
    scorer = create_tiny_clip(tiny_clip_config(16), tmp_path / "clip")
    g = torch.Generator().manual_seed(0)
    # Two visually distinct "classes": dark and bright images.
    images = torch.cat([torch.randint(0, 60, (32, 3, 16, 16), generator=g), torch.randint(190, 256, (32, 3, 16, 16), generator=g)]).to(torch.uint8)
    captions = ["a dark square"] * 32 + ["a bright square"] * 32
    emb = scorer.embed_images(images[:3])
    assert emb.shape == (3, 32) and torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    train_tiny_clip(scorer, images, captions, steps=40, batch_size=32, progress=False)
    pred = (scorer.embed_images(images) @ scorer.embed_texts(["a dark square", "a bright square"]).T).argmax(-1)
    assert (pred == torch.tensor([0] * 32 + [1] * 32)).float().mean() > 0.9
    save_tiny_clip(scorer, tmp_path / "clip")
    loaded = load_tiny_clip(tmp_path / "clip")
    assert torch.allclose(loaded.embed_images(images[:4]), scorer.embed_images(images[:4]), atol=1e-6)
    assert torch.allclose(loaded.embed_texts(["a dark square"]), scorer.embed_texts(["a dark square"]), atol=1e-6)


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 10, 11, 600])
def test_tiny_clip_schedule_runs_for_any_number_of_steps(steps):
    """OneCycleLR divides by its phases' lengths: a short score.train_steps must not crash, and long runs
    keep the 10% warm-up the demo's figures were made with."""
    import torch

    from discl.scoring.tiny_clip import _one_cycle

    def lrs(schedule_for):
        model = torch.nn.Linear(2, 2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        schedule, seen = schedule_for(optimizer), []
        for _ in range(steps):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return seen

    ours = lrs(lambda o: _one_cycle(o, 1e-3, steps))
    assert len(ours) == steps and all(0 < lr <= 1e-3 * (1 + 1e-6) for lr in ours)
    if steps < 3:
        assert ours == [1e-3] * steps  # too short to warm up: a constant rate
    elif 0.1 * steps <= 1:
        assert ours[1] == pytest.approx(1e-3, rel=1e-6)  # one warm-up step, then the peak
    if 0.1 * steps > 1:
        reference = lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-3, total_steps=steps, pct_start=0.1))
        assert ours == reference
