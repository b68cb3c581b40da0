"""The built-in trainer: one pipeline (aug + nas + hpo decisions) in, one reward out.

Reads like torchvision's classification references: ``load_data`` (see
``data.py``), ``train_one_epoch``, ``evaluate`` and ``run_trial``, which a
test can call directly. A trial checkpoints after every epoch so a
preempted trial resumes from its last finished epoch on any worker; a
non-finite loss ends it as *diverged* (a result, not a crash).

With an epoch callback (the worker's, which records the learning curve and
asks the store whether to go on), every epoch ends with a validation pass
whose reward is computed exactly like the final one, so that early-stopping
rungs compare the objective; the last epoch's pass is the final result. The
callback runs before the epoch's checkpoint is written: a trial resumed
after a crash re-reports at most that one epoch, and the store answers a
re-reported epoch with its recorded decision.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

import torch
import torch.nn.functional as nnf
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision.transforms import v2

from ma2ml.spaces import PRESETS, Scalar
from ma2ml.spec import PipelineSearch, TrainerType
from ma2ml.trainer.augment import Policy
from ma2ml.trainer.data import Splits, load_data
from ma2ml.trainer.errors import TrialError, TrialInterrupted
from ma2ml.trainer.model import build_model, count_flops, count_params
from ma2ml.trainer.recipe import Recipe, build_optimizer, build_scheduler, ema_decay
from ma2ml.trainer.result import EpochCallback, TrialResult
from ma2ml.trainer.reward import compute_reward

__all__ = ["TrialResult", "evaluate", "load_data", "run_trial", "train_one_epoch"]

#: Validation images per forward pass. Measured on the example (one CPU thread, 2000
#: images): 2.5 s at 1000, 0.9 s at 256, flat below; the activations of a big batch fall
#: out of cache. Since every epoch is evaluated (learning curves), this matters.
EVAL_BATCH = 256


class Diverged(Exception):  # an outcome, reported as a result
    """The training loss became NaN or infinite."""


def set_threads(threads: int) -> None:
    """torch's CPU threads in this process (the worker calls it when it loads this trainer,
    so that a worker of a custom command never imports torch)."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrialError("trainer.device: 'cuda' requested but no CUDA device is available",
                         retryable=True)  # another node may have one
    return torch.device(device)


def decisions_by_role(search: PipelineSearch, pipeline: Mapping[str, Any]
                      ) -> dict[str, tuple[str, dict[str, Scalar]]]:
    """``{"aug"|"nas"|"hpo": (preset, decisions)}``: agents are found by preset, not name."""
    roles: dict[str, tuple[str, dict[str, Scalar]]] = {}
    for agent in search.spec.agents:
        if agent.preset is None:
            raise TrialError(f"spec.agents: agent {agent.name!r} has custom decisions, which the "
                             f"built-in trainer cannot use; use trainer.type 'command'")
        roles[PRESETS[agent.preset].role] = (agent.preset, dict(pipeline.get(agent.name, {})))
    return roles


class Batches:
    """Turns uint8 batches into normalised float input at the model's resolution."""

    def __init__(self, splits: Splits, resolution: int, device: torch.device,
                 channels_last: bool) -> None:
        self.mean = torch.tensor(splits.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(splits.std, device=device).view(1, -1, 1, 1)
        self.resolution = resolution
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() / 255.0 - self.mean) / self.std
        if x.shape[-1] != self.resolution:
            x = nnf.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                                align_corners=False)
        return x.contiguous(memory_format=self.memory_format)


class Progress(TypedDict):
    """How far a trial's training got; saved in its checkpoint."""

    epoch: int  # epochs trained
    train_seconds: float
    images: int  # training images seen


@dataclass
class Setup:
    """Everything ``train_one_epoch`` needs, built once per trial."""

    model: nn.Module
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    recipe: Recipe
    policy: Policy
    mixer: v2.Transform | None
    batches: Batches
    generator: torch.Generator
    autocast: Any
    scaler: torch.amp.GradScaler | None


def build_mixer(recipe: Recipe, num_classes: int) -> v2.Transform | None:
    choices: list[v2.Transform] = []
    if recipe.mixup_alpha > 0:
        choices.append(v2.MixUp(alpha=recipe.mixup_alpha, num_classes=num_classes))
    if recipe.cutmix_alpha > 0:
        choices.append(v2.CutMix(alpha=recipe.cutmix_alpha, num_classes=num_classes))
    return v2.RandomChoice(choices) if choices else None


def train_one_epoch(setup: Setup, splits: Splits, stop: threading.Event | None,
                    on_step: Callable[[int, int], None] | None = None) -> int:
    """One pass over the training split; returns the images seen. Raises ``Diverged``.
    ``on_step(done, steps)`` follows each batch (retraining's progress bar)."""
    model, recipe = setup.model, setup.recipe
    model.train()
    n = len(splits.train_labels)
    batch = min(recipe.batch_size, n)
    order = torch.randperm(n, generator=setup.generator).to(splits.train_labels.device)
    steps = n // batch  # drop the ragged last batch: BatchNorm needs > 1 image
    for step in range(steps):
        if stop is not None and stop.is_set():
            raise TrialInterrupted("stop requested")
        index = order[step * batch:(step + 1) * batch]
        images = setup.batches(setup.policy(splits.train_images[index], setup.generator))
        labels = splits.train_labels[index]
        if setup.mixer is not None:
            images, labels = setup.mixer(images, labels)
        with setup.autocast:
            loss = nnf.cross_entropy(model(images), labels,
                                     label_smoothing=recipe.label_smoothing)
        if not torch.isfinite(loss):
            raise Diverged(f"loss is {loss.item()} at step {step}")
        setup.optimizer.zero_grad(set_to_none=True)
        if setup.scaler is not None:
            setup.scaler.scale(loss).backward()
            setup.scaler.step(setup.optimizer)
            setup.scaler.update()
        else:
            loss.backward()
            setup.optimizer.step()
        setup.scheduler.step()
        if setup.ema is not None:
            setup.ema.update_parameters(model)
        if on_step is not None:
            on_step(step + 1, steps)
    return steps * batch


@torch.no_grad()
def evaluate(model: nn.Module, splits: Splits, batches: Batches, autocast: Any
             ) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on the validation split."""
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(splits.val_labels), EVAL_BATCH):
        labels = splits.val_labels[start:start + EVAL_BATCH]
        with autocast:
            logits = model(batches(splits.val_images[start:start + EVAL_BATCH])).float()
        loss_sum += nnf.cross_entropy(logits, labels, reduction="sum").item()
        correct += int((logits.argmax(1) == labels).sum())
    n = len(splits.val_labels)
    return correct / n, loss_sum / n


def run_trial(search: PipelineSearch, pipeline: Mapping[str, Any], *, seed: int = 0,
              checkpoint_path: Path | None = None, device: str | None = None,
              stop: threading.Event | None = None, trial_dir: Path | None = None,
              on_epoch: EpochCallback | None = None) -> TrialResult:
    """Train and evaluate one pipeline of ``search`` with the built-in trainer.

    ``on_epoch(epoch, reward, metrics)`` gets each epoch's validation result
    (a custom command's ``ma2ml.report(..., step=epoch)``); when it returns
    False the trial ends at once with a result marked ``stopped``.
    Raises ``TrialError`` (with ``retryable``) or ``TrialInterrupted`` when ``stop`` is set.
    """
    trainer = search.spec.trainer
    if trainer.type == TrainerType.command:  # the worker loop runs those (ma2ml.worker.custom)
        raise TrialError("run_trial is the built-in trainer; a trainer of type 'command' "
                         "runs through ma2ml.worker.custom.run_command")
    try:
        return _run_builtin(search, pipeline, seed, checkpoint_path,
                            resolve_device(device or trainer.device), stop, on_epoch)
    except ValueError as exc:  # a decision value the trainer cannot use
        raise TrialError(str(exc)) from exc


def _run_builtin(search: PipelineSearch, pipeline: Mapping[str, Any], seed: int,
                 checkpoint_path: Path | None, device: torch.device,
                 stop: threading.Event | None, on_epoch: EpochCallback | None) -> TrialResult:
    roles = decisions_by_role(search, pipeline)
    splits = load_data(search.spec.dataset, device)
    torch.manual_seed(seed)
    setup = build_setup(search, roles, splits, device, seed)
    epochs = search.spec.budget.trial_epochs
    progress = Progress(epoch=0, train_seconds=0.0, images=0)
    if checkpoint_path is not None and checkpoint_path.exists():
        progress = load_checkpoint(checkpoint_path, setup)
    resumed_from = progress["epoch"]
    model = setup.ema.module if setup.ema is not None else setup.model
    # Constant for the trial, and needed by every epoch's reward when the objective
    # has a FLOPs target (a forward pass of zeros: no RNG drawn, nothing trained).
    flops = count_flops(setup.model, splits.channels, setup.batches.resolution)
    scores: tuple[float, float] | None = None  # (accuracy, val_loss) of the current weights
    try:
        for epoch in range(progress["epoch"], epochs):
            started = time.perf_counter()
            progress["images"] += train_one_epoch(setup, splits, stop)
            progress["train_seconds"] += time.perf_counter() - started
            progress["epoch"] = epoch + 1
            last = epoch + 1 == epochs
            scores = _scores(model, splits, setup) if on_epoch is not None or last else None
            if on_epoch is not None and scores is not None:
                reward = compute_reward(scores[0], flops, search.spec.objective)
                if not _report_epoch(on_epoch, reward, scores, progress):
                    # The trial ends here, without a checkpoint (the worker removes the
                    # last one): the store already holds this epoch as its result.
                    metrics = _metrics(scores, flops, setup, progress, resumed_from, device)
                    return TrialResult(reward, {**metrics, "stopped_at_epoch": epoch + 1},
                                       stopped=True)
            if checkpoint_path is not None and not last:
                save_checkpoint(checkpoint_path, setup, progress)
        if scores is None:  # resumed past trialEpochs (lowered since): nothing trained here
            scores = _scores(model, splits, setup)
    except Diverged as exc:
        return _diverged(str(exc), progress)
    return TrialResult(compute_reward(scores[0], flops, search.spec.objective),
                       _metrics(scores, flops, setup, progress, resumed_from, device))


def _scores(model: nn.Module, splits: Splits, setup: Setup) -> tuple[float, float]:
    """(accuracy, val_loss) of ``model`` on the validation split; ``Diverged`` when the
    loss is not finite."""
    scores = evaluate(model, splits, setup.batches, setup.autocast)
    if not math.isfinite(scores[1]):
        raise Diverged("validation loss is not finite")
    return scores


def _report_epoch(on_epoch: EpochCallback, reward: float, scores: tuple[float, float],
                  progress: Progress) -> bool:
    """Tell ``on_epoch`` about the epoch just trained; False: stop the trial here."""
    step = {"accuracy": scores[0], "val_loss": scores[1], "epoch": progress["epoch"],
            "train_seconds": progress["train_seconds"]}
    return on_epoch(progress["epoch"], reward, step)


def _metrics(scores: tuple[float, float], flops: int, setup: Setup,
             progress: Progress, resumed_from: int, device: torch.device
             ) -> dict[str, Any]:
    """A trial's metrics after its last epoch (completed, or stopped early)."""
    return {
        "accuracy": scores[0], "val_loss": scores[1], "flops": flops,
        "params": count_params(setup.model), "epochs": progress["epoch"],
        "resumed_from_epoch": resumed_from,
        "train_seconds": progress["train_seconds"],
        "images_per_second": progress["images"] / max(progress["train_seconds"], 1e-9),
        "device": device.type,
    }


def _diverged(reason: str, progress: Progress) -> TrialResult:
    # Reward 0 (worse than chance): the learner sees a bad pipeline, and the
    # metrics stay JSON (no NaN, which PostgreSQL's JSON type refuses).
    metrics = {"accuracy": 0.0, "val_loss": None, "flops": None, "params": None,
               "epochs": progress["epoch"], "train_seconds": progress["train_seconds"],
               "images_per_second": None, "diverged_reason": reason}
    return TrialResult(0.0, metrics, diverged=True)


def build_setup(search: PipelineSearch, roles: Mapping[str, tuple[str, dict[str, Scalar]]],
                splits: Splits, device: torch.device, seed: int) -> Setup:
    trainer = search.spec.trainer
    recipe = Recipe.from_decisions(roles.get("hpo", ("", {}))[1])
    family, nas = roles.get("nas", ("mbconv-small", {}))
    model = build_model(nas, in_channels=splits.channels, num_classes=splits.num_classes,
                        family=family, dropout=recipe.dropout).to(device)
    cuda = device.type == "cuda"
    if cuda and trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    batch = min(recipe.batch_size, len(splits.train_labels))
    total_steps = search.spec.budget.trial_epochs * (len(splits.train_labels) // batch)
    optimizer = build_optimizer(recipe, model.parameters())
    ema = None
    if recipe.ema:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay(total_steps)),
                            use_buffers=True)
    autocast: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    scaler = None
    if cuda and trainer.amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        autocast = torch.autocast("cuda", dtype=dtype)
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return Setup(
        model=model, ema=ema, optimizer=optimizer,
        scheduler=build_scheduler(recipe, optimizer, total_steps), recipe=recipe,
        policy=Policy.from_decisions(roles.get("aug", ("", {}))[1]),
        mixer=build_mixer(recipe, splits.num_classes),
        batches=Batches(splits, model.resolution, device, cuda and trainer.channels_last),
        generator=torch.Generator().manual_seed(seed), autocast=autocast, scaler=scaler)


def save_checkpoint(path: Path, setup: Setup, progress: Progress) -> None:
    """One dict (model, optimizer, scheduler, EMA, RNG, progress), written atomically."""
    state = {
        "model": setup.model.state_dict(), "optimizer": setup.optimizer.state_dict(),
        "scheduler": setup.scheduler.state_dict(),
        "ema": setup.ema.state_dict() if setup.ema is not None else None,
        "generator": setup.generator.get_state(), "torch_rng": torch.get_rng_state(),
        "progress": dict(progress),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save(state, partial)
    partial.replace(path)  # a crash mid-write never leaves a torn checkpoint


def load_checkpoint(path: Path, setup: Setup) -> Progress:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        setup.model.load_state_dict(state["model"])
        setup.optimizer.load_state_dict(state["optimizer"])
        setup.scheduler.load_state_dict(state["scheduler"])
        if setup.ema is not None and state["ema"] is not None:
            setup.ema.load_state_dict(state["ema"])
    except (RuntimeError, KeyError, OSError) as exc:
        raise TrialError(f"{path}: cannot resume from checkpoint ({exc})",
                         retryable=True) from exc
    setup.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return cast(Progress, dict(state["progress"]))  # as save_checkpoint wrote it
