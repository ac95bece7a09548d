"""A small class-conditional pixel-space diffusion model built from diffusers parts.

It stands in for Stable Diffusion in the offline demo: a ``UNet2DModel`` with a
class embedding (one extra "null" class for classifier-free guidance), trained
with the DDPM objective on a cosine schedule, and sampled with DDIM. Images
are moved into the model's small sample space (``sample_size``, ``channels``)
and back, the way Stable Diffusion moves them through its VAE.
Image-guided generation is SDEdit: noise the source to strength s, then denoise.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from tqdm.auto import tqdm

from ..artefacts import load_weights, read_meta, save_pretrained
from .base import check_request

#: Images denoised per UNet call (x2 for guidance): always this many, see img2img.
UNET_CHUNK = 16


def _pad(t: torch.Tensor, n: int) -> torch.Tensor:
    """``t`` with ``n`` zero rows appended (the padding of a chunk; its outputs are dropped)."""
    return torch.cat([t, t.new_zeros((n, *t.shape[1:]))]) if n else t


@dataclass
class PixelDiffusionSpec:
    num_classes: int
    sample_size: int = 8
    channels: int = 1
    block_out_channels: tuple[int, ...] = (32, 64)


def build_unet(spec: PixelDiffusionSpec) -> UNet2DModel:
    levels = len(spec.block_out_channels)
    return UNet2DModel(
        sample_size=spec.sample_size,
        in_channels=spec.channels,
        out_channels=spec.channels,
        block_out_channels=tuple(spec.block_out_channels),
        layers_per_block=1,
        down_block_types=("DownBlock2D",) * levels,
        up_block_types=("UpBlock2D",) * levels,
        num_class_embeds=spec.num_classes + 1,  # the last class id is "no class", for guidance
        norm_num_groups=8,
    )


def training_scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True)


class PixelDiffusionGenerator:
    def __init__(self, unet: UNet2DModel, scheduler_config: dict, spec: PixelDiffusionSpec, inference_steps: int = 25):
        self.unet = unet.eval()
        self.scheduler_config = dict(scheduler_config)
        self.spec = spec
        self.inference_steps = inference_steps
        self.name = f"pixel-diffusion/{spec.sample_size}px-{spec.channels}ch"

    # moving images into the sample space and back
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        if self.spec.channels == 1:
            x = x.mean(1, keepdim=True)
        if x.shape[-1] != self.spec.sample_size:
            x = F.interpolate(x, size=(self.spec.sample_size,) * 2, mode="area")
        return x * 2 - 1

    def decode(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = (x.clamp(-1, 1) + 1) / 2
        if tuple(x.shape[-2:]) != size:
            # The inverse of encode's area pooling: exact for images that are upsampled samples.
            x = F.interpolate(x, size=size, mode="nearest-exact")
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return (x * 255).round().clamp(0, 255).to(torch.uint8)

    @torch.no_grad()
    def img2img(
        self,
        images: torch.Tensor,
        labels: Sequence[int],
        prompts: Sequence[str],
        strength: float,
        text_guidance: float,
        noise_seeds: Sequence[int],
    ) -> torch.Tensor:
        check_request(strength, images=images, labels=labels, noise_seeds=noise_seeds)
        x0 = self.encode(images)
        noise = torch.stack(
            [torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(int(s))) for s in noise_seeds]
        )
        cond = torch.as_tensor(list(labels), dtype=torch.long)
        # Fixed-size chunks, the last one padded: CPU kernels are chosen by tensor shape and may sum in
        # another order for another batch size, so only one shape makes every image bitwise the same
        # whatever batch it comes in (a lone image repaired on resume included).
        out = []
        for start in range(0, len(x0), UNET_CHUNK):
            part = slice(start, start + UNET_CHUNK)
            n = len(x0[part])
            pad = UNET_CHUNK - n
            out.append(self._denoise(_pad(x0[part], pad), _pad(noise[part], pad), _pad(cond[part], pad), strength, text_guidance)[:n])
        return self.decode(torch.cat(out), (images.shape[-2], images.shape[-1]))

    def _denoise(self, x0: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor, strength: float, text_guidance: float) -> torch.Tensor:
        scheduler = DDIMScheduler.from_config(self.scheduler_config)
        scheduler.set_timesteps(self.inference_steps)
        # As diffusers' img2img pipelines: skip the first (1 - strength) of the denoising steps.
        n_steps = min(max(int(self.inference_steps * strength), 1), self.inference_steps)
        timesteps = scheduler.timesteps[self.inference_steps - n_steps :]
        x = scheduler.add_noise(x0, noise, timesteps[:1].repeat(len(x0)))
        null = torch.full_like(cond, self.spec.num_classes)
        for t in timesteps:
            out = self.unet(torch.cat([x, x]), t, class_labels=torch.cat([cond, null])).sample
            out_cond, out_null = out.chunk(2)
            guided = out_null + text_guidance * (out_cond - out_null)
            x = scheduler.step(guided, t, x).prev_sample
        return x

    # persistence: one safetensors file and the UNet's diffusers config in the metadata (discl/artefacts.py)
    def save(self, folder: Path, extra: dict | None = None) -> None:
        # The UNet's own arguments; diffusers' bookkeeping keys ("_name_or_path", ...) say nothing about the model.
        unet = {k: v for k, v in self.unet.config.items() if not k.startswith("_")}
        config = {"spec": asdict(self.spec), "scheduler": self.scheduler_config, "unet": unet, **(extra or {})}
        save_pretrained(folder, "pixel-diffusion", self.unet.state_dict(), config, weights="unet.safetensors")

    @classmethod
    def load(cls, folder: Path, inference_steps: int = 25) -> PixelDiffusionGenerator:
        folder = Path(folder)
        meta = read_meta(folder)
        if meta["kind"] != "pixel-diffusion":
            raise FileNotFoundError(f"no pixel-diffusion generator in {folder} (it holds a {meta['kind']} model)")
        config = meta["config"]
        spec = PixelDiffusionSpec(**{**config["spec"], "block_out_channels": tuple(config["spec"]["block_out_channels"])})
        if "legacy" in meta:  # an earlier version's layout: diffusers' save_pretrained folder unet/
            unet = UNet2DModel.from_pretrained(folder / meta["weights"], local_files_only=True)
        else:
            # Built at random weights and then filled: the global RNG is left as it was, as from_pretrained leaves it.
            with torch.random.fork_rng(devices=[]):
                unet = UNet2DModel.from_config(config["unet"])
            unet.load_state_dict(load_weights(folder, meta))
        return cls(unet, config["scheduler"], spec, inference_steps)


def train_pixel_diffusion(
    images: torch.Tensor,
    labels: torch.Tensor,
    spec: PixelDiffusionSpec,
    steps: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    label_dropout: float = 0.1,
    inference_steps: int = 25,
    progress: bool = True,
) -> PixelDiffusionGenerator:
    """Fit the denoiser on (images, labels) and return a generator that samples from its EMA weights."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    unet = build_unet(spec)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    scheduler = training_scheduler()
    helper = PixelDiffusionGenerator(unet, scheduler.config, spec)
    data = helper.encode(images)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    unet.train()
    for step in tqdm(range(steps), desc="train generator", disable=not progress, leave=False):
        idx = torch.randint(0, len(data), (batch_size,), generator=generator)
        x0 = data[idx]
        cls = labels[idx].clone()
        cls[torch.rand(batch_size, generator=generator) < label_dropout] = spec.num_classes
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        loss = F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t, class_labels=cls).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), unet.parameters()):
                p_ema.lerp_(p, 1 - decay)
    return PixelDiffusionGenerator(ema, dict(scheduler.config), spec, inference_steps)
