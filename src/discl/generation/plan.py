"""The spectrum plan: one row per synthetic image to make (hard sample x strength x seed)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import pandas as pd

from ..prompts import PromptBank
from ..seeding import stable_seed


def image_guidance(strength: float) -> int:
    """lambda = 1 - s as an integer percent; 100 means the real image itself."""
    return 100 - int(round(100 * strength))


def source_folder(source_id: str) -> str:
    """A file-system-safe, unique folder name for any sample id (ids may hold slashes, spaces, unicode)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", source_id).strip("._")[-48:] or "source"
    return f"{slug}-{hashlib.sha1(source_id.encode()).hexdigest()[:8]}"


def image_fingerprint(settings_digest: str, prompt: str, noise_seed: int) -> str:
    """What decides one image: the generation settings (as a digest), its planned prompt and noise seed
    (which holds the source, strength, grid seed, text guidance and generator)."""
    return hashlib.sha1(f"{settings_digest}|{noise_seed}|{prompt}".encode()).hexdigest()[:16]


def plan_spectrum(
    hard: pd.DataFrame,
    strengths: Sequence[float],
    seeds: Sequence[int],
    text_guidance: float,
    prompts: PromptBank,
    generator_name: str,
    settings_digest: str = "",
) -> pd.DataFrame:
    """Rows in the synthetic table's schema, one per (hard sample, strength, seed). ``settings_digest``
    stands for the generation settings that are not in the rows (steps, model weights, ...)."""
    bad = [s for s in strengths if not 0.0 < s <= 1.0]
    if bad:
        raise ValueError(f"strengths must lie in (0, 1], got {bad}")
    if len(set(strengths)) != len(strengths) or len(set(seeds)) != len(seeds):
        raise ValueError(f"strengths and seeds must not repeat: {list(strengths)}, {list(seeds)}")
    rows = []
    for source in hard.itertuples(index=False):
        folder = source_folder(str(source.sample_id))
        label = int(str(source.label))
        for strength in strengths:
            guidance = image_guidance(strength)
            for seed in seeds:
                prompt = prompts.prompt(str(source.class_name), seed, label)
                # What identifies the image, and nothing else, decides its noise.
                noise_seed = stable_seed(source.sample_id, float(strength), int(seed), float(text_guidance), generator_name)
                rows.append(
                    {
                        "synthetic_id": f"{source.sample_id}|g{guidance:03d}|seed{seed}",
                        "source_id": source.sample_id,
                        "label": source.label,
                        "class_name": source.class_name,
                        "prompt": prompt,
                        "strength": float(strength),
                        "image_guidance": guidance,
                        "text_guidance": float(text_guidance),
                        "seed": int(seed),
                        "noise_seed": noise_seed,
                        "generator": generator_name,
                        "path": f"synthetic/{folder}/g{guidance:03d}_seed{seed}.png",
                        "attempts": 1,
                        "gen_text_sim": float("nan"),
                        "fingerprint": image_fingerprint(settings_digest, prompt, noise_seed),
                    }
                )
    return pd.DataFrame(rows)
