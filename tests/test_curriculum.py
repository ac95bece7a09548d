import pytest

from discl.curricula import NonAdaptive, RealOnly, Stage, create_curriculum, split_epochs


def _unroll(curriculum):
    history = []
    while (stage := curriculum.next_stage(history)) is not None:
        history.append(stage)
    return history


@pytest.mark.parametrize("total, parts", [(60, 4), (61, 4), (63, 4), (3, 3), (10, 1), (7, 5)])
def test_split_is_even_with_remainder_first(total, parts):
    lengths = split_epochs(total, parts)
    assert sum(lengths) == total and len(lengths) == parts
    assert max(lengths) - min(lengths) <= 1
    assert lengths == sorted(lengths, reverse=True)


def test_non_adaptive_goes_synthetic_to_real_then_real_only():
    stages = _unroll(NonAdaptive([100, 10, 50, 30], curriculum_epochs=60, total_epochs=65))
    assert [s.level for s in stages] == [10, 30, 50, 100, None]
    assert [s.epochs for s in stages] == [15, 15, 15, 15, 5]
    stages = _unroll(NonAdaptive([10, 30, 50, 100], curriculum_epochs=62, total_epochs=62))
    assert [s.epochs for s in stages] == [16, 16, 15, 15]


def test_real_only_is_one_stage():
    assert _unroll(RealOnly(12)) == [Stage(None, 12)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(levels=[10, 120], curriculum_epochs=4, total_epochs=5), "must lie in"),
        (dict(levels=[10, 50], curriculum_epochs=6, total_epochs=5), "curriculum_epochs"),
        (dict(levels=[10, 30, 50], curriculum_epochs=2, total_epochs=5), "cannot cover"),
    ],
)
def test_bad_schedules_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NonAdaptive(**kwargs)


def test_factory_names():
    assert create_curriculum("real-only", 5, [10], 0).name == "real-only"
    assert create_curriculum("non-adaptive", 5, [10, 100], 4).name == "non-adaptive"
    with pytest.raises(ValueError, match="unknown curriculum 'adaptiv'"):
        create_curriculum("adaptiv", 5, [10], 4)
