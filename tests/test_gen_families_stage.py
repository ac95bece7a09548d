"""The generate stage with a flow-matching family (tiny FLUX.1-schnell): same images whatever the batch size or
shard split, dry run, resume after SIGKILL; settings errors before any work; generate.lora in the fingerprint."""

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from discl.cli import main
from discl.config import load_config, save_config
from discl.generation.tiny import save_tiny_pipeline
from discl.stages.generate import image_settings
from tests.test_gen_scale import (
    N_SOURCES,
    PAUSER,
    assert_run_complete,
    assert_same_images,
    generate,
    images_of,
    make_run,
    overrides,
)


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return save_tiny_pipeline("flux-schnell", tmp_path_factory.mktemp("model") / "tiny-flux")


FLOW = {"generate.inference_steps": 2, "generate.text_guidance": 0.0}


def test_flux_same_images_whatever_the_batch_size_or_shards(tmp_path, flux_dir):
    whole = make_run(tmp_path / "whole")
    table = generate(whole, flux_dir, **FLOW, **{"generate.batch_size": 8})
    assert_run_complete(whole)
    split = make_run(tmp_path / "split")
    generate(split, flux_dir, shard="0/3", **FLOW, **{"generate.batch_size": 3})
    generate(split, flux_dir, shard="1/3", **FLOW, **{"generate.batch_size": 1})
    generate(split, flux_dir, shard="2/3", **FLOW, **{"generate.batch_size": 5})
    other = assert_run_complete(split)
    pd.testing.assert_frame_equal(table.drop(columns="path"), other.drop(columns="path"))
    assert_same_images(images_of(whole, table), images_of(split, other))


def test_flux_dry_run_and_resume_after_sigkill(tmp_path, flux_dir):
    run = make_run(tmp_path / "run")
    cli = ["generate", str(run.root), "--no-progress"]
    for o in overrides(flux_dir, **FLOW, **{"generate.batch_size": 1}):
        cli += ["--set", o]
    dry = CliRunner().invoke(main, [*cli, "--dry-run"])
    assert dry.exit_code == 0 and f"= {4 * N_SOURCES} images" in dry.output and not run.synthetic_images.exists()
    guided = CliRunner().invoke(main, [*cli, "--dry-run", "--set", "generate.text_guidance=3.5"])
    assert "; family flux-schnell, guidance none)" in guided.output and "(x2 for guidance)" not in guided.output
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        proc = subprocess.Popen([sys.executable, str(PAUSER), "2", *cli], env=os.environ.copy(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
        paused = next((line for line in proc.stdout if line.startswith("PAUSED")), None)
        if paused is None:
            proc.wait()
            stderr.seek(0)
            pytest.fail(f"generate ended (code {proc.returncode}) before its second batch: {stderr.read()[-2000:]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stdin.close()
    assert len(list(run.synthetic_images.rglob("*.png"))) == 2 and not run.synthetic.exists()
    rerun = subprocess.run([sys.executable, "-m", "discl.cli", *cli], env=os.environ.copy(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"({4 * N_SOURCES - 2} new, 2 already there)" in rerun.stdout
    assert_run_complete(run)


def test_a_level_the_steps_cannot_reach_stops_before_any_work(tmp_path):
    sd = save_tiny_pipeline("sd", tmp_path / "sd")  # SD / SDXL-Turbo rule: int(steps x strength) steps
    run = make_run(tmp_path / "run")
    save_config(load_config(None, None, overrides(sd, **{"generate.strengths": "[0.1,0.2,0.5]"})), run.root)
    result = CliRunner().invoke(main, ["generate", str(run.root), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert ("error: generate.strengths [0.1, 0.2] leave no denoising step at generate.inference_steps 4 "
            "(this model denoises int(steps x strength) steps); raise inference_steps to at least 10") in result.output
    assert not run.synthetic_images.exists() and not run.synthetic.exists()
    # with level_scale noise every level starts from a step of the schedule: the run goes through
    ok = CliRunner().invoke(main, ["generate", str(run.root), "--no-progress", "--set", "generate.level_scale=noise"])
    assert ok.exit_code == 0, ok.output
    assert len(pd.read_parquet(run.synthetic)) == N_SOURCES * 3 * 2
    record = json.loads(run.generation_record.read_text())  # what each level was called with, and the size
    assert set(record["levels"]) == {"0.1", "0.2", "0.5"} and record["size"] == [32, 32]
    assert all(int(4 * s) >= 1 for s in record["levels"].values())


def test_lora_and_level_scale_are_in_the_images_settings(tmp_path, flux_dir):
    run = make_run(tmp_path / "run")
    plain = image_settings(run, load_config(None, None, overrides(flux_dir)))
    assert "generate.lora" not in plain and "generate.level_scale" not in plain  # runs made before them keep their fingerprints
    lora = image_settings(run, load_config(None, None, overrides(flux_dir, **{"generate.lora": "[{path: some/lora, scale: 0.8}]"})))
    assert lora["generate.lora"] == [{"path": "some/lora", "scale": 0.8, "weight_name": None}]
    noise = image_settings(run, load_config(None, None, overrides(flux_dir, **{"generate.level_scale": "noise"})))
    assert noise["generate.level_scale"] == "noise"


def test_a_local_lora_file_rewritten_in_place_changes_the_images_settings(tmp_path, flux_dir):
    run = make_run(tmp_path / "run")
    weights = tmp_path / "my_lora.safetensors"
    weights.write_bytes(b"first weights")
    cfg = load_config(None, None, overrides(flux_dir, **{"generate.lora": f"[{{path: {weights}, scale: 1.0}}]"}))
    before = image_settings(run, cfg)
    assert set(before["generate.lora files"]) == {str(weights)}
    weights.write_bytes(b"retrained weights")  # same path, new content
    after = image_settings(run, cfg)
    assert after["generate.lora"] == before["generate.lora"]
    assert after["generate.lora files"] != before["generate.lora files"]
    # a folder without weight_name, as diffusers' LoRA training writes it: its weights file is what counts
    folder = tmp_path / "lora-folder"
    folder.mkdir()
    (folder / "pytorch_lora_weights.safetensors").write_bytes(b"first weights")
    cfg = load_config(None, None, overrides(flux_dir, **{"generate.lora": f"[{{path: {folder}, scale: 1.0}}]"}))
    before = image_settings(run, cfg)
    (folder / "pytorch_lora_weights.safetensors").write_bytes(b"retrained weights")
    assert image_settings(run, cfg)["generate.lora files"] != before["generate.lora files"] != {}
