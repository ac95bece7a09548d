"""Mining rules, out-of-fold predictions, base models from timm + local weights, reference CSV import."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from discl.config import MineConfig
from discl.data.reference_csv import ReferenceCsvError, match_to_dataset, read_reference_csv
from discl.mining import few_shot_mask, fold_ids, hard_rules, hardest_per_class, load_timm_judge, read_state_dict
from discl.model_cache import rows_digest
from discl.stages.mine import run_mine


def test_rules_fire_independently_and_are_all_named():
    p_true = torch.tensor([0.9, 0.2, 0.9, 0.1])
    pred = torch.tensor([0, 1, 1, 0])
    labels = torch.tensor([0, 0, 1, 1])
    few = torch.tensor([False, False, True, True])
    cfg = MineConfig(rules=["few_shot", "low_true_prob", "misclassified"], prob_threshold=0.5)
    assert hard_rules(p_true, pred, labels, few, cfg) == ["", "low_true_prob+misclassified", "few_shot", "few_shot+low_true_prob+misclassified"]
    assert hard_rules(p_true, pred, labels, few, MineConfig(rules=["few_shot"])) == ["", "", "few_shot", "few_shot"]


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match=r"MineConfig.rules\[0\] = 'hardest': must be 'few_shot'"):
        hard_rules(torch.ones(1), torch.zeros(1), torch.zeros(1), torch.zeros(1, dtype=torch.bool), MineConfig(rules=["hardest"]))


def test_hardest_k_per_class():
    p_true = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.2, 0.2, 0.8])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    assert hardest_per_class(p_true, labels, 2).tolist() == [False, True, True, False, True, True, False]
    assert hardest_per_class(p_true, labels, 10).all()  # k above a class's size takes the whole class
    cfg = MineConfig(rules=["hardest_k", "misclassified"], hardest_k=1)
    pred = torch.tensor([0, 1, 0, 1, 1, 0, 1])
    assert hard_rules(p_true, pred, labels, torch.zeros(7, dtype=torch.bool), cfg) == [
        "", "hardest_k+misclassified", "", "", "hardest_k", "misclassified", ""]


def test_few_shot_by_count_or_by_bucket():
    labels = np.array([0, 1, 2, 2])
    counts = {0: 500, 1: 19, 2: 20}
    buckets = {0: "many", 1: "few", 2: "medium"}
    assert few_shot_mask(labels, counts, buckets, 20).tolist() == [False, True, False, False]
    assert few_shot_mask(labels, counts, buckets, None).tolist() == [False, True, False, False]
    assert few_shot_mask(labels, counts, {0: "few", 1: "many", 2: "many"}, None).tolist() == [True, False, False, False]


def test_folds_are_stratified_deterministic_and_cover_everything():
    labels = np.repeat(np.arange(3), [10, 6, 2])
    a, b = fold_ids(labels, 2, seed=0), fold_ids(labels, 2, seed=0)
    assert np.array_equal(a, b) and set(a) == {0, 1}
    for c in range(3):
        per_fold = np.bincount(a[labels == c], minlength=2)
        assert abs(per_fold[0] - per_fold[1]) <= 1
    with pytest.raises(ValueError, match="folds >= 2"):
        fold_ids(labels, 1, seed=0)


class NotATensor:
    pass


def test_state_dicts_load_safely(tmp_path):
    from safetensors.torch import save_file

    state = {"w": torch.arange(4.0)}
    save_file(state, str(tmp_path / "a.safetensors"))
    torch.save({"state_dict": {"module.w": torch.arange(4.0)}}, tmp_path / "b.pt")
    assert torch.equal(read_state_dict(tmp_path / "a.safetensors")["w"], state["w"])
    assert torch.equal(read_state_dict(tmp_path / "b.pt")["w"], state["w"])
    torch.save({"w": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt.*weights_only=True"):
        read_state_dict(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_state_dict(tmp_path / "missing.pt")


def test_timm_judge_from_local_weights(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=3).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    judge = load_timm_judge("resnet10t", tmp_path / "base.safetensors", 3, image_size=32, fallback_size=16)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model((images / 255.0 - mean) / std).softmax(-1)
    assert torch.allclose(judge.predict_proba(images), expected, atol=1e-5)
    with pytest.raises(ValueError, match="base.safetensors does not fit timm model 'resnet10t' with 5 classes"):
        load_timm_judge("resnet10t", tmp_path / "base.safetensors", 5, 32, 16)


def test_out_of_fold_mining_judges_each_image_by_a_model_that_did_not_see_it(run_copy):
    run, cfg = run_copy
    cfg.mine.folds = 2
    cfg.mine.rules = ["low_true_prob"]
    cfg.mine.base.epochs = 1
    hard = run_mine(run, cfg, echo=lambda *_: None, progress=False)
    dataset = pd.read_parquet(run.dataset)
    train = dataset[dataset["split"] == "train"].reset_index(drop=True)
    folds = fold_ids(train["label"].to_numpy(), 2, cfg.mine.base.seed)
    for k in range(2):
        trained_on = json.loads((run.models / f"base-fold{k}" / "trained_with.json").read_text())["data"]
        assert trained_on == rows_digest(train.loc[folds != k], ["sample_id", "label"])  # the other folds' rows
    assert (hard["p_true"] < cfg.mine.prob_threshold).all() and (hard["reason"] == "low_true_prob").all()


def test_base_weights_cannot_be_combined_with_folds(run_copy):
    run, cfg = run_copy
    cfg.mine.base_weights, cfg.mine.folds = str(run.models / "base" / "model.safetensors"), 2
    with pytest.raises(ValueError, match="cannot be combined with mine.base_weights"):
        run_mine(run, cfg, echo=lambda *_: None, progress=False)


def _train_rows(run):
    dataset = pd.read_parquet(run.dataset)
    return dataset[dataset["split"] == "train"].reset_index(drop=True)


def test_imagenet_lt_and_iwildcam_csvs_import(run_copy, tmp_path):
    run, cfg = run_copy
    train = _train_rows(run)
    pick = train.groupby("label").head(1).head(3)
    rel = [str(run.resolve(p).relative_to(run.root)) for p in pick["path"]]
    (tmp_path / "inet.csv").write_text("filepath,image_name,label,classname\n" + "".join(
        f"{r},{r.split('/')[-1]},{lab},{name}\n" for r, lab, name in zip(rel, pick["label"], pick["class_name"])))
    # iWildCam-style: a shorter path (matched as the tail of the dataset's path) and the file name.
    (tmp_path / "wild.csv").write_text("label id,label name,filepath,img_name\n" + "".join(
        f"{lab},{name},{'/'.join(r.split('/')[-2:])},{r.split('/')[-1]}\n" for r, lab, name in zip(rel, pick["label"], pick["class_name"])))
    for name, fmt in (("inet.csv", "imagenet-lt"), ("wild.csv", "iwildcam")):
        rows, found = read_reference_csv(tmp_path / name)
        assert found == fmt
        matched = match_to_dataset(rows, train, tmp_path / name, run.root, run.resolve)
        assert matched["sample_id"].tolist() == pick["sample_id"].tolist()
    cfg.mine.hard_csv, cfg.mine.hard_csv_root = str(tmp_path / "inet.csv"), str(run.root)
    hard = run_mine(run, cfg, echo=lambda *_: None, progress=False)
    assert sorted(hard["sample_id"]) == sorted(pick["sample_id"]) and (hard["reason"] == "csv").all()
    assert pd.read_parquet(run.hard)["sample_id"].tolist() == hard["sample_id"].tolist()


def test_bad_csvs_name_the_file_line_and_value(run_copy, tmp_path):
    run, _ = run_copy
    train = _train_rows(run)
    row = train.iloc[0]
    rel = str(run.resolve(row.path).relative_to(run.root))
    other_row = train[train["class_name"] != row.class_name].iloc[0]
    other, other_label = other_row.class_name, int(other_row.label)
    cases = {
        "cols.csv": ("path,label\nx,1\n", "columns \\['path', 'label'\\] match no known format"),
        "empty.csv": ("filepath,image_name,label,classname\n", "empty hard set"),
        "unknown.csv": (f"filepath,image_name,label,classname\n{rel},x.png,0,{row.class_name}\nq.png,q.png,0,zebra\n",
                        "unknown.csv line 3: unknown class name 'zebra'"),
        "nofile.csv": (f"filepath,image_name,label,classname\nnowhere/none.png,none.png,0,{row.class_name}\n",
                       "nofile.csv line 2: no training image matches filepath 'nowhere/none.png'"),
        "wrongclass.csv": (f"filepath,image_name,label,classname\n{rel},x,{other_label},{other}\n",
                           f"wrongclass.csv line 2: '{rel}' is class '{row.class_name}' in the dataset but '{other}' in the CSV"),
        "wronglabel.csv": (f"filepath,image_name,label,classname\n{rel},x,{other_label},\n",
                           f"is class '{row.class_name}' in the dataset but 'label {other_label}' in the CSV"),
        "disagree.csv": (f"filepath,image_name,label,classname\n{rel},x,{row.label},{other.upper()}\n",
                         f"disagree.csv line 2: label {row.label} is class '{row.class_name}' in the dataset, but the CSV names it '{other.upper()}'"),
        "nolabel.csv": (f"filepath,image_name,label,classname\n{rel},x,99,{row.class_name}\n", "nolabel.csv line 2: unknown label id 99"),
        "badlabel.csv": (f"filepath,image_name,label,classname\n{rel},x,three,{row.class_name}\n", "label 'three' is not a label id"),
        "noclass.csv": (f"filepath,image_name,label,classname\n{rel},x,,\n", "neither a label id nor a class name"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ReferenceCsvError, match=message):
            rows, _ = read_reference_csv(tmp_path / name)
            match_to_dataset(rows, train, tmp_path / name, run.root, run.resolve)
