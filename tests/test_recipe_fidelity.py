"""The settings that put the paper's recipes one step from the reference code: fixed-length epochs,
the Balanced Softmax prior of each epoch, synthetic tail rows by class, the real rows a stage drops,
the adaptive curriculum's first baseline and real-row warm-up, the curriculum-validation image and
model selection on the ID validation split."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from discl.config import ClassifierConfig, CurriculumConfig, TrainRuntime, load_config
from discl.curricula import Adaptive, CurriculumValidation, NonAdaptive, Stage, create_curriculum
from discl.rundir import RunDir
from discl.training.checkpoint import load_checkpoint
from discl.training.loop import CHECKPOINT, Trainer, train_with_curriculum
from discl.training.methods import build_method_data, epoch_entries, load_inputs, validation_rows
from discl.training.pool import RowPool
from discl.training.sampling import TailSampling

from .streams import linear_task, make_data

# -- (c) fixed-length epochs


def test_epoch_entries_count_full_batches_of_the_real_rows_as_the_reference():
    assert epoch_entries("pass", 1000, 256) is None
    assert epoch_entries("real", 259_618, 256) == 1014 * 256  # int(259618 / 256) = 1014 steps
    assert epoch_entries("real", 5, 8) == 8  # fewer real rows than a batch: one batch, not an epoch of none
    with pytest.raises(ValueError, match="unknown train.epoch_length 'steps'"):
        epoch_entries("steps", 10, 2)


def _trainer(data, entries, task=None, sampling=None, epochs=2):
    data.epoch_entries = entries
    return Trainer(task or linear_task(), ClassifierConfig(epochs=epochs, batch_size=4), TrainRuntime(num_workers=0),
                   NonAdaptive([10], 1, epochs), data, "m", progress=False, sampling=sampling)


def test_a_fixed_length_epoch_is_whole_passes_over_the_stage_each_reshuffled(tmp_path):
    data = make_data(tmp_path / "images")  # 24 real + 6 synthetic rows at level 10: 30 rows
    stage = Stage(10, 1)
    rows = data.stage_rows(stage)
    plain = _trainer(data, None)._keys(stage, rows).rows
    keys = _trainer(data, 68)._keys(stage, rows).rows
    assert len(keys) == 68
    assert keys[:30].tolist() == plain.tolist()  # the first pass is a plain epoch's order
    for part in (keys[:30], keys[30:60]):
        assert sorted(part.tolist()) == sorted(rows.positions.tolist())  # every row once per pass
    assert keys[30:60].tolist() != keys[:30].tolist()  # reshuffled
    assert len(set(keys[60:].tolist())) == 8  # the last, partial pass: no row twice
    assert np.array_equal(_trainer(data, 68)._keys(stage, rows).rows, keys)  # a function of (seed, epoch) alone


def test_fixed_length_epochs_train_the_same_steps_in_every_stage_and_resume_inside_one(tmp_path):
    def run(out, stop=None):
        data = make_data(tmp_path / "images")
        data.epoch_entries = 28  # 7 steps of 4, whatever the stage holds (24 or 30 rows)
        task = linear_task()
        log = train_with_curriculum(task, ClassifierConfig(epochs=3, batch_size=4, lr=1e-2),
                                    TrainRuntime(num_workers=0, checkpoint_every_steps=1), NonAdaptive([10, 100], 2, 3),
                                    data, "m", progress=False, out_dir=out, settings={"k": 1}, stop_after_steps=stop)
        return log, task.module

    log, straight = run(tmp_path / "a")
    assert [r["n_seen"] for r in log] == [28, 28, 28] and [r["n_synthetic"] for r in log] == [6, 0, 0]
    part, _ = run(tmp_path / "b", stop=9)
    assert len(part) == 1 and load_checkpoint(tmp_path / "b" / CHECKPOINT)[1]["run"]["batch"] == 2
    resumed_log, resumed = run(tmp_path / "b")
    assert [r["train_loss"] for r in resumed_log] == [r["train_loss"] for r in log]
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


# -- (d) Balanced Softmax prior of each epoch


def test_the_epoch_prior_is_the_class_frequency_of_the_rows_each_epoch_trains_on(tmp_path):
    data = make_data(tmp_path / "images")  # labels i % 3; rows 18-29 are the tail rows of a level-10 stage
    task = linear_task(loss="bs")
    task.bs_prior = "epoch"
    seen: list[list[int]] = [[]]
    priors = []
    loss = task.loss

    def recording(x, y, v=None):
        seen[-1] += y.tolist()
        return loss(x, y, v)

    task.loss = recording
    trainer = _trainer(data, None, task=task, sampling=TailSampling(0.5, 0.4, "replacement"), epochs=2)
    original_epoch = trainer._epoch

    def epoch(*args):
        done = original_epoch(*args)
        priors.append(task.prior_log.exp().cpu().numpy())
        seen.append([])
        return done

    trainer._epoch = epoch
    trainer.run()
    for labels, prior in zip(seen[:2], priors):
        counts = np.bincount(labels, minlength=3)
        np.testing.assert_allclose(prior, counts / counts.sum(), rtol=1e-6)
    real = np.bincount(data.rows.labels[:24], minlength=3)
    assert not np.allclose(priors[0], real / real.sum())  # tail sampling changed the distribution


def test_the_epoch_prior_counts_a_class_absent_from_the_epoch_as_one_row():
    task = linear_task(loss="bs")
    task.bs_prior = "epoch"
    task.set_epoch_counts(torch.tensor([6, 0, 2]))
    np.testing.assert_allclose(task.prior_log.exp().numpy(), [6 / 9, 1 / 9, 2 / 9], rtol=1e-6)
    ce = linear_task(loss="ce")
    ce.set_epoch_counts(torch.tensor([6, 0, 2]))
    assert ce.prior_log is None


# -- (e) synthetic tail rows by class; (f) the real rows a stage drops; (g) the warm-up's real rows


def _pool(tmp_path, synthetic_tail="all", hard_real=None, seed=0):
    real = pd.DataFrame({"path": [f"r{i}.png" for i in range(8)], "label": [0, 0, 0, 0, 1, 1, 2, 2]})
    synthetic = pd.DataFrame({"path": [f"s{i}.png" for i in range(4)], "label": [0, 0, 2, 2],
                              "image_guidance": [10, 10, 10, 10]})
    val = pd.DataFrame({"path": ["v.png"], "label": [0]})
    return RowPool(RunDir(tmp_path), real, synthetic, val, {2}, hard_real=hard_real, synthetic_tail=synthetic_tail, seed=seed)


def test_synthetic_rows_of_classes_outside_the_few_bucket_are_non_tail_rows(tmp_path):
    stage = Stage(10, 1)
    assert _pool(tmp_path)(stage).tail.tolist() == [False] * 6 + [True] * 2 + [True] * 4
    few = _pool(tmp_path, "few")(stage)
    assert few.tail.tolist() == [False] * 6 + [True] * 2 + [False, False, True, True]
    # the reference rule keeps non_tail_ratio of the non-tail rows, the class-0 synthetic rows among them
    order = TailSampling(0.5, 0.2).order(few.tail, np.random.default_rng(0), np.arange(12) < 8, in_curriculum=True)
    assert (~few.tail[order]).sum() == 4 and set(order.tolist()) >= {6, 7}
    with pytest.raises(ValueError, match="unknown synthetic_tail 'tail'"):
        _pool(tmp_path, "tail")


def test_stage_real_unreplaced_drops_only_the_hard_sources_that_kept_a_synthetic_image(run_copy, monkeypatch):
    run, _ = run_copy
    import discl.training.methods as methods

    kept = methods.kept_synthetic(run)
    lost = sorted(set(kept["source_id"]))[0]  # a hard sample whose every synthetic image was filtered out
    monkeypatch.setattr(methods, "kept_synthetic", lambda r: kept[kept["source_id"] != lost])
    sizes = {}
    for mode in ("non-hard", "unreplaced"):
        cfg = load_config(run.root, None, [f"train.curriculum.stage_real={mode}"])
        inputs = load_inputs(run, cfg, ["non-adaptive"], echo=lambda *_: None)
        pool, _, _ = build_method_data(run, cfg, "non-adaptive", inputs)
        sizes[mode] = (pool(Stage(level=0, epochs=1)).n_real, pool(Stage(level=100, epochs=1)).n_real)
        if mode == "unreplaced":
            assert inputs.hard_ids == set(kept["source_id"]) - {lost}
    n_real = len(load_inputs(run, load_config(run.root, None, []), ["real-only"], echo=lambda *_: None).train_rows)
    n_lost = 1  # the lost source's one real image stays in the stage with "unreplaced"
    assert sizes["unreplaced"] == (sizes["non-hard"][0] + n_lost, n_real) and sizes["non-hard"][1] == n_real


def test_a_warm_up_stage_of_real_rows_draws_them_once_at_random(tmp_path):
    pool = _pool(tmp_path, seed=3)
    rows = pool(Stage(None, 1, real_sample=5))
    assert (rows.n_real, rows.n_synthetic) == (5, 0) and len(set(rows.positions.tolist())) == 5
    assert set(rows.positions.tolist()) <= set(range(8))
    assert np.array_equal(_pool(tmp_path, seed=3)(Stage(None, 1, real_sample=5)).positions, rows.positions)
    assert pool(Stage(None, 1, real_sample=30000)).positions.tolist() == list(range(8))  # fewer rows: all of them
    stage = Stage(None, 1, real_sample=30000)
    assert Stage.from_json(stage.to_json()) == stage and stage.describe() == "real:30000"
    assert "real_sample" not in Stage(10, 1).to_json()  # checkpoints of other stages are written as before


# -- (b) the first adaptive choice; (g) the warm-up


def _p(values):
    def evaluate(positions, strengths=None, draw_seed=0):
        p = np.asarray(values, dtype=np.float64)[positions]
        return SimpleNamespace(p_true=p, pred=np.zeros(len(p), dtype=np.int64), decoded=np.ones(len(p), dtype=bool))
    return evaluate


def _never(*_):
    raise AssertionError("evaluated")


def test_a_zero_progress_start_makes_the_first_choice_on_p_true_itself():
    val = CurriculumValidation(np.arange(4), np.zeros(4), [50, 50, 90, 90])
    measured = Adaptive([50, 90], 3, 4, val)
    zero = create_curriculum("adaptive", 4, [50, 90], 3, CurriculumConfig(progress_start="zero"), validation=val)
    assert zero.progress_start == "zero"
    measured.observe(_p([0.1, 0.1, 0.6, 0.6]))
    assert zero.observe(_never) == []  # nothing to measure before training
    after = _p([0.4, 0.4, 0.7, 0.7])  # 50 gained most (+0.3), 90 is the more likely (0.7)
    measured.observe(after)
    zero.observe(after)
    assert measured.choice == 50 and zero.choice == 90
    assert zero.next_stage([Stage(50, 1)]) == Stage(90, 1)
    with pytest.raises(ValueError, match="progress_start"):
        Adaptive([50, 90], 3, 4, val, progress_start="none")


def test_the_real_row_warm_up_stage_and_its_measured_baseline():
    val = CurriculumValidation(np.arange(4), np.zeros(4), [50, 50, 90, 90])
    cur = create_curriculum("adaptive-warmup", 4, [50, 90], 3,
                            CurriculumConfig(warmup_data="real", warmup_rows=7, progress_start="zero"), validation=val)
    assert cur.next_stage([]) == Stage(None, 1, real_sample=7)
    cur.observe(_p([0.1, 0.1, 0.6, 0.6]))  # a warm-up measures its baseline, as the reference's uniform set does
    cur.observe(_p([0.4, 0.4, 0.7, 0.7]))
    assert cur.choice == 50
    levels = create_curriculum("adaptive-warmup", 4, [50, 90], 3, CurriculumConfig(), validation=val)
    assert levels.next_stage([]) == Stage(None, 1, levels=(50, 90))


# -- (h) the curriculum-validation image; model selection on id_val


def _spectrum(n_sources=20):
    rows = [(f"src{s}", lv, seed) for s in range(n_sources) for lv in (50, 90) for seed in (10, 20, 30, 40)]
    return pd.DataFrame({"path": [f"{s}_{lv}_{seed}.png" for s, lv, seed in rows], "label": 0,
                         "image_guidance": [lv for _, lv, _ in rows], "source_id": [s for s, _, _ in rows],
                         "seed": [seed for _, _, seed in rows]})


def test_the_curriculum_validation_image_is_drawn_at_random_or_is_the_lowest_seed():
    synthetic = _spectrum()
    train = pd.DataFrame({"sample_id": [], "path": [], "label": []})
    sources = sorted(set(synthetic["source_id"]))
    lowest = validation_rows(synthetic, train, [50, 90], sources)
    assert len(lowest) == 40 and all(p.endswith("_10.png") for p in lowest["path"])
    drawn = validation_rows(synthetic, train, [50, 90], sources, "random", seed=0)
    assert len(drawn) == 40 and drawn[["source_id", "image_guidance"]].drop_duplicates().shape[0] == 40
    assert drawn.equals(validation_rows(synthetic.sample(frac=1, random_state=1), train, [50, 90], sources, "random", seed=0))
    chosen_seeds = {p.rsplit("_", 1)[1] for p in drawn["path"]}
    assert len(chosen_seeds) > 1  # not always the lowest seed
    assert not drawn["path"].equals(validation_rows(synthetic, train, [50, 90], sources, "random", seed=1)["path"])
    with pytest.raises(ValueError, match="unknown curriculum-validation pick 'first'"):
        validation_rows(synthetic, train, [50, 90], sources, "first")


def test_select_best_id_val_chooses_on_the_id_val_split(run_copy, monkeypatch):
    run, _ = run_copy
    cfg = load_config(run.root, None, ["train.select=best-id-val"])
    with pytest.raises(ValueError, match="train.select = best-id-val needs the id_val split, and this dataset has none"):
        load_inputs(run, cfg, ["real-only"], echo=lambda *_: None)
    import discl.training.methods as methods

    tables = methods.load_dataset_tables

    def with_id_val(r):
        dataset, classes = tables(r)
        test = dataset.index[dataset["split"] == "test"][:5]
        return dataset.assign(split=dataset["split"].where(~dataset.index.isin(test), "id_val")), classes

    monkeypatch.setattr(methods, "load_dataset_tables", with_id_val)
    inputs = load_inputs(run, cfg, ["real-only"], echo=lambda *_: None)
    assert len(inputs.test_rows) == 5 and set(inputs.test_rows["split"]) == {"id_val"}
    pool, _, _ = build_method_data(run, cfg, "real-only", inputs)
    assert len(pool.test) == 5


def test_reference_names_say_bird_and_bat_in_prompts_and_filter_captions_by_class_id():
    from discl.generation.plan import plan_spectrum
    from discl.prompts import PromptBank, prompt_names
    from discl.scoring.run_scorer import captions_for

    classes = pd.DataFrame({"label": [0, 82, 83, 178], "class_id": ["acinonyx jubatus", "unknown bird", "unknown bat", "ave desconocida"],
                            "class_name": ["cheetah", "unknown bird", "unknown bat", "unknown bird"]})
    assert prompt_names(classes, "iwildcam", "class") == {} and prompt_names(classes, "imagenet-lt", "reference") == {}
    names = prompt_names(classes, "iwildcam", "reference")
    assert names == {82: "bird", 83: "bat"}  # "ave desconocida", also "unknown bird", keeps its name as the reference does
    captions = captions_for(classes, "a photo of {name} in the wild", names)
    assert captions == {0: "a photo of cheetah in the wild", 82: "a photo of bird in the wild",
                        83: "a photo of bat in the wild", 178: "a photo of unknown bird in the wild"}
    hard = pd.DataFrame({"sample_id": ["a", "b"], "label": [82, 178], "class_name": ["unknown bird", "unknown bird"],
                         "path": ["a.jpg", "b.jpg"]})
    plan = plan_spectrum(hard, [0.5], [10], 10.0, PromptBank("a photo of {name} in the wild", names=names), "gen")
    assert plan["prompt"].tolist() == ["a photo of bird in the wild", "a photo of unknown bird in the wild"]
    assert plan["class_name"].tolist() == ["unknown bird", "unknown bird"]  # the tables keep the class names
    with pytest.raises(ValueError, match="unknown prompts.names 'latin'"):
        prompt_names(classes, "iwildcam", "latin")
