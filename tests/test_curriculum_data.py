"""discl.CurriculumData: the docs' plain-PyTorch loop visits the stages `discl train` visits, every epoch has
the rows (and transform seeds) discl's own loader read, the ranks' batches split each global batch, and an
adaptive curriculum chooses its next stage from the predictions handed back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import discl
from discl.training.dataset import TRAIN
from discl.training.stream import ImageStream

from .curriculum_helpers import favouring, truncate

ROOT = Path(__file__).resolve().parents[1]


def _doc_example(run_root: Path, method: str = "non-adaptive") -> str:
    doc = (ROOT / "docs" / "training-loops.md").read_text()
    block = re.search(r"<!-- example:own-loop -->\n```python\n(.*?)```\n<!-- /example -->", doc, re.S)
    assert block, "docs/training-loops.md lost its example"
    code, n = re.subn(r'RUN, METHOD = "runs/demo", "non-adaptive"', f"RUN, METHOD = {str(run_root)!r}, {method!r}", block.group(1))
    assert n == 1
    return code


def test_the_docs_loop_visits_the_stages_discl_train_visits(run_copy, capsys):
    run, _ = run_copy
    trained = pd.read_parquet(run.method_dir("non-adaptive") / "log.parquet")  # `discl train` on this run
    namespace: dict = {}
    exec(compile(_doc_example(run.root), "training-loops.md", "exec"), namespace)
    history = pd.DataFrame(namespace["history"])
    assert history["epoch"].tolist() == trained["epoch"].tolist()
    assert history["level"].tolist() == trained["level"].tolist()
    assert len(set(trained["level"])) >= 3  # synthetic stages and real data: the check sees the curriculum
    assert history["images"].tolist() == (trained["n_real"] + trained["n_synthetic"]).tolist()
    assert "epoch 3: stage real" in capsys.readouterr().out


def test_the_docs_loop_runs_an_adaptive_curriculum_on_its_predict(run_copy, capsys):
    """The example's predict (logits and labels) leads the adaptive curriculum: a choice at each stage end, and
    each stage after the first trains on the level chosen at the end of the one before."""
    run, _ = run_copy
    namespace: dict = {}
    exec(compile(_doc_example(run.root, "adaptive"), "training-loops.md", "exec"), namespace)
    data, history = namespace["data"], pd.DataFrame(namespace["history"])
    chosen = [r["level"] for r in data.curriculum_log if r["chosen"]]
    assert len(chosen) == len(data.history) == len(history) and data.epoch == data.epochs_total
    assert history["level"].tolist()[1:-1] == chosen[: len(history) - 2] and history["level"].iloc[-1] == -1


def test_each_epoch_has_the_rows_and_seeds_discl_trains_on(run_copy, monkeypatch):
    run, _ = run_copy
    overrides = ["train.methods=[non-adaptive]", "train.curriculum.tail_sampling=all", "train.curriculum.stage_real=non-hard",
                 "train.curriculum.non_tail_ratio=0.5"]
    seen: list = []
    original = ImageStream.batches

    def spy(self, keys, batch_size, start_batch=0):
        if len(keys) and keys.flags[0] & TRAIN:
            seen.append(keys)
        return original(self, keys, batch_size, start_batch)

    monkeypatch.setattr(ImageStream, "batches", spy)
    log = discl.train(run.root, overrides=overrides, echo=lambda *_: None, progress=False)
    data = discl.CurriculumData(run.root, "non-adaptive", overrides=overrides, echo=lambda *_: None)
    assert [s.describe() for s in data.schedule()] == ["0", "50", "100", "real"]
    epochs = list(data.epochs())
    assert len(epochs) == len(seen) == 4
    for epoch, keys, row in zip(epochs, seen, log.itertuples()):
        np.testing.assert_array_equal(epoch.paths, data.plan.pool.rows.paths(keys.rows))  # same files, same order
        np.testing.assert_array_equal(epoch.keys.draws, keys.draws)  # same random-transform seeds
        assert (epoch.level, epoch.n_real, epoch.n_synthetic) == (row.level, row.n_real, row.n_synthetic)
    x, label = epochs[0].dataset[0]
    assert tuple(x.shape) == (3, data.config.data.image_size, data.config.data.image_size) and label == epochs[0].labels[0]


def test_each_rank_reads_its_slice_of_every_global_batch_as_discls_sampler_does(run_copy):
    from discl.training.sampling import RankBatches

    run, _ = run_copy
    data = discl.CurriculumData(run.root, "non-adaptive", echo=lambda *_: None)
    epoch = next(iter(data.epochs()))
    n = len(epoch.dataset)
    batch = n - 1  # the last global batch has one image for 3 ranks
    for rank in range(3):
        sampler = RankBatches(rank, 3)
        sampler.plan(epoch.keys, batch)
        mine = epoch.batches(batch, rank, 3)
        assert [[int(epoch.keys.rows[i]) for i in b] for b in mine] == [[key[0] for key in b] for b in sampler]
    union = sorted({i for rank in range(3) for b in epoch.batches(batch, rank, 3) for i in b})
    assert union == list(range(n))
    with pytest.raises(ValueError, match="rank must lie in"):
        epoch.batches(batch, 3, 3)


def test_an_adaptive_curriculum_chooses_its_stages_from_the_predictions_handed_back(run_copy):
    run, _ = run_copy
    data = discl.CurriculumData(run.root, "adaptive", echo=lambda *_: None)
    validation = data.plan.curriculum.validation
    level_of = dict(zip(validation.positions.tolist(), validation.levels.tolist()))
    assert data.validation_dataset().keys.rows.tolist() == validation.positions.tolist()
    with pytest.raises(ValueError, match="pass predict"):
        next(iter(data.epochs()))
    favoured = iter([None, 50, 0, None, None])  # which level's images the "model" gets right at each look

    def predict(dataset):
        target = next(favoured)
        rows = dataset.keys.rows
        logits = np.zeros((len(rows), data.num_classes))
        for i, row in enumerate(rows):
            if level_of[int(row)] == target:
                logits[i, data.plan.pool.rows.labels[row]] = 10.0
        return logits

    levels = [epoch.level for epoch in data.epochs(predict)]
    assert levels == [0, 50, 0, -1]  # first candidate, then each look's most improved level, then real data
    chosen = [r["level"] for r in data.curriculum_log if r["chosen"]]
    assert chosen[:2] == [50, 0] and len(chosen) == 4  # one choice at each of the 4 stage ends
    state = data.state_dict()
    assert state["epoch"] == 4 and [s["level"] for s in state["history"]] == [0, 50, 0, None]


@pytest.mark.parametrize("stop_after, epoch_done", [(1, True), (2, True), (2, False)])
def test_a_checkpointed_curriculum_resumes_with_the_same_epochs(run_copy, stop_after, epoch_done):
    """state_dict() saved in the loop body after training an epoch (or, epoch_done=False, while training it)
    resumes with the epochs an uninterrupted loop trains, the adaptive curriculum's looks included."""
    run, _ = run_copy
    quiet = {"echo": lambda *_: None}
    looks = [None, 50, 0, None, None]
    whole = discl.CurriculumData(run.root, "adaptive", **quiet)
    expected = [(e.index, e.levels, tuple(e.paths), tuple(e.keys.draws)) for e in whole.epochs(favouring(whole, list(looks)))]
    assert [levels for _, levels, *_ in expected] == ["0", "50", "0", "real"]

    targets = list(looks)
    first = discl.CurriculumData(run.root, "adaptive", **quiet)
    seen = []
    for epoch in first.epochs(favouring(first, targets)):
        seen.append((epoch.index, epoch.levels, tuple(epoch.paths), tuple(epoch.keys.draws)))
        if len(seen) == stop_after:
            state = json.loads(json.dumps(first.state_dict(epoch_done=epoch_done)))  # plain JSON
            break
    if not epoch_done:
        seen.pop()  # trained again after the resume
    resumed = discl.CurriculumData(run.root, "adaptive", **quiet)
    resumed.load_state_dict(state)
    seen += [(e.index, e.levels, tuple(e.paths), tuple(e.keys.draws)) for e in resumed.epochs(favouring(resumed, targets))]
    assert seen == expected
    assert targets == [] and resumed.curriculum_log == whole.curriculum_log


def test_an_unreadable_image_comes_as_zeros_with_the_label_the_loss_ignores(run_copy):
    """A truncated training file: its item is zeros labelled -100, so cross_entropy over the batch equals
    cross_entropy over the readable images alone, and the batch keeps its size (every DDP process steps)."""
    import torch

    from discl.curriculum_data import UNREADABLE

    run, _ = run_copy
    data = discl.CurriculumData(run.root, "non-adaptive", echo=lambda *_: None)
    epoch = next(iter(data.epochs()))
    broken = 3
    path = Path(epoch.paths[broken])
    path = path if path.is_absolute() else run.root / path
    path.write_bytes(path.read_bytes()[:40])
    batch = [epoch.dataset[i] for i in range(7)]
    images, labels = torch.stack([x for x, _ in batch]), torch.tensor([y for _, y in batch])
    assert labels[broken] == UNREADABLE == -100 and not images[broken].any()
    assert (labels[[i for i in range(7) if i != broken]] == torch.as_tensor(epoch.labels[:7][np.arange(7) != broken])).all()
    logits = torch.randn(7, data.num_classes)
    keep = labels != UNREADABLE
    torch.testing.assert_close(torch.nn.functional.cross_entropy(logits, labels),
                               torch.nn.functional.cross_entropy(logits[keep], labels[keep]))


def test_an_unreadable_validation_image_is_left_out_of_the_curriculums_scores(run_copy):
    """predict returning (logits, labels), as the adapters' predict_logits does: the image the dataset could not
    read (label -100) gets p(true) NaN, which every level's progress leaves out, as discl's trainer does; a
    predict returning logits alone counts it as read."""
    import torch

    from discl.integrations.predict import predict_logits

    run, _ = run_copy
    quiet = {"echo": lambda *_: None}
    first = discl.CurriculumData(run.root, "adaptive", **quiet)
    validation, classes = first.validation_dataset(), first.num_classes
    broken = len(validation) // 2
    truncate(run.root, validation.images.rows.paths(validation.keys.rows[broken : broken + 1])[0])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, classes))
    logits, labels = predict_logits(model, validation, batch_size=len(validation) // 2 + 1)  # batches of unequal size
    assert logits.shape == (len(validation), classes) and labels[broken] == -100
    assert np.delete(labels.numpy(), broken).tolist() == np.delete(validation.images.rows.labels[validation.keys.rows], broken).tolist()

    for predict, left_out in [(lambda d: predict_logits(model, d, 4), True), (lambda d: predict_logits(model, d, 4)[0], False)]:
        data = discl.CurriculumData(run.root, "adaptive", **quiet)
        epochs = data.epochs(predict)
        next(epochs), next(epochs)  # the first stage ended: the curriculum looked at the model
        last = np.asarray(data.plan.curriculum.last_p)
        assert bool(np.isnan(last[broken])) is left_out and np.isfinite(np.delete(last, broken)).all()


def test_a_saved_state_is_refused_once_the_kept_images_changed(run_copy):
    """The state records what decides the epochs (settings and input digests, as discl's checkpoints do): after
    the filter keeps another set, loading it fails with one line naming the change, before any epoch."""
    from discl.tables import write_table

    run, _ = run_copy
    data = discl.CurriculumData(run.root, "non-adaptive", echo=lambda *_: None)
    next(iter(data.epochs()))
    state = json.loads(json.dumps(data.state_dict()))
    discl.CurriculumData(run.root, "non-adaptive", echo=lambda *_: None).load_state_dict(state)  # unchanged: accepted

    scores = pd.read_parquet(run.scores)
    scores.loc[scores.index[scores["kept"]][0], "kept"] = False
    write_table(scores, run.scores, "scores")
    with pytest.raises(ValueError, match=r"saved for other inputs or settings than the run's \(changed: the kept synthetic images"):
        discl.CurriculumData(run.root, "non-adaptive", echo=lambda *_: None).load_state_dict(state)
