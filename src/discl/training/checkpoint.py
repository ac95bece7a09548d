"""Training checkpoints as one safetensors file: model and optimiser tensors, RNG states, and every
non-tensor piece of state (epoch, step, curriculum state, logs, gradient-scaler state) as JSON in the
file's metadata. No pickle."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim/{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}/{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(path: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    rng: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write atomically (temp file, fsync, rename): a crash never leaves half a checkpoint."""
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    optim_tensors, optim_meta = _optimizer_tensors(optimizer)
    tensors |= optim_tensors
    tensors |= {k: v.cpu() for k, v in rng.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"state": json.dumps(meta | {"optimizer": optim_meta})})
    return path


class DamagedCheckpoint(ValueError):
    """A checkpoint file that cannot be read (truncated, overwritten): the message names it."""


def checkpoint_meta(path: Path) -> dict:
    """The JSON state of a checkpoint, from the file's header only (no tensor is read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads(f.metadata()["state"])
    except (SafetensorError, ValueError, KeyError, TypeError) as err:
        raise DamagedCheckpoint(f"{path} cannot be read ({' '.join(str(err).split())})") from None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, ValueError, KeyError, TypeError) as err:
        raise DamagedCheckpoint(f"{path} cannot be read ({' '.join(str(err).split())})") from None
    return tensors, meta


def restore(tensors: dict[str, torch.Tensor], meta: dict, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load model and optimiser state; return the RNG tensors for the caller to set."""
    module.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["optimizer"]["scalars"].items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    return {k: v for k, v in tensors.items() if k.startswith("rng/")}
