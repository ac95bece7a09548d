import pytest
import torch

from discl.config import MineConfig
from discl.stages.mine import hard_rules


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
