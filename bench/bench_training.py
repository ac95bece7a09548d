"""Benchmark (not a test): `discl train` and `discl eval` against plain loops written the way timm's
train.py does them, side by side on the same JPEG files, and how their memory grows with the data.

    python bench/bench_training.py                      # CPU: N = 256 training images, 8N for memory
    python bench/bench_training.py --n 5000 --device cuda --precision bf16 --batch-size 128 --workers 16

What runs, each in its own process (so peak memory is its own):
1. A long-tailed image folder of JPEGs (ImageNet-like 500x375 photos of smooth noise) is written once,
   with N training images and N/2 test images, plus 8N / 4N for the memory runs.
2. Throughput at N, alternating `--repeats` times (best run of each counts): one epoch of
   `discl train` (real-only, the given timm model, AdamW, batch, 224 px, the recipe's train transform
   RandomResizedCrop + flip + colour jitter) against the plain loop (timm.data.ImageDataset +
   torch DataLoader with the same workers + the same transform, model, optimiser and batch;
   loss read only at the end). Then `discl eval` against a plain evaluation loop. Each side's time
   covers its epoch (data loader start-up included, process start-up and model creation not).
   On an NVIDIA GPU also how busy the GPU was (NVML's utilisation, over the span it was in use).
3. Peak memory of `discl train` and `discl eval` at N and at 8N images (growth with the rows), and of
   `discl train` over 1 and 8 epochs of N (growth with the steps): the sum of the proportional set size
   (PSS) over the process and its DataLoader workers, the RSS of the largest process and of the main
   process, sampled every 0.1 s. `--memory-only` runs only these.

Goals: discl >= 0.9x the plain loop's images/s; memory growth from N to 8N and from 1 to 8 epochs <= 15%.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "src"))  # discl from this checkout, also where it is not installed
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)


# -- data ---------------------------------------------------------------------------------------
def write_folder(root: Path, n_train: int, n_test: int, classes: int = 10, seed: int = 0) -> None:
    """root/train/<class>/*.jpg (long-tailed) and root/test/<class>/*.jpg (balanced); skipped if there."""
    from PIL import Image

    done = root / ".complete"
    if done.exists():
        return
    rng = np.random.default_rng(seed)
    weights = 0.9 ** np.arange(classes)
    train_counts = np.maximum(1, np.floor(n_train * weights / weights.sum())).astype(int)
    train_counts[0] += n_train - train_counts.sum()
    test_counts = [n_test // classes + (1 if c < n_test % classes else 0) for c in range(classes)]
    for split, counts in (("train", train_counts), ("test", test_counts)):
        for c, count in enumerate(counts):
            folder = root / split / f"class {c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(int(count)):
                low = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
                image = Image.fromarray(low).resize((500, 375), Image.Resampling.BICUBIC)
                noise = rng.integers(-12, 13, (375, 500, 3))
                pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{split}_{c}_{i:06d}.jpg", quality=90)
    done.write_text("ok")


# -- memory of a process tree ---------------------------------------------------------------------
class PeakMemory:
    """Peaks of a process and its children (DataLoader workers), sampled in a thread: the summed PSS
    (``peak``), the RSS of the largest process (``peak_rss``: what /usr/bin/time reports for one process)
    and the main process's own RSS (``main_rss``)."""

    def __init__(self, pid: int, every: float = 0.1):
        import psutil

        self.proc, self.every, self.peak, self.peak_rss, self.main_rss = psutil.Process(pid), every, 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                for p in [self.proc, *self.proc.children(recursive=True)]:
                    try:
                        info = p.memory_full_info()
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                    total += info.pss
                    self.peak_rss = max(self.peak_rss, info.rss)
                    if p.pid == self.proc.pid:
                        self.main_rss = max(self.main_rss, info.rss)
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


class GpuBusy:
    """GPU utilisation (NVML, the percentage nvidia-smi shows) sampled in a thread while a process runs.
    Its mean is taken over the span from the first to the last busy sample, the same rule for both sides,
    so process start-up (no GPU work yet) does not count. None where NVML is not there (no NVIDIA GPU)."""

    def __init__(self, every: float = 0.05):
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._read = lambda: pynvml.nvmlDeviceGetUtilizationRates(self._handle).gpu
        except Exception:  # no NVML, no NVIDIA GPU: nothing to sample
            self._read = None
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while self._read is not None and not self._stop.is_set():
            self.samples.append(int(self._read()))
            self._stop.wait(0.05)

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        busy = [i for i, u in enumerate(self.samples) if u > 0]
        return float(np.mean(self.samples[busy[0] : busy[-1] + 1])) if busy else None


def run_measured(cmd: list[str]) -> tuple[dict, int]:
    """The side's JSON result (with its memory peaks: ``peak_rss``, ``main_rss``) and its summed PSS peak."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watch = PeakMemory(proc.pid)
    gpu = GpuBusy() if "cuda" in cmd else None
    out, err = proc.communicate()
    peak = watch.stop()
    busy = gpu.stop() if gpu else None
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{err[-3000:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "gpu_busy": busy, "peak_rss": watch.peak_rss,
            "main_rss": watch.main_rss}, peak


# -- the two sides, each run as `python bench_training.py --side ...` ------------------------------------
def _settings(args) -> list[str]:
    return [
        "train.methods=[real-only]", f"train.classifier.epochs={args.epochs}", f"train.classifier.model={args.model}",
        f"train.classifier.batch_size={args.batch_size}", "train.classifier.optimizer=adamw",
        "train.classifier.lr=0.001", "train.classifier.weight_decay=0.0001", "train.classifier.warmup_epochs=0",
        f"train.classifier.augment.input_size={args.size}", "train.classifier.augment.crop_pct=0.875",
        f"train.classifier.augment.scale=[{SCALE[0]},{SCALE[1]}]", f"train.classifier.augment.ratio=[{RATIO[0]},{RATIO[1]}]",
        "train.classifier.augment.hflip=0.5", "train.classifier.augment.color_jitter=0.4",
        "train.classifier.augment.interpolation=bilinear", f"train.device={args.device}", f"train.precision={args.precision}",
        f"train.num_workers={args.workers}", f"eval.device={args.device}", f"eval.precision={args.precision}",
        f"eval.num_workers={args.workers}", f"eval.eval_batch_size={args.batch_size}", "train.resume=false",
        f"mine.base.augment.input_size={args.size}",
    ]


def side_discl(args) -> dict:
    import pandas as pd
    import torch

    from discl.cli import main

    run = Path(args.run)
    sets = [x for s in _settings(args) for x in ("--set", s)]
    if args.what == "train":
        main(["train", str(run), "--no-progress", *sets], standalone_mode=False)
        log = pd.read_parquet(run / "train" / "real-only" / "log.parquet")
        seconds, images = float(log["seconds"].sum()), int(log["n_seen"].sum())
    else:
        from discl.config import load_config
        from discl.rundir import RunDir
        from discl.stages.evaluate import load_task, predict_split

        rd = RunDir(run)
        cfg = load_config(rd.root, None, _settings(args))
        dataset = pd.read_parquet(rd.dataset)
        rows = dataset[dataset["split"] == "test"].reset_index(drop=True)
        task = load_task(rd.method_dir("real-only"))
        start = time.perf_counter()
        predict_split(rd, cfg, {"real-only": task}, rows, "test", echo=lambda *_: None)
        seconds, images = time.perf_counter() - start, len(rows)
    memory = torch.cuda.max_memory_allocated() if torch.cuda.is_available() and args.device != "cpu" else 0
    return {"seconds": seconds, "images": images, "gpu_bytes": memory}


def side_plain(args) -> dict:
    """timm's train.py in miniature: ImageDataset + DataLoader + create_transform + AMP autocast."""
    import timm
    import torch
    from timm.data import ImageDataset, create_transform, resolve_data_config

    device = torch.device("cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else args.device
                          if args.device != "auto" else "cpu")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    root = Path(args.root)
    labels = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    class_map = {name: i for i, name in enumerate(labels)}
    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=len(labels)).to(device)
    cfg = resolve_data_config({"input_size": (3, args.size, args.size), "crop_pct": 0.875, "interpolation": "bilinear"},
                              model=model)
    common = dict(input_size=cfg["input_size"], interpolation="bilinear", mean=cfg["mean"], std=cfg["std"])
    loader_kw = dict(batch_size=args.batch_size, num_workers=args.workers, pin_memory=device.type == "cuda",
                     persistent_workers=args.workers > 0)
    if args.what == "train":
        transform = create_transform(**common, is_training=True, scale=SCALE, ratio=RATIO, hflip=0.5, color_jitter=0.4)
        dataset = ImageDataset(str(root / "train"), class_map=class_map, transform=transform)
        loader = torch.utils.data.DataLoader(dataset, shuffle=True, drop_last=False, **loader_kw)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")
        model.train()
        start = time.perf_counter()
        total = torch.zeros((), device=device)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.detach()
        total.item()
        images = len(dataset)
    else:
        transform = create_transform(**common, is_training=False, crop_pct=0.875)
        dataset = ImageDataset(str(root / "test"), class_map=class_map, transform=transform)
        loader = torch.utils.data.DataLoader(dataset, shuffle=False, **loader_kw)
        model.eval()
        start = time.perf_counter()
        preds = []
        with torch.no_grad():
            for x, _ in loader:
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    preds.append(model(x.to(device, non_blocking=True)).argmax(-1))
        torch.cat(preds).cpu()
        images = len(dataset)
    seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    return {"seconds": seconds, "images": images, "gpu_bytes": memory}


# -- the benchmark ------------------------------------------------------------------------------------------
def prepare_run(root: Path, run: Path, args) -> None:
    from discl.cli import main

    main(["prepare", str(run), "--set", "data.name=image-folder", "--set", f"data.root={root}",
          "--set", f"data.image_size={args.size}"], standalone_mode=False)


def trained(run: Path, args, what: str) -> tuple[dict, int]:
    base = [sys.executable, str(HERE), "--side", "discl", "--what", what, "--run", str(run)]
    return run_measured(base + _passthrough(args))


def _passthrough(args) -> list[str]:
    return ["--model", args.model, "--batch-size", str(args.batch_size), "--size", str(args.size), "--device", args.device,
            "--precision", args.precision, "--workers", str(args.workers), "--epochs", str(args.epochs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256, help="training images of the throughput runs (8N for memory)")
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: usable cores)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the 8N and 8-epoch memory runs")
    parser.add_argument("--memory-only", action="store_true", help="only the memory runs (no throughput comparison)")
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "discl-bench-training")
    parser.add_argument("--side", choices=["discl", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--what", choices=["train", "eval"], default="train", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workers is None:
        args.workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if args.side:
        print(json.dumps(side_discl(args) if args.side == "discl" else side_plain(args)))
        return

    sizes = [args.n] + ([] if args.no_memory else [8 * args.n])
    for n in sizes:
        write_folder(args.data / f"images-{n}", n, max(16, n // 2))
        prepare_run(args.data / f"images-{n}", args.data / f"run-{n}", args)
    print(f"{args.model}, {args.size} px, batch {args.batch_size}, {args.workers} workers, {args.device}, {args.precision}")
    n = args.n
    root, run = args.data / f"images-{n}", args.data / f"run-{n}"
    plain = [sys.executable, str(HERE), "--side", "plain", "--root", str(root)] + _passthrough(args)
    results: dict[str, list[dict]] = {}
    memory: dict[tuple[str, int], int] = {}
    for what in ("train", "eval") if not args.memory_only else ():
        for _ in range(args.repeats):
            d, peak = trained(run, args, what)
            memory[(what, n)] = max(memory.get((what, n), 0), peak)
            p, _ = run_measured(plain + ["--what", what])
            results.setdefault(f"discl {what}", []).append(d)
            results.setdefault(f"plain {what}", []).append(p)
    for what in ("train", "eval") if not args.memory_only else ():
        best = {side: max(results[f"{side} {what}"], key=lambda r: r["images"] / r["seconds"]) for side in ("discl", "plain")}
        rate = {side: r["images"] / r["seconds"] for side, r in best.items()}
        gpu = "".join(f", {side} GPU peak {r['gpu_bytes'] / 2**30:.2f} GiB" for side, r in best.items() if r["gpu_bytes"])
        gpu += "".join(f", {side} GPU busy {r['gpu_busy']:.0f}%" for side, r in best.items() if r.get("gpu_busy") is not None)
        print(f"{what:5s} {best['discl']['images']} images: discl {rate['discl']:.1f} images/s, plain loop {rate['plain']:.1f} images/s, "
              f"ratio {rate['discl'] / rate['plain']:.2f} (goal >= 0.9){gpu}")
    if len(sizes) > 1:
        big = sizes[1]
        peaks: dict[tuple[str, str], tuple[dict, int]] = {}
        for what in ("train", "eval"):
            for label, folder, epochs in (("N", run, 1), ("8N", args.data / f"run-{big}", 1), ("8 epochs", run, 8)):
                if what == "eval" and label == "8 epochs":
                    continue  # eval has no epochs
                peaks[(what, label)] = trained(folder, argparse.Namespace(**{**vars(args), "epochs": epochs}), what)
        for what in ("train", "eval"):
            a, b = peaks[(what, "N")], peaks[(what, "8N")]
            scale = "" if what == "train" else " (test images: half as many)"
            print(f"{what:5s} rows:  {n} -> {big} images{scale}: " + _growth(a, b))
        print(f"train steps: 1 -> 8 epochs of {n} images: " + _growth(peaks[("train", "N")], peaks[("train", "8 epochs")]))


def _growth(a: tuple[dict, int], b: tuple[dict, int]) -> str:
    """Peak memory of two measured runs and its growth from ``a`` to ``b`` (goal <= 15% each)."""
    (ra, pa), (rb, pb) = a, b
    parts = [f"PSS of process + workers {pa / 2**20:.0f} -> {pb / 2**20:.0f} MiB ({100 * (pb / pa - 1):+.1f}%)"]
    for key, name in (("peak_rss", "RSS of the largest process"), ("main_rss", "RSS of the main process")):
        parts.append(f"{name} {ra[key] / 2**20:.0f} -> {rb[key] / 2**20:.0f} MiB ({100 * (rb[key] / ra[key] - 1):+.1f}%)")
    return "; ".join(parts) + " (goal <= 15%)"


if __name__ == "__main__":
    main()
