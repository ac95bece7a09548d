"""Several processes with PyTorch DDP, launched by torchrun (gloo on CPU, NCCL on GPUs).

Every process computes the same global order of each epoch and reads only its slice of each
global batch (training/sampling.py); DDP averages the gradients, so all processes hold the same
weights. Buffers (BatchNorm statistics) are copied from rank 0 at each epoch end, so
evaluations, and the curriculum decisions taken from them, agree too. Only rank 0 writes files.
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


def launched() -> bool:
    """Whether torchrun (or the like) started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device | str | None = None, backend: str | None = None) -> bool:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1); False if alone.
    NCCL when this process trains on a CUDA device, gloo otherwise."""
    if active() or not launched():
        return active()
    if backend is None:
        kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        backend = "nccl" if kind == "cuda" else "gloo"
    dist.init_process_group(backend)
    return True


def wrap(module: torch.nn.Module, device: torch.device | None = None) -> torch.nn.Module:
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel

    if device is not None and device.type == "cuda":
        return DistributedDataParallel(module, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(module)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` over processes (in place; the tensor must be on the process's device for NCCL)."""
    if active():
        dist.all_reduce(values)
    return values


def all_gather_rows(rows: torch.Tensor, width: int) -> torch.Tensor:
    """Up to ``width`` int64 values from each process (padded with -1), concatenated; -1 dropped."""
    if not active():
        return rows[rows >= 0]
    padded = torch.full((width,), -1, dtype=torch.int64, device=rows.device)
    padded[: min(width, len(rows))] = rows[:width]
    parts = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded)
    out = torch.cat(parts)
    return out[out >= 0]


def sync_buffers(module: torch.nn.Module) -> None:
    if active():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier() -> None:
    if active():
        dist.barrier()
