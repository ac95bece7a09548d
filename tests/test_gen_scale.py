"""Generation at scale on a tiny random SD pipeline: same images whatever the batch size, shard split
or engine; dry run; crash safety (SIGKILL mid-run, then resume); regenerate-until-good."""

import hashlib
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from discl.cli import main
from discl.config import load_config, save_config
from discl.generation.regenerate import Regenerator
from discl.generation.shards import parse_shard, select_shard, shard_of
from discl.generation.store import PartStore
from discl.generation.tiny import save_tiny_pipeline
from discl.prompts import PromptBank
from discl.rundir import RunDir
from discl.stages.generate import run_generate
from discl.tables import write_table

N_SOURCES = 4
PAUSER = Path(__file__).with_name("generate_then_pause.py")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_pipeline("sd", tmp_path_factory.mktemp("model") / "tiny-sd")


def overrides(model_dir, **extra):
    values = {
        "data.image_size": 32,
        "generate.backend": "diffusers",
        "generate.model": str(model_dir),
        "generate.inference_steps": 4,
        "generate.strengths": "[0.5,1.0]",
        "generate.seeds": "[10,20]",
        "generate.text_guidance": 5.0,
        "generate.prompt_template": "a photo of a {name}",
        "generate.batch_size": 4,
    } | extra
    return [f"{k}={v}" for k, v in values.items()]


def make_run(path, n_sources=N_SOURCES):
    run = RunDir(path)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_sources):
        file = run.images / f"src{i}.png"
        file.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(file)
        rows.append({"sample_id": f"img_{i}", "label": i % 2, "class_name": ["cat", "dog"][i % 2], "path": f"data/src{i}.png",
                     "bucket": "few", "p_true": 0.1, "pred_label": 0, "reason": "few_shot"})
    write_table(pd.DataFrame(rows), run.hard, "hard")
    return run


def generate(run, model_dir, shard=None, **extra):
    cfg = load_config(None, None, overrides(model_dir, **extra))
    return run_generate(run, cfg, echo=lambda *_: None, progress=False, shard=shard)


def images_of(run, table):
    return {sid: np.asarray(Image.open(run.resolve(p)), dtype=np.int16) for sid, p in zip(table.synthetic_id, table.path)}


def assert_same_images(a, b):
    """Bitwise in most pixels; CPU float reordering between batch compositions may move a pixel by one level."""
    assert a.keys() == b.keys()
    for key in a:
        diff = np.abs(a[key] - b[key])
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-2, key


def assert_run_complete(run):
    """No duplicates, nothing missing, every image decodes, the table matches the files."""
    table = pd.read_parquet(run.synthetic)
    assert table.synthetic_id.is_unique and table.path.is_unique
    assert len(table) == N_SOURCES * 2 * 2
    for p in table.path:
        with Image.open(run.resolve(p)) as image:
            image.load()
            assert image.size == (32, 32)
    on_disk = {run.relative(p) for p in run.synthetic_images.rglob("*") if p.is_file() and p.name != "metadata.jsonl"}
    assert on_disk == set(table.path)
    return table


def test_shards_are_stable_disjoint_and_complete():
    assert parse_shard(None) == (0, 1) and parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "1", "-1/3", "a/b", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    plan = pd.DataFrame({"source_id": [f"s{i}" for i in range(60) for _ in range(3)]})
    parts = [select_shard(plan, i, 3) for i in range(3)]
    assert sum(map(len, parts)) == len(plan)
    assert set().union(*[set(p.index) for p in parts]) == set(plan.index)
    assert all(p.source_id.map(lambda s: shard_of(s, 3)).eq(i).all() for i, p in enumerate(parts))
    # stable: sha256-based, not Python's per-process hash()
    digest = hashlib.sha256("\x1f".join([repr("shard"), repr("s7")]).encode()).digest()
    assert shard_of("s7", 3) == (int.from_bytes(digest[:8], "big") >> 1) % 3


@pytest.mark.slow
def test_same_images_whatever_the_batch_size_or_shard_split(tmp_path, model_dir):
    whole = make_run(tmp_path / "whole")
    table = generate(whole, model_dir, **{"generate.batch_size": 8})
    assert_run_complete(whole)
    assert table.noise_seed.is_unique and (table.generator == f"diffusers/{model_dir}").all()

    split = make_run(tmp_path / "split")
    first = generate(split, model_dir, shard="0/2", **{"generate.batch_size": 3})
    assert not split.synthetic.exists() and 0 < len(first) < len(table)
    generate(split, model_dir, shard="1/2", **{"generate.batch_size": 1})
    other = assert_run_complete(split)
    pd.testing.assert_frame_equal(table.drop(columns="path"), other.drop(columns="path"))
    assert_same_images(images_of(whole, table), images_of(split, other))


def test_dry_run_prints_the_plan_and_makes_nothing(tmp_path, model_dir):
    run = make_run(tmp_path / "run")
    save_config(load_config(None, None, overrides(model_dir)), run.root)
    result = CliRunner().invoke(main, ["generate", str(run.root), "--dry-run", "--shard", "1/2"])
    assert result.exit_code == 0, result.output
    assert f"plan: {N_SOURCES} hard samples x 2 strengths x 2 seeds = {4 * N_SOURCES} images" in result.output
    assert "shard 1/2:" in result.output
    # 4 steps: strength 0.5 -> 2 UNet steps, 1.0 -> 4; guidance 5 doubles them
    n_mine = int(result.output.split("shard 1/2: ")[1].split(" images")[0])
    assert f"{n_mine // 2 * (2 + 4) * 2} UNet image-steps" in result.output
    assert not run.synthetic_images.exists()
    bad = CliRunner().invoke(main, ["generate", str(run.root), "--dry-run", "--shard", "3/2"])
    assert bad.exit_code == 2 and "error: --shard 3/2" in bad.output


def test_empty_hard_set_is_one_clear_line(tmp_path, model_dir):
    run = make_run(tmp_path / "run")
    save_config(load_config(None, None, overrides(model_dir)), run.root)
    write_table(pd.read_parquet(run.hard).head(0), run.hard, "hard")
    result = CliRunner().invoke(main, ["generate", str(run.root)])
    assert result.exit_code == 2 and "lists no hard sample: nothing to generate" in result.output
    assert "Traceback" not in result.output and not run.synthetic.exists()


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path, model_dir):
    run = make_run(tmp_path / "run")
    cli = ["generate", str(run.root), "--no-progress"]
    for o in overrides(model_dir, **{"generate.batch_size": 1}):
        cli += ["--set", o]
    # The first run pauses right after its third committed batch (one image each) and is killed there:
    # no polling, no deadline, nothing that a fast or a slow machine could win.
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        proc = subprocess.Popen([sys.executable, str(PAUSER), "3", *cli], env=os.environ.copy(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
        paused = next((line for line in proc.stdout if line.startswith("PAUSED")), None)
        if paused is None:  # it ended without pausing
            proc.wait()
            stderr.seek(0)
            pytest.fail(f"generate ended (code {proc.returncode}) before its third batch: {stderr.read()[-2000:]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stdin.close()
    assert proc.returncode == -signal.SIGKILL
    assert not run.synthetic.exists()
    assert len(list(run.synthetic_images.rglob("*.png"))) == 3  # the three committed images, nothing after
    rerun = subprocess.run([sys.executable, "-m", "discl.cli", *cli], env=os.environ.copy(), capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "already there" in rerun.stdout
    new = int(rerun.stdout.split("(")[1].split(" new")[0])
    assert new == 4 * N_SOURCES - 3  # the committed batches were not redone, the rest was made
    assert_run_complete(run)


@pytest.mark.slow
def test_ray_engine_matches_the_local_engine(tmp_path, model_dir):
    pytest.importorskip("ray")
    local = make_run(tmp_path / "local")
    table = generate(local, model_dir)
    distributed = make_run(tmp_path / "ray")
    other = generate(distributed, model_dir, **{"generate.engine": "ray", "generate.ray_workers": 2, "generate.batch_size": 3})
    assert_run_complete(distributed)
    pd.testing.assert_frame_equal(table.drop(columns="path"), other.drop(columns="path"))
    assert_same_images(images_of(local, table), images_of(distributed, other))


class _ValueGenerator:
    """Fills each output with its noise seed mod 256, so the test knows what each draw looks like."""

    name = "value"

    def img2img(self, images, labels, prompts, strength, text_guidance, noise_seeds):
        return torch.stack([torch.full((3, 2, 2), int(s) % 256, dtype=torch.uint8) for s in noise_seeds])


class _AngleScorer:
    """Similarity cos(pi * value / 255): bright images score low."""

    name = "angle"

    def embed_images(self, images):
        theta = images.float().mean((1, 2, 3)) / 255 * math.pi
        return torch.stack([theta.cos(), theta.sin()], 1)

    def embed_texts(self, texts):
        return torch.tensor([[1.0, 0.0]] * len(texts))


def _sim(seed):
    return math.cos(math.pi * (seed % 256) / 255)


def test_regenerate_keeps_the_best_draw_and_records_attempts():
    from discl.seeding import stable_seed

    bank = PromptBank("{description}", {"cat": [f"cat scene {i}" for i in range(10)]})
    rows = pd.DataFrame({"label": [0] * 40, "class_name": ["cat"] * 40, "seed": [10] * 40,
                         "prompt": ["p"] * 40, "noise_seed": list(range(0, 400, 10))})
    regen = Regenerator(_AngleScorer(), bank, {0: "a cat"}, threshold=0.3, tries=3)
    out, kept = regen(_ValueGenerator(), torch.zeros(40, 3, 2, 2, dtype=torch.uint8), rows, 0.5, 5.0,
                      _ValueGenerator().img2img(None, None, None, 0, 0, rows.noise_seed))
    for i, row in kept.iterrows():
        draws = [int(rows.noise_seed[i])]
        while _sim(draws[-1]) <= 0.3 and len(draws) <= 3 and max(map(_sim, draws)) <= 0.3:
            draws.append(stable_seed(int(rows.noise_seed[i]), "retry", len(draws)))
        best = max(draws, key=_sim)
        assert row.attempts == len(draws)
        assert row.noise_seed == best and int(out[i, 0, 0, 0]) == best % 256
        assert row.gen_text_sim == pytest.approx(_sim(best), abs=1e-5)
        if best == draws[0]:
            assert row.prompt == "p"
        else:
            k = draws.index(best)
            assert row.prompt == bank.prompt("cat", stable_seed(10, "retry", k))
    assert (kept.attempts == 1).any() and (kept.attempts == 4).any()


def test_regenerate_in_the_generate_stage(tiny_run, tmp_path, tiny_overrides):
    """On a copy of the demo run: with a threshold no image can pass, every image gets exactly 1 + tries draws."""
    import shutil

    run = RunDir(tmp_path / "run")
    shutil.copytree(tiny_run[0].root, run.root)
    cfg = load_config(None, None, tiny_overrides + ["generate.seeds=[77]", "generate.strengths=[0.5]", "generate.regenerate=true",
                                                    "generate.regenerate_threshold=1.0", "generate.regenerate_tries=1"])
    table = run_generate(run, cfg, echo=lambda *_: None, progress=False)
    hard = pd.read_parquet(run.hard)
    assert len(table) == len(hard) and (table.attempts == 2).all()
    assert table.gen_text_sim.between(-1.0001, 1.0001).all()
    assert all(run.resolve(p).exists() for p in table.path)


def cli_generate(run, *sets):
    args = ["generate", str(run.root), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_changed_settings_remake_exactly_the_affected_images(tmp_path, model_dir):
    """Images record the fingerprint of what made them: new settings remake those they change, and say so."""
    run = make_run(tmp_path / "run")
    cli_generate(run, *overrides(model_dir))
    first = pd.read_parquet(run.synthetic)
    assert first.fingerprint.str.fullmatch(r"[0-9a-f]{16}").all() and first.fingerprint.is_unique

    out = cli_generate(run, "generate.text_guidance=7.5")
    assert "16 images were made with other settings (generate.text_guidance 5.0 -> 7.5); they are made again" in out
    assert "(16 new, 0 already there)" in out
    table = pd.read_parquet(run.synthetic)
    assert (table.text_guidance == 7.5).all() and not set(table.fingerprint) & set(first.fingerprint)
    assert "(0 new, 16 already there)" in cli_generate(run)  # config.yaml now holds 7.5

    # Another strength: only its images are new; the others are kept as they are.
    out = cli_generate(run, "generate.strengths=[0.5,0.8]")
    assert "(8 new, 8 already there)" in out
    again = pd.read_parquet(run.synthetic)
    kept = again[again.strength == 0.5].set_index("synthetic_id").fingerprint
    assert kept.equals(table[table.strength == 0.5].set_index("synthetic_id").fingerprint)

    # Settings outside the rows (here the denoising steps) change every image.
    out = cli_generate(run, "generate.inference_steps=3")
    assert "16 images were made with other settings (generate.inference_steps 4 -> 3)" in out and "(16 new" in out


def test_a_rerun_after_ctrl_c_names_the_settings_the_left_over_images_were_made_with(tmp_path, model_dir, monkeypatch):
    """Ctrl-C in a run with new settings leaves images of the old settings on disk: the rerun names the
    old settings (not a vague "prompts or settings differ"), keeps what the cut run made, and makes the rest."""
    run = make_run(tmp_path / "run")
    cli_generate(run, *overrides(model_dir))  # 16 images at text guidance 5.0
    commit = PartStore.commit

    def commit_then_ctrl_c(self, rows):
        commit(self, rows)
        raise KeyboardInterrupt

    monkeypatch.setattr(PartStore, "commit", commit_then_ctrl_c)
    result = CliRunner().invoke(main, ["generate", str(run.root), "--no-progress", "--set", "generate.text_guidance=7.5"])
    assert result.exit_code == 1 and "Aborted" in result.output  # click's answer to Ctrl-C
    monkeypatch.setattr(PartStore, "commit", commit)

    out = cli_generate(run)  # config.yaml holds 7.5: the cut run's settings
    assert "12 images were made with other settings (generate.text_guidance 5.0 -> 7.5); they are made again" in out, out
    assert "(12 new, 4 already there)" in out
    assert (pd.read_parquet(run.synthetic).text_guidance == 7.5).all()


def test_resume_remakes_images_that_are_not_whole_or_not_the_planned_size(tmp_path, model_dir):
    run = make_run(tmp_path / "run")
    cli_generate(run, *overrides(model_dir))
    table = pd.read_parquet(run.synthetic)
    before = images_of(run, table)
    empty, garbage, small = (run.resolve(p) for p in table.path.iloc[[0, 5, 9]])
    empty.write_bytes(b"")
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    Image.new("RGB", (8, 8)).save(small)
    out = cli_generate(run)
    assert f"3 images are missing or not whole PNGs at the planned size (e.g. {table.path.iloc[0]}); they are made again" in out
    assert "(3 new, 13 already there)" in out
    assert_same_images(before, images_of(run, table))
    assert_run_complete(run)


def test_an_image_redrawn_by_regenerate_is_named_by_the_settings_that_made_it(tmp_path):
    """A row generate.regenerate redrew holds the retry's prompt and noise seed, but the fingerprint of its
    planned ones: a rerun with new settings names the changed setting, not "the prompt"."""
    from discl.generation.plan import image_fingerprint
    from discl.generation.settings import digest, write_record
    from discl.rundir import RunDir
    from discl.stages.generate import what_changed

    run = RunDir(tmp_path / "run")
    run.generation_record.parent.mkdir(parents=True)
    before, now = {"generate.text_guidance": 2.0, "generate.steps": 4}, {"generate.text_guidance": 7.5, "generate.steps": 4}
    write_record(run, before)
    write_record(run, now)
    plan = pd.DataFrame({"synthetic_id": ["a", "b"], "prompt": ["a cat", "a dog"], "noise_seed": [1, 2]})
    made = [image_fingerprint(digest(before), p, n) for p, n in zip(plan["prompt"], plan["noise_seed"])]
    left = pd.DataFrame({"synthetic_id": ["a", "b"], "prompt": ["a cat", "a dog, on grass"], "noise_seed": [1, 99],
                         "fingerprint": made})  # b: redrawn with another prompt and seed
    assert what_changed(run, left, plan, now) == "generate.text_guidance 2.0 -> 7.5"
    plan.loc[0, "prompt"] = "a small cat"  # a prompt changed in the plan is still named
    assert what_changed(run, left, plan, now) == "1: generate.text_guidance 2.0 -> 7.5, the prompt; 1: generate.text_guidance 2.0 -> 7.5"
