"""CPU benchmark: the batched diffusers engine vs. a reference-style loop, side by side in one run.

Reference style = what the DisCL reference code does: one plain pipeline call per
(source image, strength, seed), batch size 1. Both make the same plan with the same
per-output noise seeds on the same tiny random pipeline; the script prints images/s of
each, the ratio, and how far the outputs differ.

    PYTHONPATH=src python bench/bench_generation.py                  # tiny SD, 8 sources x 10 strengths x 2 seeds
    PYTHONPATH=src python bench/bench_generation.py --kind sdxl-refiner --batch-size 16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from discl.config import GeneratorConfig
from discl.generation.factory import create_generator
from discl.generation.plan import plan_spectrum
from discl.generation.runner import batches
from discl.generation.tiny import save_tiny_pipeline
from discl.prompts import PromptBank


class UNetTimer:
    """Wall time spent inside the UNet's forward, the number of calls and of samples they processed."""

    @dataclass
    class Totals:
        seconds: float = 0.0
        calls: int = 0
        samples: int = 0

        @property
        def mean_batch(self) -> float:
            return self.samples / max(self.calls, 1)

    def __init__(self, unet: torch.nn.Module):
        self.totals = self.Totals()
        self._start = 0.0
        unet.register_forward_pre_hook(self._before)
        unet.register_forward_hook(self._after)

    def _before(self, module, args):
        self._start = time.perf_counter()

    def _after(self, module, args, output):
        self.totals.seconds += time.perf_counter() - self._start
        self.totals.calls += 1
        self.totals.samples += len(args[0])

    def take(self) -> UNetTimer.Totals:
        out, self.totals = self.totals, self.Totals()
        return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=["sd", "sdxl", "sdxl-refiner"], default="sd")
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--strengths", type=int, default=10, help="0.1, 0.2, ... up to this many tenths")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--text-guidance", type=float, default=7.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each loop, taking turns; the best time counts")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_tiny_pipeline(args.kind, Path(tmp) / args.kind)
        cfg = GeneratorConfig(backend="diffusers", model=str(folder), inference_steps=args.steps)
        gen = create_generator(cfg)
        images = torch.randint(0, 256, (args.sources, 3, args.size, args.size), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(0))
        hard = pd.DataFrame({"sample_id": [f"s{i}" for i in range(args.sources)], "label": [i % 3 for i in range(args.sources)],
                             "class_name": [f"class {i % 3}" for i in range(args.sources)]})
        sources = dict(zip(hard.sample_id, images))
        strengths = [round(0.1 * i, 1) for i in range(1, args.strengths + 1)]
        seeds = [10, 20, 30, 40, 42, 50, 60, 70][: args.seeds]
        plan = plan_spectrum(hard, strengths, seeds, args.text_guidance, PromptBank("a photo of {name}"), gen.name)
        print(f"{args.kind}: {len(plan)} images ({args.sources} sources x {len(strengths)} strengths x {len(seeds)} seeds), "
              f"{args.size}x{args.size}, {args.steps} steps, guidance {args.text_guidance}, {args.threads} threads")

        # warm-up: one call of each kind, so neither pays first-call costs
        gen.reference_call(images[:1], "warm up", 0.5, args.text_guidance, 0)
        gen.img2img(images[:2], [0, 0], ["warm up"] * 2, 0.5, args.text_guidance, [0, 1])
        gen._prompts.clear()
        gen._posteriors.clear()

        def run_naive():
            return {row.synthetic_id: gen.reference_call(sources[row.source_id][None], row.prompt, row.strength,
                                                         row.text_guidance, row.noise_seed)[0] for row in plan.itertuples()}

        def run_batched():
            gen._prompts.clear()  # every run starts with nothing encoded
            gen._posteriors.clear()
            out = {}
            for strength, text_guidance, rows in batches(plan, args.batch_size):
                images_out = gen.img2img(torch.stack([sources[s] for s in rows.source_id]), rows.label.tolist(),
                                         rows.prompt.tolist(), strength, text_guidance, rows.noise_seed.tolist())
                out.update(zip(rows.synthetic_id, images_out))
            return out

        # The two loops take turns, --repeats times each; the best run of each counts (the least disturbed).
        unet_time = UNetTimer(gen.pipe.unet)
        best = {"naive": (float("inf"), None), "batched": (float("inf"), None)}
        outputs = {}
        for _ in range(args.repeats):
            for name, loop in (("naive", run_naive), ("batched", run_batched)):
                t0 = time.perf_counter()
                result = loop()
                elapsed, unet = time.perf_counter() - t0, unet_time.take()
                if elapsed < best[name][0]:
                    best[name] = (elapsed, unet)
                outputs[name] = result
        (t_naive, unet_naive), (t_batched, unet_batched) = best["naive"], best["batched"]
        naive, batched = outputs["naive"], outputs["batched"]

    diff = torch.stack([(naive[k].int() - batched[k].int()).abs() for k in plan.synthetic_id])
    n = len(plan)
    print(f"reference-style loop (batch 1, one pipeline call per image): {n / t_naive:8.1f} images/s ({t_naive:.1f} s)")
    print(f"batched engine (batch size {args.batch_size}):                    {n / t_batched:8.1f} images/s ({t_batched:.1f} s)")
    print(f"speed-up: {t_naive / t_batched:.2f}x")
    print(f"time in UNet forward passes: reference loop {unet_naive.seconds:.1f} s in {unet_naive.calls} calls of batch "
          f"{unet_naive.mean_batch:.0f}, engine {unet_batched.seconds:.1f} s in {unet_batched.calls} calls of batch "
          f"{unet_batched.mean_batch:.0f} ({100 * unet_batched.seconds / t_batched:.0f}% of its time); both make "
          f"{unet_naive.samples} UNet sample evaluations, so even with everything else free the engine could reach at most "
          f"{t_naive / unet_batched.seconds:.2f}x on this machine")
    print(f"outputs match: max |diff| = {int(diff.max())} of 255, {float((diff > 0).float().mean()) * 100:.4f}% of values differ "
          f"({'yes' if int(diff.max()) <= 1 else 'NO'}, tolerance 1 level)")


if __name__ == "__main__":
    main()
