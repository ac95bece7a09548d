"""Several processes with PyTorch DDP, launched by torchrun (gloo on CPU, NCCL on GPUs).

Every process computes the same global order of each epoch and reads only its slice of each
global batch (training/sampling.py); DDP averages the gradients, so all processes hold the same
weights. BatchNorm layers normalise over the global batch (SyncBatchNorm), and buffers are copied
from rank 0 at each epoch end, so evaluations, and the curriculum decisions taken from them, agree
too. Only rank 0 writes files.

Gathers never assume equal sizes: a process's share of a batch differs by one image between
processes, and more where an image cannot be read, so each process's row count is gathered first
and every part is padded to the largest.
"""

from __future__ import annotations

import os

import numpy as np
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


def check_batch(batch_size: int, key: str) -> None:
    """Refuse a global batch that cannot give every launched process an image."""
    if batch_size < world_size():
        raise ValueError(f"{key} ({batch_size}) is smaller than the {world_size()} processes launched: every process "
                         f"needs at least one image of each batch; raise {key} or launch fewer processes")


_host_groups: dict = {}


def shutdown() -> None:
    """Close the process group (and the host group made on it), so a later init in this process starts anew."""
    if active():
        _host_groups.clear()
        dist.destroy_process_group()


def host_group():
    """A gloo group for small host-side tensors (per-step image counts): under NCCL they would need a
    copy to the GPU and a wait for it; gloo reads them where they are. Made collectively on first use."""
    if dist.get_backend() == "gloo":
        return dist.group.WORLD
    if "gloo" not in _host_groups:
        _host_groups["gloo"] = dist.new_group(backend="gloo")
    return _host_groups["gloo"]


def all_gather_host(values: np.ndarray) -> np.ndarray:
    """(W, n) int64: every process's ``values`` (the same length on every process), by rank; no device wait."""
    local = torch.as_tensor(np.asarray(values, dtype=np.int64))
    if not active():
        return local[None].numpy()
    parts = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(parts, local, group=host_group())
    return torch.stack(parts).numpy()


def has_batch_norm(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


def sync_batch_norm(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Under DDP, BatchNorm layers that normalise over the global batch, as one process would. On GPUs
    timm's converter: torch's SyncBatchNorm (and timm's norm+activation layers). On CPU (gloo) torch has
    no SyncBatchNorm (its kernels are CUDA-only and DDP refuses it on CPU modules), so torch's BatchNorm
    layers become :class:`HostSyncBatchNorm`, which computes the same statistics."""
    if not active() or not has_batch_norm(module):
        return module
    if device.type != "cpu":
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(module)
    plain = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    for m in module.modules():
        if type(m) in plain:
            m.__class__ = HostSyncBatchNorm  # the same parameters and buffers; only forward differs
        elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(m, HostSyncBatchNorm):
            raise ValueError(f"train.sync_batchnorm on CPU supports torch's BatchNorm layers, not "
                             f"{type(m).__name__}; set train.sync_batchnorm=false or train on GPUs")
    return module


class HostSyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch for CPU processes (what torch's SyncBatchNorm does on GPUs): in
    training, the sums of x and x**2 and the count are all-reduced with their gradient (so the backward
    pass is the global batch's too), and the running statistics are updated as BatchNorm does."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(input)
        import torch.distributed._functional_collectives as funcol

        dims = [0, *range(2, input.dim())]
        x = input.double()  # E[x^2] - E[x]^2 in float64: no cancellation at float32 activations
        local = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_tensor([input.numel() // max(1, input.size(1))])])
        world = dist.group.WORLD
        assert world is not None  # active()
        total = funcol.all_reduce(local, "sum", world)
        total = total.wait() if hasattr(total, "wait") else total
        c = input.size(1)
        count = float(total[-1].detach())
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got {count:g} in the global batch")
        mean = total[:c] / count
        var = (total[c: 2 * c] / count - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr]
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum  # type: ignore[arg-type]
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_((var * count / (count - 1)).to(self.running_var.dtype), momentum)
        shape = [1, c] + [1] * (input.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            out = out * self.weight.double().view(shape) + self.bias.double().view(shape)
        return out.to(input.dtype)


class _GatherRows(torch.autograd.Function):
    """All processes' rows (``counts[r]`` from rank r), concatenated by rank. Backward: the gradient of
    this process's rows summed over processes (what the gradient of a loss each process computes on
    the whole gathered batch is), so DDP's average over processes is the whole batch's gradient."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, counts: tuple[int, ...]):
        ctx.counts, ctx.rank = counts, rank()
        width = max(counts)
        padded = local.new_zeros((width, *local.shape[1:]))
        padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, counts)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        lo = sum(ctx.counts[: ctx.rank])
        return grad[lo: lo + ctx.counts[ctx.rank]], None


def gather_rows_with_grad(local: torch.Tensor, counts) -> torch.Tensor:
    """Every process's rows of ``local`` (process r holds ``counts[r]``; any sizes, 0 included), by rank,
    with the gradient flowing back to each process's own rows."""
    if not active():
        return local
    return _GatherRows.apply(local, tuple(int(n) for n in counts))


def gather_varying(local: torch.Tensor) -> torch.Tensor:
    """Every process's rows of ``local`` (any number per process), concatenated by rank: the row counts
    are gathered first and each part padded to the largest, so no size is assumed."""
    if not active():
        return local
    count = torch.tensor([len(local)], dtype=torch.int64, device=local.device)
    counts = [torch.empty_like(count) for _ in range(world_size())]
    dist.all_gather(counts, count)
    with torch.no_grad():
        return _GatherRows.apply(local, tuple(int(c) for c in torch.cat(counts).tolist()))


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
    """Up to ``width`` int64 values from each process, concatenated by rank."""
    return gather_varying(rows[:width])


def sync_buffers(module: torch.nn.Module) -> None:
    if active():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier() -> None:
    if active():
        dist.barrier()
