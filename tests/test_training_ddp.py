"""Two CPU processes on the gloo backend (torchrun) train to the same weights and log as one process:
each reads only its slice of every global batch, gradients are averaged, evaluations are gathered."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .streams import make_data

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    make_data(tmp_path / "images")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(WORKER), str(tmp_path / "images"), str(tmp_path / "single")], env=env, check=True,
                   timeout=120)
    # --standalone: torchrun's agent binds its store to port 0 (the kernel picks a free port, held from
    # then on) and hands that store to the workers, so no port number is chosen, freed, then reused.
    # (With TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 it would pick a free port for the workers instead.)
    env.pop("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER), str(tmp_path / "images"), str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    r0, r1 = (load_file(str(tmp_path / "ddp" / f"rank{r}-of2.safetensors")) for r in (0, 1))
    single = load_file(str(tmp_path / "single" / "rank0-of1.safetensors"))
    for key in single:
        assert torch.equal(r0[key], r1[key]), key  # the processes agree exactly
        assert torch.allclose(r0[key], single[key], atol=1e-5), key  # and match one process on the whole batch
    logs = [json.loads((tmp_path / d / f"{name}.json").read_text())
            for d, name in (("single", "rank0-of1"), ("ddp", "rank0-of2"), ("ddp", "rank1-of2"))]
    assert [r["val_acc"] for r in logs[1]] == [r["val_acc"] for r in logs[2]] == [r["val_acc"] for r in logs[0]]
    assert [r["n_seen"] for r in logs[1]] == [r["n_seen"] for r in logs[0]] == [30, 30, 24]
    for a, b in zip(logs[0], logs[1]):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-5
    torch.manual_seed(0)
    start = torch.nn.Linear(3 * 16 * 16, 3).weight
    assert not torch.allclose(single["fc.weight"], start, atol=1e-4)  # training moved the weights
    assert (tmp_path / "ddp" / "run" / "checkpoint.safetensors").exists()  # written by rank 0
