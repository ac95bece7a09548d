"""bench/gpu/bench_generation_gpu.py runs only on GPUs; its --smoke mode (toy widths, CPU) keeps its code
path working here: every measurement it reports, appended to one JSON file across runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_generation_benchmark_runs_every_measurement_in_smoke_mode(tmp_path):
    out = tmp_path / "generation.json"
    for model in ("sd15", "sdxl-refiner"):
        cmd = [sys.executable, str(ROOT / "bench" / "gpu" / "bench_generation_gpu.py"), "--smoke", "--model", model,
               "--measure", "reference", "engine", "unet", "spectrum", "--spectrum-batch", "4", "--out", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    for model in ("sd15", "sdxl-refiner"):
        mine = [r for r in rows if r["model"] == model]  # the second run kept the first one's rows
        assert [r["measure"] for r in mine] == ["reference", "engine", "engine", "unet", "unet", "unet", "unet", "spectrum"]
        assert [r["batch"] for r in mine if r["measure"] == "engine"] == [2, 4]
        assert all(r["images_per_s"] > 0 for r in mine if "images_per_s" in r)
        spectrum = mine[-1]
        # 2 hard images x 10 strengths x 2 seeds, scaled to the paper's 8 seeds per hard image
        assert spectrum["outputs"] == 40 and spectrum["seconds_per_hard_image_80"] == spectrum["seconds"] / 2 * 8 / 2
