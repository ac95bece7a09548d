"""Several processes with PyTorch DDP (launched by torchrun or Accelerate; gloo on CPU, nccl on GPU).

Every process draws the same batch order from the same seeded generator and trains on
its slice of each batch; DDP averages the gradients, so all processes hold the same
weights. Buffers (BatchNorm statistics) are copied from rank 0 at each epoch end, so
curriculum decisions taken from evaluations agree too. Only rank 0 writes files.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1); False if alone."""
    if active() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return active()
    dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return True


def wrap(module: torch.nn.Module) -> torch.nn.Module:
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module)


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This process's slice of a batch."""
    return indices[rank():: world_size()] if active() else indices


def sum_across(values: list[float]) -> list[float]:
    if not active():
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def sync_buffers(module: torch.nn.Module) -> None:
    if active():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
