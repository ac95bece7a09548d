"""Two CPU processes on the gloo backend (torchrun) train to the same weights as one process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(WORKER), str(tmp_path / "single")], env=env, check=True, timeout=120)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(WORKER), str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    r0, r1 = (load_file(str(tmp_path / "ddp" / f"rank{r}-of2.safetensors")) for r in (0, 1))
    single = load_file(str(tmp_path / "single" / "rank0-of1.safetensors"))
    for key in single:
        assert torch.equal(r0[key], r1[key]), key  # the processes agree exactly
        assert torch.allclose(r0[key], single[key], atol=1e-5), key  # and match one process on the whole batch
    torch.manual_seed(0)
    start = torch.nn.Linear(3 * 8 * 8, 4).weight
    assert not torch.allclose(single["1.weight"], start, atol=1e-4)  # training moved the weights
    assert (tmp_path / "ddp" / "run" / "checkpoint.safetensors").exists()  # written by rank 0
