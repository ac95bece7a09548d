"""Where a model runs and in which precision: one device per process, chosen once.

``auto`` is CUDA when it is available and the CPU otherwise; under torchrun each process
takes ``cuda:LOCAL_RANK``. Mixed precision is autocast (bf16 or fp16); fp16 training also
needs a gradient scaler, which :func:`grad_scaler` makes (a disabled one otherwise, so the
loop has one code path)."""

from __future__ import annotations

import contextlib
import os

import torch

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(ValueError):
    pass


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(spec: str | None, key: str = "device") -> torch.device:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` (/ ``mps``) -> a torch device; a clear error when absent."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"{key}: unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{key} is {spec!r} but no CUDA device is available here (torch.cuda.is_available() is "
                              "False); use auto or cpu")
        index = device.index if device.index is not None else local_rank()
        if index >= torch.cuda.device_count():
            raise DeviceError(f"{key}: cuda:{index} does not exist; this machine has {torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{key} is 'mps' but MPS is not available here; use auto or cpu")
    return device


def precision_dtype(precision: str, key: str = "precision") -> torch.dtype:
    if precision not in PRECISIONS:
        raise DeviceError(f"{key}: unknown precision {precision!r}; known: {list(PRECISIONS)}")
    return PRECISIONS[precision]


def autocast(device: torch.device, precision: str):
    """Autocast for bf16/fp16; nothing for fp32."""
    dtype = precision_dtype(precision)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (whose small gradients underflow); disabled, a pass-through, otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def to_device(batch: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Host -> device copy that overlaps with compute when the host tensor is pinned."""
    batch = batch.to(device, non_blocking=device.type == "cuda")
    return batch.contiguous(memory_format=torch.channels_last) if channels_last and batch.ndim == 4 else batch


def rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    """The random states a resumed run must restore (dropout and the like draw from them)."""
    states = {"rng/torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["rng/cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict[str, torch.Tensor], device: torch.device) -> None:
    if "rng/torch" in states:
        torch.set_rng_state(states["rng/torch"])
    if device.type == "cuda" and "rng/cuda" in states:
        torch.cuda.set_rng_state(states["rng/cuda"], device)
