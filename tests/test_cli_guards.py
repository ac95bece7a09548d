"""Issue 13's tries, through the command line: each bad setting or bad input ends with exit code 2 and one
`error:` line naming what is wrong, and leaves the run directory exactly as it was (config.yaml included)."""

import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from discl.cli import main
from discl.lock import RunLock

from .conftest import tree_state


@pytest.fixture(scope="module")
def run_root(tiny_run, tmp_path_factory):
    """One copy of the tiny run for the whole module: every command here must leave it unchanged."""
    root = tmp_path_factory.mktemp("guards") / "run"
    shutil.copytree(tiny_run[0].root, root)
    return root


def fails_cleanly(args: list[str], root, expected: str) -> str:
    """Run ``discl *args``; assert exit code 2, one `error:` line containing ``expected``, ``root`` unchanged."""
    before = tree_state(root)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert tree_state(root) == before
    return lines[0]


@pytest.mark.parametrize(
    "stage, setting, expected",
    [
        ("train", "train.classifier.epochs=0", "train.classifier.epochs = 0: must be greater than or equal to 1 (from --set)"),
        ("mine", "mine.rules=[]", "mine.rules = []: must have at least 1 item"),
        ("mine", "mine.base.epochs=0", "mine.base.epochs = 0: must be greater than or equal to 1"),
        ("generate", "generate.train_steps=-10", "generate.train_steps = -10: must be greater than or equal to 1"),
        ("score", "score.text_threshold=.nan", "score.text_threshold = nan: must be a finite number"),
        ("generate", "generate.text_guidance=.nan", "generate.text_guidance = nan: must be a finite number"),
        ("train", "train.classifier.batch_size=2.7", "train.classifier.batch_size = 2.7: must be a valid integer"),
        ("generate", "generate.strengths=[0,1.5]", "generate.strengths[0] = 0: must be greater than 0"),
        ("generate", "generate.seeds=[]", "generate.seeds = []: must have at least 1 item"),
        ("generate", "generate.inference_steps=0", "generate.inference_steps = 0: must be greater than or equal to 1"),
        ("generate", "generate.batch_size=0", "generate.batch_size = 0: must be greater than or equal to 1"),
        ("generate", "generate.prompt_template=a photo of {label}", "generate.prompt_template = 'a photo of {label}': must be a template"),
        ("train", "train.methods=[]", "train.methods = []: must have at least 1 item"),
        ("train", "train.levels=[10, 150]", "train.levels[1] = 150: must be less than or equal to 100"),
        ("eval", "eval.device=gpu", "eval.device = 'gpu': must be auto, cpu, cuda, cuda:N or mps"),
        ("compare", "train.classifier.epochs=0", "train.classifier.epochs = 0"),
        ("prompts", "prompts.n_descriptions=0", "prompts.n_descriptions = 0"),
        ("prepare", "data.image_size=0", "data.image_size = 0"),
    ],
)
def test_bad_settings_stop_every_stage_before_any_work(run_root, stage, setting, expected):
    fails_cleanly([stage, str(run_root), "--no-progress", "--set", setting], run_root, expected)


def test_a_config_file_value_of_the_wrong_type_is_named_with_its_file(run_root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {image_size: yes}\n")
    fails_cleanly(["prepare", str(run_root), "--config", str(bad)], run_root, f"data.image_size = True: must be a valid integer (from {bad})")


def test_yaml_syntax_errors_are_one_line(run_root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  levels: [10, 50\n  methods: x\n")
    fails_cleanly(["train", str(run_root), "--config", str(bad)], run_root, f"{bad}: invalid YAML: ")
    fails_cleanly(["train", str(run_root), "--set", "train.levels=[10, 50"], run_root, "--set train.levels=[10, 50: not a valid YAML value")


def test_a_failed_command_does_not_keep_its_settings(run_root, tmp_path):
    """`discl mine RUN --hard-csv bad.csv` fails in the stage: config.yaml stays as it was, so a later
    plain run does not import bad.csv again."""
    bad = tmp_path / "bad.csv"
    bad.write_text("what,ever\n1,2\n")
    fails_cleanly(["mine", str(run_root), "--no-progress", "--hard-csv", str(bad)], run_root, str(bad))
    assert yaml.safe_load((run_root / "config.yaml").read_text())["mine"]["hard_csv"] is None


def test_text_settings_are_taken_as_written(run_root):
    """The prompts stage's own hint works: the template is the text given, not a YAML mapping."""
    saved = (run_root / "config.yaml").read_bytes()
    template = "a 8k real photo: {description}"
    try:
        result = CliRunner().invoke(main, ["prompts", str(run_root), "--set", f"generate.prompt_template={template}"])
        assert result.exit_code == 0, result.output
        assert yaml.safe_load((run_root / "config.yaml").read_text())["generate"]["prompt_template"] == template
    finally:
        (run_root / "config.yaml").write_bytes(saved)


def test_a_dry_run_keeps_its_settings_to_itself(run_root):
    """`generate --dry-run --set ...` says what a run would remake, and leaves the run directory as it was."""
    before = tree_state(run_root)
    result = CliRunner().invoke(main, ["generate", str(run_root), "--dry-run", "--set", "generate.text_guidance=7.5"])
    assert result.exit_code == 0, result.output
    n = len(pd.read_parquet(run_root / "synthetic.parquet"))
    assert f"generate: {n} images were made with other settings (generate.text_guidance 2.0 -> 7.5); a run makes them again" in result.stdout
    assert tree_state(run_root) == before


def test_no_stage_but_prepare_creates_a_run_directory(tmp_path):
    missing = tmp_path / "mistyped"
    for stage in ("mine", "generate", "score", "train", "eval", "prompts", "compare"):
        result = CliRunner().invoke(main, [stage, str(missing), "--no-progress"])
        assert result.exit_code == 2 and result.stderr.strip() == (
            f"error: run directory {missing} does not exist; `discl prepare {missing}` makes one (no other stage creates a run directory)")
        assert not missing.exists()
    result = CliRunner().invoke(main, ["report", str(missing)])
    assert result.exit_code == 2 and "does not exist" in result.stderr and not missing.exists()


def test_a_prepare_that_fails_leaves_no_run_directory(tmp_path):
    missing = tmp_path / "new-run"
    result = CliRunner().invoke(main, ["prepare", str(missing), "--set", "data.name=image-folder", "--set", f"data.root={tmp_path / 'nope'}"])
    assert result.exit_code == 2 and "does not exist or is not a folder" in result.stderr
    assert not missing.exists()


def test_a_second_writer_of_a_stage_gets_one_line(run_root):
    """A lock held by another open file (as by another process) stops the second `discl score` at once."""
    with RunLock(run_root, "score", command="discl score (test holder)"):
        before = tree_state(run_root)
        line = fails_cleanly(["score", str(run_root), "--no-progress", "--rescore"], run_root, f"error: {run_root.resolve()} is busy: pid ")
        assert "`discl score (test holder)`" in line and "wait for that command to end" in line
        assert tree_state(run_root) == before
    assert not (run_root / ".discl-score.lock").exists()  # released: the file goes


def test_a_lock_held_by_another_process_names_its_pid_and_host(run_root):
    """A real second process holds the generate lock; it reports ready on stdout and waits for stdin (no sleeps)."""
    import socket

    code = ("import sys; from discl.lock import RunLock; lock = RunLock(sys.argv[1], 'generate', command='discl generate').acquire(); "
            "print('held', flush=True); sys.stdin.readline(); lock.release()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        line = fails_cleanly(["generate", str(run_root), "--dry-run"], run_root, f"pid {holder.pid} on {socket.gethostname()}")
        assert line.endswith("or give each process its own --shard I/N")
        # a shard may not run beside the whole plan either
        fails_cleanly(["generate", str(run_root), "--dry-run", "--shard", "0/2"], run_root, f"pid {holder.pid}")
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0
    # once it is gone, shards run side by side: shard 1 works while shard 0 is held
    with RunLock(run_root, "generate-shard-0-of-2"):
        saved = (run_root / "config.yaml").read_bytes()
        result = CliRunner().invoke(main, ["generate", str(run_root), "--dry-run", "--shard", "1/2"])
        assert result.exit_code == 0, result.output
        assert (run_root / "config.yaml").read_bytes() == saved


def test_a_killed_holder_never_blocks(run_root):
    """The kernel drops the lock of a process that dies (even by SIGKILL); its file is left but not held."""
    code = ("import os, sys, signal; from discl.lock import RunLock; RunLock(sys.argv[1], 'eval').acquire(); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", code, str(run_root)])
    assert done.returncode == -9 and (run_root / ".discl-eval.lock").exists()
    lock = RunLock(run_root, "eval").acquire()
    lock.release()
    assert not (run_root / ".discl-eval.lock").exists()


class NotTensors:
    """What a pickled checkpoint may hold: an arbitrary object, whose unpickling could run code."""


def test_a_pickled_checkpoint_is_refused_in_one_line(run_root, tmp_path):
    """torch.load(weights_only=True) refuses a checkpoint holding pickled objects; the CLI says so in one
    line naming the file, before any training."""
    import torch

    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": NotTensors()}, evil)
    fails_cleanly(["mine", str(run_root), "--no-progress", "--set", f"mine.base_weights={evil}"], run_root,
                  f"error: cannot read {evil} as a plain state dict (torch.load with weights_only=True refused it: ")
    # The task model's starting weights likewise: one line naming the file, nothing trained or written.
    line = fails_cleanly(["train", str(run_root), "--no-progress", "--set", f"train.classifier.pretrained={evil}"], run_root,
                         f"error: cannot load the weights {evil} into resnet10t: ")
    assert "NotTensors" in line and "weights_only=False" not in line
