"""Adaptive, per-class, baseline and CUDA curricula: decisions, options and state."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from discl.config import CurriculumConfig
from discl.curricula import (
    Adaptive,
    AllSynthetic,
    CudaCurriculum,
    CurriculumValidation,
    FixedLevel,
    NonAdaptive,
    PerClassAdaptive,
    RandomLevel,
    Stage,
    augment_image,
    best_level,
    create_curriculum,
    iqr_mean,
    level_scores,
)


def _unroll(curriculum):
    history = []
    while (stage := curriculum.next_stage(history)) is not None:
        history.append(stage)
    return history


def test_iqr_mean_drops_outliers_beyond_one_and_a_half_iqr():
    values = np.array([0.1, 0.2, 0.2, 0.3, 0.25, 5.0])  # quartiles 0.2 / 0.2875 -> 5.0 is far out
    mean, dropped = iqr_mean(values)
    assert dropped == 1 and mean == pytest.approx(np.mean([0.1, 0.2, 0.2, 0.3, 0.25]))
    assert iqr_mean(np.array([1.0, 1.0, 1.0])) == (1.0, 0)
    assert np.isnan(iqr_mean(np.array([]))[0])


def test_level_scores_and_choice():
    progress = np.array([0.1, 0.3, -0.2, -0.1, 0.0, 0.05])
    levels = np.array([10, 10, 50, 50, 100, 100])
    scores = level_scores(progress, levels, [10, 50, 100])
    assert scores[10][0] == pytest.approx(0.2) and scores[50][0] == pytest.approx(-0.15) and scores[100][1] == 2
    assert best_level({lv: s for lv, (s, _, _) in scores.items()}) == 10
    assert best_level({10: 0.5, 50: 0.5}) == 10  # ties go to the more synthetic level
    assert best_level({10: float("nan"), 50: -1.0}) == 50


class _FakeModel:
    """An evaluate(positions) whose p_true per position comes from a table (every image has label 0)."""

    def __init__(self, n_classes):
        self.n = n_classes
        self.p = None

    def __call__(self, positions, strengths=None, draw_seed=0):
        p = np.asarray(self.p, dtype=np.float64)[positions]
        return SimpleNamespace(p_true=p, pred=np.where(p >= 0.5, 0, 1), decoded=np.ones(len(p), dtype=bool))


def _validation(levels_per_image, labels=None):
    n = len(levels_per_image)
    labels = np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels)
    return CurriculumValidation(np.arange(n), labels, levels_per_image)


def test_adaptive_picks_the_level_with_the_most_progress_and_ends_on_real_data():
    val = _validation([10, 10, 50, 50, 100, 100])
    model = _FakeModel(2)
    cur = Adaptive([10, 50, 100], curriculum_epochs=3, total_epochs=5, validation=val)
    history = []
    model.p = [0.2] * 6
    cur.observe(model)  # before training: baseline only, no scores yet
    stage = cur.next_stage(history)
    assert stage == Stage(10, 1)  # starts at the lowest level
    history.append(stage)
    model.p = [0.25, 0.25, 0.6, 0.5, 0.3, 0.3]  # level 50 gains most
    rows = cur.observe(model)
    assert {r["level"]: r["chosen"] for r in rows} == {10: False, 50: True, 100: False}
    assert cur.next_stage(history) == Stage(50, 1)
    history.append(Stage(50, 1))
    model.p = [0.25, 0.25, 0.6, 0.5, 0.9, 0.9]  # now level 100
    cur.observe(model)
    history.append(cur.next_stage(history))
    assert history[-1] == Stage(100, 1)
    assert cur.next_stage(history) == Stage(None, 2)  # curriculum period over
    history.append(Stage(None, 2))
    assert cur.next_stage(history) is None


def test_adaptive_options_warmup_min_level_smoothing_and_state():
    val = _validation([10, 50, 90, 90])
    with pytest.raises(ValueError, match="no level"):
        Adaptive([10, 50], 2, 3, val, min_level=60)
    cur = Adaptive([10, 50, 90], 4, 4, val, warmup=True, min_level=50, smoothing=0.5)
    assert cur.candidates == [50, 90]
    assert cur.next_stage([]) == Stage(None, 1, levels=(50, 90))  # uniform mix of the candidate levels
    model = _FakeModel(2)
    model.p = [0.0, 0.0, 0.0, 0.0]
    cur.observe(model)
    model.p = [0.0, 0.5, 0.1, 0.1]  # 50: +0.5, 90: +0.1
    cur.observe(model)
    assert cur.choice == 50 and cur.smoothed == {"50": 0.5, "90": 0.1}
    model.p = [0.0, 0.5, 0.5, 0.5]  # 50: 0, 90: +0.4 -> smoothed 0.25 vs 0.25 -> tie -> 50
    cur.observe(model)
    assert cur.smoothed["50"] == pytest.approx(0.25) and cur.smoothed["90"] == pytest.approx(0.25)
    assert cur.choice == 50
    clone = Adaptive([10, 50, 90], 4, 4, val, warmup=True, min_level=50, smoothing=0.5)
    clone.load_state_dict(cur.state_dict())
    assert clone.next_stage([Stage(None, 1)]) == cur.next_stage([Stage(None, 1)]) == Stage(50, 1)
    with pytest.raises(ValueError, match="no image at levels"):
        Adaptive([10, 30], 2, 3, val)


def test_per_class_adaptive_lets_each_class_choose():
    # class 0 gains at level 10, class 1 at level 50; class 2 has no validation image
    val = _validation([10, 50, 10, 50], labels=[0, 0, 1, 1])

    def predict(positions, strengths=None, draw_seed=0):
        p = np.asarray(state["p"], dtype=np.float64)[positions]
        return SimpleNamespace(p_true=p, pred=val.labels[positions], decoded=np.ones(len(p), dtype=bool))

    state = {"p": [0.1, 0.1, 0.1, 0.1]}
    cur = PerClassAdaptive([10, 50], 2, 2, val, num_classes=3)
    cur.observe(predict)
    assert cur.next_stage([]) == Stage(None, 1, class_levels=((0, 10), (1, 10), (2, 10)))
    state["p"] = [0.5, 0.2, 0.1, 0.9]
    cur.observe(predict)
    stage = cur.next_stage([Stage(None, 1)])
    assert dict(stage.class_levels) == {0: 10, 1: 50, 2: 50}  # overall: 10 gains 0.2, 50 gains 0.45
    assert stage.synthetic_levels() == (10, 50)


def test_baselines():
    assert _unroll(AllSynthetic([50, 10], 3, 4)) == [Stage(None, 3, levels=(10, 50)), Stage(None, 1)]
    assert _unroll(FixedLevel(30, 4, 4)) == [Stage(30, 4)]
    assert [s.level for s in _unroll(NonAdaptive([10, 50, 100], 3, 4, reverse=True))] == [100, 50, 10, None]
    assert [s.epochs for s in _unroll(NonAdaptive([10, 50], 5, 6, stage_epochs=[1, 4]))] == [1, 4, 1]
    with pytest.raises(ValueError, match="sum to curriculum_epochs"):
        NonAdaptive([10, 50], 5, 6, stage_epochs=[1, 3])
    a, b, c = (_unroll(RandomLevel([10, 30, 50, 100], 20, 21, seed=s)) for s in (0, 0, 1))
    assert a == b and a != c  # seeded
    assert len(a) == 21 and set(s.level for s in a[:-1]) <= {10, 30, 50, 100} and a[-1] == Stage(None, 1)
    assert len({s.level for s in a[:-1]}) > 1


def test_factory_knows_every_name():
    o = CurriculumConfig(fixed_level=30)
    assert create_curriculum("fixed", 4, [10], 2, o).plan()[0] == Stage(30, 2)
    assert create_curriculum("fixed-70", 4, [10], 2).plan()[0] == Stage(70, 2)
    assert create_curriculum("reverse", 4, [10, 50], 2).plan()[0] == Stage(50, 1)
    val = _validation([10, 50])
    assert create_curriculum("adaptive-warmup", 4, [10, 50], 2, validation=val).next_stage([]).levels == (10, 50)
    with pytest.raises(ValueError, match="needs a curriculum validation set"):
        create_curriculum("adaptive", 4, [10, 50], 2)
    with pytest.raises(ValueError, match="expected fixed-<level 0..100>"):
        create_curriculum("fixed-x", 4, [10], 2)


def test_cuda_strength_rises_when_learnt_and_falls_otherwise():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    cur = CudaCurriculum(3, np.arange(10, 18), labels, num_classes=2, threshold=0.6, max_strength=4, probe_per_class=3)
    asked = []

    def always_zero(positions, strengths=None, draw_seed=0):  # class 0 always right, class 1 always wrong
        asked.append((list(positions), list(strengths), draw_seed))
        return SimpleNamespace(pred=np.zeros(len(positions), dtype=np.int64), p_true=np.zeros(len(positions)),
                               decoded=np.ones(len(positions), dtype=bool))

    for expected in ([1, 0], [2, 0], [3, 0], [4, 0], [4, 0]):
        cur.observe(always_zero)
        assert cur.strength == expected
    assert asked[0][0] == [10, 11, 12, 14, 15, 16]  # the first probe_per_class rows of each class
    assert asked[1][1] == [1, 1, 1, 0, 0, 0]  # probed at each class's current strength
    assert asked[0][2] != asked[1][2]  # a new augmentation draw at each evaluation
    assert cur.next_stage([]) == Stage(None, 1, augment=((0, 4), (1, 0)))
    assert cur.next_stage([Stage(None, 1)] * 3) is None
    images = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    assert torch.equal(augment_image(images[0], 0, 4, g), images[0])
    out = cur.augment(images[0], 4, g)
    assert out.shape == images[0].shape and out.dtype == torch.uint8 and not torch.equal(out, images[0])
