"""Regenerate-until-good (the paper's ImageNet-LT recipe): while an image's text similarity to its
class caption is <= a threshold, draw it again with another prompt of the class and another noise
seed, up to ``tries`` more times, and keep the best draw.

Attempt k of an output uses the prompt ``prompts.prompt(class, stable_seed(seed, "retry", k))`` and
the noise seed ``stable_seed(noise_seed, "retry", k)``: it depends only on that output, so results
do not depend on batches, shards or workers either.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch

from ..prompts import PromptBank
from ..scoring.base import Scorer
from ..seeding import stable_seed
from .base import Generator


def retry_seed(seed: int, attempt: int) -> int:
    return stable_seed(int(seed), "retry", int(attempt))


class Regenerator:
    def __init__(self, scorer: Scorer, prompts: PromptBank, captions: Mapping[int, str], threshold: float, tries: int):
        if tries < 0:
            raise ValueError(f"regenerate_tries must be >= 0, got {tries}")
        self.scorer = scorer
        self.prompts = prompts
        self.captions = dict(captions)
        self.threshold = threshold
        self.tries = tries
        self._caption_embeddings: dict[int, torch.Tensor] = {}

    def text_similarity(self, images: torch.Tensor, labels: list[int]) -> torch.Tensor:
        missing = sorted({int(y) for y in labels} - set(self._caption_embeddings))
        if missing:
            unknown = [y for y in missing if y not in self.captions]
            if unknown:
                raise ValueError(f"no caption for labels {unknown}")
            for y, e in zip(missing, self.scorer.embed_texts([self.captions[y] for y in missing])):
                self._caption_embeddings[y] = e
        texts = torch.stack([self._caption_embeddings[int(y)] for y in labels])
        return (self.scorer.embed_images(images).float() * texts.float()).sum(-1)

    def __call__(self, generator: Generator, images: torch.Tensor, rows: pd.DataFrame, strength: float,
                 text_guidance: float, out: torch.Tensor) -> tuple[torch.Tensor, pd.DataFrame]:
        rows = rows.copy()
        labels = rows["label"].tolist()
        best, best_sim = out.clone(), self.text_similarity(out, labels)
        attempts = torch.ones(len(rows), dtype=torch.int32)
        prompts, seeds = rows["prompt"].tolist(), rows["noise_seed"].tolist()
        for attempt in range(1, self.tries + 1):
            redo = torch.nonzero(best_sim <= self.threshold).flatten().tolist()
            if not redo:
                break
            sub = rows.iloc[redo]
            new_prompts = [self.prompts.prompt(c, retry_seed(s, attempt), y)
                           for c, s, y in zip(sub["class_name"], sub["seed"], sub["label"])]
            new_seeds = [retry_seed(s, attempt) for s in sub["noise_seed"]]
            draw = generator.img2img(images[redo], [labels[i] for i in redo], new_prompts, strength, text_guidance, new_seeds)
            sims = self.text_similarity(draw, [labels[i] for i in redo])
            for j, i in enumerate(redo):
                attempts[i] += 1
                if sims[j] > best_sim[i]:
                    best[i], best_sim[i], prompts[i], seeds[i] = draw[j], sims[j], new_prompts[j], new_seeds[j]
        rows["prompt"], rows["noise_seed"] = prompts, seeds
        rows["attempts"], rows["gen_text_sim"] = attempts.tolist(), best_sim.tolist()
        return best, rows
