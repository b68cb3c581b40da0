"""``ma2ml augment-preview``: a picture of what an augmentation policy does."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image

from ma2ml.spec import PipelineSearch
from ma2ml.trainer.augment import Policy
from ma2ml.trainer.data import load_data
from ma2ml.trainer.train import decisions_by_role


def aug_decisions(search: PipelineSearch, pipeline: Mapping[str, Any] | None,
                  seed: int) -> dict[str, Any]:
    """The aug decisions of ``pipeline`` (whole pipeline or aug part), else a random policy."""
    aug = [a for a in search.spec.agents if a.preset == "autoaugment"]
    if not aug:
        raise ValueError("spec.agents: no agent uses the autoaugment preset")
    if pipeline is None:
        space = search.spec.search_space().agent(aug[0].name)
        rng = random.Random(seed)
        return space.decode([rng.randrange(n) for n in space.sizes])
    if aug[0].name in pipeline:
        return dict(pipeline[aug[0].name])
    return dict(decisions_by_role(search, {aug[0].name: pipeline})["aug"][1])


def save_preview(search: PipelineSearch, pipeline: Mapping[str, Any] | None, out: Path, *,
                 images: int = 8, rows: int = 4, seed: int = 0) -> dict[str, Any]:
    """Save a grid: first row the originals, then ``rows`` independent augmentations.

    ``pipeline``: a whole pipeline or just the aug decisions; None samples a
    random policy. Returns the aug decisions shown.
    """
    decisions = aug_decisions(search, pipeline, seed)
    policy = Policy.from_decisions(decisions)
    splits = load_data(search.spec.dataset.model_copy(
        update={"train_subset": images, "validation_subset": 1}))
    originals = splits.train_images[:images]
    generator = torch.Generator().manual_seed(seed)
    batches = [originals] + [policy(originals, generator) for _ in range(rows)]
    grid = make_grid(torch.cat(batches).float() / 255.0, nrow=images, padding=2, pad_value=1.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, out)
    return decisions


def preview(search: PipelineSearch, out: Path, pipeline_json: str | None = None, *,
            seed: int = 0) -> dict[str, Any]:
    """``save_preview`` for a pipeline given as JSON text (the CLI's ``--pipeline``)."""
    pipeline = json.loads(pipeline_json) if pipeline_json else None
    if pipeline is not None and not isinstance(pipeline, dict):
        raise ValueError("--pipeline: expected a JSON object")
    return save_preview(search, pipeline, out, seed=seed)
