"""Image guidance levels with one meaning across models (``generate.level_scale``).

A level is a strength s in (0, 1] (image guidance 1 - s). With ``strength`` the pipeline gets s as it
is, the reference's meaning; the same s is then a different amount of noise on every model (a flow
model's schedule, and FLUX's shift that grows with the image size, start far noisier). With ``noise``
s means the noise Stable Diffusion starts from at strength s: the timestep the SD / SDXL-refiner
img2img pipeline starts at with 50 steps, as the noise level ``sigma`` of the flow-matching
parametrisation ``x_t = (1 - sigma) x_0 + sigma eps`` that has the same signal-to-noise ratio
(SD: ``x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps``, so ``sigma = sqrt(1 - abar) / (sqrt(abar) + sqrt(1 - abar))``).
Each model then starts from the step of its own schedule (its scheduler, steps and shift at the
working size) whose noise is nearest that target.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

LEVEL_SCALES = ("strength", "noise")
#: The schedule levels are read on under "noise": the SD 1.x/2.x, SDXL and SDXL-refiner training
#: schedule (scaled-linear betas 0.00085..0.012 over 1000 steps), "leading" spacing with offset 1 as
#: their schedulers are configured, at the pipelines' default 50 steps.
REFERENCE_STEPS = 50


def sigma_of_alpha_bar(alpha_bar: float) -> float:
    """The flow-matching sigma with the signal-to-noise ratio of a DDPM-style ``alpha_bar``."""
    signal, noise = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
    return noise / (signal + noise)


@functools.cache
def _reference_schedule() -> tuple[tuple[int, ...], tuple[float, ...]]:
    from diffusers import EulerDiscreteScheduler

    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   timestep_spacing="leading", steps_offset=1)
    sched.set_timesteps(REFERENCE_STEPS)
    return tuple(int(t) for t in sched.timesteps), tuple(float(a) for a in sched.alphas_cumprod)


def reference_noise(level: float) -> float:
    """The sigma SD starts from at strength ``level`` with 50 steps (see the module docstring)."""
    steps = min(int(REFERENCE_STEPS * level), REFERENCE_STEPS)  # as StableDiffusionImg2ImgPipeline.get_timesteps
    if not 0 < level <= 1 or steps < 1:
        raise ValueError(f"level (strength) {level} leaves no denoising step on the reference schedule "
                         f"({REFERENCE_STEPS} steps); use a strength >= {1 / REFERENCE_STEPS}")
    timesteps, alphas_cumprod = _reference_schedule()
    return sigma_of_alpha_bar(alphas_cumprod[timesteps[REFERENCE_STEPS - steps]])


def nearest(sigmas: Sequence[float], target: float) -> int:
    """The index of the sigma nearest ``target`` (the earlier, noisier one on a tie)."""
    return min(range(len(sigmas)), key=lambda k: (abs(sigmas[k] - target), k))
