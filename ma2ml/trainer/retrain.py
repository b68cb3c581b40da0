"""Retrain a chosen pipeline on the whole training set and score it on the test set.

This is what ``ma2ml export`` hands the user: the search picked the
pipeline on a validation split carved from the training set; the final
number comes from the held-out test split, touched here for the first time.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any, Protocol

import torch

from ma2ml.spec import PipelineSearch, parse_spec, spec_to_document
from ma2ml.trainer.data import load_final_data
from ma2ml.trainer.model import count_flops, count_params
from ma2ml.trainer.train import (
    Diverged,
    build_setup,
    decisions_by_role,
    evaluate,
    resolve_device,
    train_one_epoch,
)


def with_epochs(search: PipelineSearch, epochs: int) -> PipelineSearch:
    """The same search with ``budget.trialEpochs`` set (schedules depend on it)."""
    document = spec_to_document(search)
    document["spec"]["budget"]["trialEpochs"] = epochs
    return parse_spec(document, stored=True)


class RetrainProgress(Protocol):
    """What retraining tells whoever shows its progress."""

    def started(self, epochs: int, train_images: int, test_images: int) -> None: ...

    def step(self, epoch: int, done: int, steps: int) -> None: ...

    def epoch_done(self, epoch: int, seconds: float) -> None: ...

    def testing(self) -> None: ...


def retrain_and_test(search: PipelineSearch, pipeline: Mapping[str, Any], *, epochs: int,
                     seed: int = 0, device: str | None = None, train_subset: int | None = None,
                     test_subset: int | None = None, progress: RetrainProgress | None = None
                     ) -> dict[str, Any]:
    """Train ``pipeline`` for ``epochs`` on train+validation; return test metrics.
    ``progress`` hears of every batch, every epoch and the test pass."""
    search = with_epochs(search, epochs)
    target = resolve_device(device or search.spec.trainer.device)
    splits = load_final_data(search.spec.dataset, target, train_subset, test_subset)
    torch.manual_seed(seed)
    setup = build_setup(search, decisions_by_role(search, pipeline), splits, target, seed)
    if progress is not None:
        progress.started(epochs, len(splits.train_labels), len(splits.val_labels))
    started, images = time.perf_counter(), 0
    try:
        for epoch in range(1, epochs + 1):
            on_step = None if progress is None else functools.partial(progress.step, epoch)
            images += train_one_epoch(setup, splits, None, on_step)
            if progress is not None:
                progress.epoch_done(epoch, time.perf_counter() - started)
    except Diverged as exc:
        return {"split": "test", "diverged": str(exc), "test_accuracy": 0.0, "epochs": epochs}
    seconds = time.perf_counter() - started
    if progress is not None:
        progress.testing()
    model = setup.ema.module if setup.ema is not None else setup.model
    accuracy, loss = evaluate(model, splits, setup.batches, setup.autocast)
    return {
        "split": "test", "test_accuracy": accuracy, "test_loss": loss, "epochs": epochs,
        "train_images": len(splits.train_labels), "test_images": len(splits.val_labels),
        "flops": count_flops(setup.model, splits.channels, setup.batches.resolution),
        "params": count_params(setup.model), "train_seconds": seconds,
        "images_per_second": images / max(seconds, 1e-9), "device": target.type,
    }
