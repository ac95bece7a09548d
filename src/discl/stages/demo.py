"""`discl demo`: every stage of DisCL, end to end, on the offline digits-lt data."""

from __future__ import annotations

import time

from ..config import RunConfig, save_config
from ..metrics import paper_table
from ..rundir import RunDir
from ..tables import read_table
from .evaluate import run_eval
from .generate import run_generate
from .mine import run_mine
from .prepare import run_prepare
from .quality import class_consistency, clip_zero_shot_accuracy
from .score import run_score
from .train import run_train

DISPLAY_NAMES = {"real-only": "real-only (CE)", "non-adaptive": "DisCL non-adaptive (CE)"}


def run_demo(run: RunDir, cfg: RunConfig, echo=print, progress: bool = True) -> dict:
    start = time.perf_counter()
    save_config(cfg, run.root)
    timings = {}

    def step(name, fn, *args):
        t0 = time.perf_counter()
        echo(f"== {name}")
        out = fn(*args)
        timings[name] = time.perf_counter() - t0
        return out

    step("prepare", run_prepare, run, cfg, echo)
    step("mine", run_mine, run, cfg, echo, progress)
    step("generate", run_generate, run, cfg, echo, progress)
    step("score", run_score, run, cfg, echo, progress)
    zero_shot = clip_zero_shot_accuracy(run, cfg)
    consistency = class_consistency(run, cfg)
    chance = 100 / len(read_table(run.classes, "classes"))
    echo(f"quality: CLIP zero-shot accuracy on the test split {100 * zero_shot:.1f}% (goal >= 80%, chance {chance:.0f}%)")
    echo(
        f"quality: class consistency of the {consistency['n_images']} strength-1.0 images: "
        f"{100 * consistency['base']:.1f}% by the base classifier (goal >= 50%; on real test images of the same "
        f"classes it is right {100 * consistency['base_on_real']:.1f}% of the time), "
        f"{100 * consistency['clip']:.1f}% by CLIP zero-shot; chance {chance:.0f}%"
    )
    step("train", run_train, run, cfg, echo, progress)
    metrics = step("eval", run_eval, run, cfg, lambda *_: None)

    from ..report.build import build_report

    report = step("report", build_report, run)
    wall = time.perf_counter() - start
    shown = metrics.assign(method=metrics["method"].map(lambda m: DISPLAY_NAMES.get(m, m)))
    echo("")
    echo("Top-1 accuracy (%) on the digits-lt test split")
    echo(paper_table(shown))
    echo("")
    echo("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    echo(f"run directory: {run.root}")
    echo(f"report: {report} (open it in a browser)")
    echo(f"wall time: {wall:.0f} s")
    return {"metrics": metrics, "clip_zero_shot": zero_shot, "class_consistency": consistency, "wall_seconds": wall, "timings": timings}
