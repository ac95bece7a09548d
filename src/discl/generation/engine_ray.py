"""The Ray engine: Ray Data ``map_batches`` over the pending plan, one generator per actor
(one actor per GPU, or per CPU worker). Actors write the images; the driver commits each
returned batch's rows, so a crash loses at most the batches in flight. Ray is imported
only here, so the package works without it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .store import PartStore


class GenerateActor:
    """Holds one generator (and, with regenerate on, one scorer) for its whole life."""

    def __init__(self, config: dict, run_root: str, source_paths: dict, source_size: tuple[int, int] | None):
        from ..rundir import RunDir
        from .run_generator import make_worker
        from .sources import SourceImages

        self.run = RunDir(Path(run_root))
        self.generator, self.refine = make_worker(self.run, config)
        multiple = getattr(self.generator, "multiple", 1)  # the VAE's multiple (diffusers)
        self.sources = SourceImages({k: Path(v) for k, v in source_paths.items()}, source_size, multiple=multiple)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from .runner import batches, generate_batch, write_images

        done = []
        for strength, text_guidance, rows in batches(batch, len(batch), self.sources.size_of):
            out, rows = generate_batch(self.generator, self.sources, rows, strength, text_guidance, self.refine)
            write_images(self.run, rows, out)
            done.append(rows)
        return pd.concat(done, ignore_index=True)


def run_plan_ray(run, todo: pd.DataFrame, config: dict, source_paths: dict, source_size, store: PartStore,
                 batch_size: int, workers: int, gpus_per_worker: float = 0.0, address: str | None = None,
                 progress: bool = True) -> int:
    """Make the rows of ``todo`` on a Ray cluster (``address``) or a local Ray started with ``workers`` CPUs."""
    import ray

    if workers < 1:
        raise ValueError(f"generate.ray_workers must be >= 1, got {workers}")
    if not len(todo):
        return 0
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        # One strength and source size per batch as far as possible: sort so each one's rows are contiguous
        # (sizes before rounding to the VAE's multiple: close enough to group, and no model needed here).
        from .sources import SourceImages

        sizes = SourceImages({k: Path(v) for k, v in source_paths.items()}, source_size)
        size_list = [sizes.size_of(s) for s in todo["source_id"]]
        ordered = todo.assign(_width=[w for w, _ in size_list], _height=[h for _, h in size_list])
        ordered = ordered.sort_values(["strength", "text_guidance", "_width", "_height", "source_id", "seed"], kind="stable")
        ordered = ordered.drop(columns=["_width", "_height"]).reset_index(drop=True)
        # One block per batch, so every actor gets work (a single block would go to a single actor).
        blocks = [ordered.iloc[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
        ds = ray.data.from_pandas(blocks).map_batches(
            GenerateActor,
            fn_constructor_kwargs={"config": config, "run_root": str(run.root), "source_paths": source_paths, "source_size": None if source_size is None else tuple(source_size)},
            batch_size=batch_size,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=workers),
            **({"num_gpus": gpus_per_worker} if gpus_per_worker else {"num_cpus": 1}),
        )
        made = 0
        for rows in ds.iter_batches(batch_format="pandas", batch_size=None):
            assert isinstance(rows, pd.DataFrame)  # batch_format="pandas"
            store.commit(rows)
            made += len(rows)
        return made
    finally:
        if started:
            ray.shutdown()
