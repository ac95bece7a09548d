"""Dataset adapters, each turning its source into the run directory's dataset table.

An adapter is a module that registers a builder with ``@datasets.register`` (discl.registry);
``prepare_dataset`` (data/prepare.py) runs the one data.name names. The names below are imported
on first use, so that importing an adapter module (to list the registry) stays light."""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "prepare_dataset": "prepare", "load_dataset_tables": "prepare", "foundation_rows": "prepare", "load_split": "prepare",
    "DatasetError": "image_folder",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
