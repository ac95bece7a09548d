import subprocess
import sys

import pandas as pd

from discl.generation.plan import image_guidance, plan_spectrum, source_folder
from discl.prompts import PromptBank
from discl.seeding import stable_seed


def _hard(ids):
    return pd.DataFrame({"sample_id": ids, "label": list(range(len(ids))), "class_name": [f"c{i}" for i in range(len(ids))]})


def test_plan_is_the_full_grid_with_unique_ids_and_paths():
    strengths = [round(0.1 * i, 1) for i in range(1, 11)]
    plan = plan_spectrum(_hard(["a", "b/c d.png", "é"]), strengths, [10, 20, 30], 10.0, PromptBank("a photo of {name}"), "gen")
    assert len(plan) == 3 * 10 * 3
    assert plan["synthetic_id"].is_unique and plan["path"].is_unique and plan["noise_seed"].is_unique
    assert sorted(plan["image_guidance"].unique()) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert (plan["image_guidance"] == 100 - (100 * plan["strength"]).round().astype(int)).all()
    assert set(plan.loc[plan.source_id == "b/c d.png", "prompt"]) == {"a photo of c1"}


def test_image_guidance_is_one_minus_strength_in_percent():
    assert [image_guidance(s) for s in (0.1, 0.3, 0.7, 1.0)] == [90, 70, 30, 0]


def test_source_folders_are_safe_and_distinct():
    ids = ["a/b", "a_b", "../../etc", "x" * 300, "über café", ""]
    names = [source_folder(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert all("/" not in n and not n.startswith(".") and len(n) < 80 for n in names)


def test_noise_seed_depends_on_what_identifies_the_image_only():
    a = plan_spectrum(_hard(["a", "b"]), [0.5], [10], 7.5, PromptBank("{name}"), "gen")
    b = plan_spectrum(_hard(["b"]), [0.5, 0.9], [10, 20], 7.5, PromptBank("other {name}"), "gen")

    def seed_of(plan):
        return dict(zip(plan.synthetic_id, plan.noise_seed))

    assert seed_of(a)["b|g050|seed10"] == seed_of(b)["b|g050|seed10"]
    c = plan_spectrum(_hard(["b"]), [0.5], [10], 5.0, PromptBank("{name}"), "gen")
    assert seed_of(c)["b|g050|seed10"] != seed_of(a)["b|g050|seed10"]


def test_stable_seed_is_the_same_in_another_process():
    here = stable_seed("img-1", 0.3, 10, 7.5, "model")
    code = "from discl.seeding import stable_seed; print(stable_seed('img-1', 0.3, 10, 7.5, 'model'))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert int(there) == here
    assert 0 <= here < 2**63
