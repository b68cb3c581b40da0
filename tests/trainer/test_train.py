"""The built-in trainer on real Fashion-MNIST images with real torch on the CPU."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from worker.test_custom import _Curve  # the epoch callback the custom trainer's tests use

from ma2ml.spec import PipelineSearch
from ma2ml.trainer.errors import TrialError, TrialInterrupted
from ma2ml.trainer.train import run_trial

#: A sampled pipeline of moderate cost: every decision the presets define.
PIPELINE = {
    "aug": {**{f"sp{k}_{d}{j}": v for k in range(5) for j in range(2)
               for d, v in (("op", "identity"), ("prob", 0.0), ("mag", 0))},
            "sp0_op0": "rotate", "sp0_prob0": 0.5, "sp0_mag0": 3,
            "sp1_op1": "cutout", "sp1_prob1": 0.5, "sp1_mag1": 4},
    "nas": {"s0_kernel": 3, "s0_expand": 3, "s0_depth": 1, "s1_kernel": 5, "s1_expand": 3,
            "s1_depth": 1, "s2_kernel": 3, "s2_expand": 3, "s2_depth": 1,
            "width_mult": 0.5, "resolution": 28},
    "hpo": {"optimizer": "sgd", "lr_scale": 1.0, "weight_decay": 5e-5, "batch_size": 64,
            "label_smoothing": 0.1, "warmup_fraction": 0.05, "schedule": "cosine",
            "dropout": 0.1, "mixup_alpha": 0.2, "cutmix_alpha": 0.5, "ema": True},
}


@pytest.mark.slow
def test_default_pipeline_learns_fashion_mnist(
        make_search: Callable[..., PipelineSearch]) -> None:
    """Acceptance: the default pipeline (every absent decision at its default), 2 epochs on
    4000 training images, one CPU thread: above 70% validation accuracy. How long it takes
    is measured by benchmarks/train_throughput.py, not asserted here (a timed test fails
    on a loaded machine and says nothing about the code)."""
    search = make_search({"dataset": {"trainSubset": 4000, "validationSubset": 1000},
                          "budget": {"trialEpochs": 2}})
    result = run_trial(search, {}, seed=0, checkpoint_path=None, device="cpu", stop=None)
    assert not result.diverged
    assert result.metrics["accuracy"] > 0.70
    assert result.reward == result.metrics["accuracy"]
    for key in ("val_loss", "flops", "params", "train_seconds", "images_per_second"):
        assert result.metrics[key] > 0
    assert result.metrics["epochs"] == 2


def test_full_recipe_runs_and_reports_metrics(make_search: Callable[..., PipelineSearch]) -> None:
    """Mixup/cutmix, EMA, label smoothing, warm-up and augmentation together."""
    result = run_trial(make_search(), PIPELINE, seed=1, checkpoint_path=None, device="cpu",
                       stop=None)
    assert not result.diverged
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    assert result.metrics["flops"] > 0 and result.metrics["params"] > 0


def test_absurd_learning_rate_diverges(make_search: Callable[..., PipelineSearch]) -> None:
    pipeline = {**PIPELINE, "hpo": {**PIPELINE["hpo"], "lr_scale": 1e12, "batch_size": 16,
                                   "ema": False}}
    result = run_trial(make_search(), pipeline, seed=0, checkpoint_path=None, device="cpu",
                       stop=None)
    assert result.diverged
    assert result.reward == 0.0
    assert "loss is" in result.metrics["diverged_reason"]


def test_flops_target_shapes_the_reward(make_search: Callable[..., PipelineSearch]) -> None:
    search = make_search({"objective": {"flopsTarget": 1e5, "flopsExponent": -0.1}})
    result = run_trial(search, PIPELINE, seed=0, checkpoint_path=None, device="cpu", stop=None)
    expected = result.metrics["accuracy"] * (result.metrics["flops"] / 1e5) ** -0.1
    assert result.reward == pytest.approx(expected)


class _StopOnceCheckpointed(threading.Event):
    """A stop request that arrives as soon as the first epoch's checkpoint exists."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def is_set(self) -> bool:
        return self.path.exists()


def test_checkpoint_resume_finishes_the_same_trial(
        make_search: Callable[..., PipelineSearch], tmp_path: Path) -> None:
    """Stop after epoch 1 of 3; the resumed run ends after 3 epochs with the result of an
    uninterrupted run (model, optimizer, schedule and RNG state all restored)."""
    search = make_search({"budget": {"trialEpochs": 3}})
    checkpoint = tmp_path / "trial-0.pt"
    with pytest.raises(TrialInterrupted):
        run_trial(search, PIPELINE, seed=0, checkpoint_path=checkpoint, device="cpu",
                  stop=_StopOnceCheckpointed(checkpoint))
    resumed = run_trial(search, PIPELINE, seed=0, checkpoint_path=checkpoint, device="cpu",
                        stop=None)
    straight = run_trial(search, PIPELINE, seed=0, checkpoint_path=None, device="cpu", stop=None)
    assert resumed.metrics["epochs"] == straight.metrics["epochs"] == 3
    assert resumed.metrics["accuracy"] == straight.metrics["accuracy"]
    assert resumed.metrics["val_loss"] == pytest.approx(straight.metrics["val_loss"], rel=1e-5)


def test_custom_agent_with_builtin_trainer_is_refused(
        make_search: Callable[..., PipelineSearch]) -> None:
    search = make_search({"agents": [{"name": "extra", "decisions": [
        {"name": "x", "values": [1, 2]}]}]})
    with pytest.raises(TrialError, match="agent 'extra' has custom decisions"):
        run_trial(search, {"extra": {"x": 1}}, seed=0, checkpoint_path=None, device="cpu",
                  stop=None)


def test_bad_decision_value_is_a_trial_error(make_search: Callable[..., PipelineSearch]) -> None:
    pipeline = {**PIPELINE, "hpo": {**PIPELINE["hpo"], "optimizer": "lamb"}}
    with pytest.raises(TrialError, match="hpo.optimizer: unknown optimizer") as caught:
        run_trial(make_search(), pipeline, seed=0, checkpoint_path=None, device="cpu", stop=None)
    assert not caught.value.retryable


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_requested_without_a_gpu_is_a_retryable_error(
        make_search: Callable[..., PipelineSearch]) -> None:
    with pytest.raises(TrialError, match="trainer.device: 'cuda' requested") as caught:
        run_trial(make_search(), {}, seed=0, checkpoint_path=None, device="cuda", stop=None)
    assert caught.value.retryable  # another node may have the GPU


# --------------------------------------------------------------------------- epoch callback


def test_every_epoch_is_evaluated_and_the_last_evaluation_is_the_result(
        make_search: Callable[..., PipelineSearch]) -> None:
    """The callback sees each epoch's reward, shaped like the final one (FLOPs target); the
    per-epoch validation passes change nothing in training, and the last one is the result."""
    search = make_search({"budget": {"trialEpochs": 2},
                          "objective": {"flopsTarget": 1e5, "flopsExponent": -0.1}})
    curve = _Curve()
    result = run_trial(search, PIPELINE, seed=0, device="cpu", on_epoch=curve)
    assert [epoch for epoch, _, _ in curve.calls] == [1, 2]
    for epoch, reward, metrics in curve.calls:
        assert set(metrics) >= {"accuracy", "val_loss", "epoch", "train_seconds"}
        assert metrics["epoch"] == epoch
        assert reward == pytest.approx(
            metrics["accuracy"] * (result.metrics["flops"] / 1e5) ** -0.1)
    last_reward, last = curve.calls[-1][1:]
    assert not result.stopped and result.reward == last_reward
    assert (result.metrics["accuracy"], result.metrics["val_loss"]) == (
        last["accuracy"], last["val_loss"])
    silent = run_trial(search, PIPELINE, seed=0, device="cpu")
    assert silent.metrics["accuracy"] == result.metrics["accuracy"]
    assert silent.metrics["val_loss"] == pytest.approx(result.metrics["val_loss"], rel=1e-5)


def test_a_callback_saying_stop_ends_the_trial_stopped(
        make_search: Callable[..., PipelineSearch], tmp_path: Path) -> None:
    search = make_search({"budget": {"trialEpochs": 3}})
    checkpoint = tmp_path / "trial-0.pt"
    curve = _Curve(stop_after=1)
    result = run_trial(search, PIPELINE, seed=0, checkpoint_path=checkpoint, device="cpu",
                       on_epoch=curve)
    assert [epoch for epoch, _, _ in curve.calls] == [1]  # epochs 2 and 3 never ran
    assert result.stopped and not result.diverged
    assert result.reward == curve.calls[0][1]
    assert result.metrics["stopped_at_epoch"] == result.metrics["epochs"] == 1
    assert result.metrics["images_per_second"] > 0
    assert not checkpoint.exists(), "a stopped trial writes no checkpoint for its last epoch"


def test_a_resumed_trial_reports_only_the_epochs_it_trains(
        make_search: Callable[..., PipelineSearch], tmp_path: Path) -> None:
    """An epoch is reported before its checkpoint: the resumed run starts after it."""
    search = make_search({"budget": {"trialEpochs": 3}})
    checkpoint = tmp_path / "trial-0.pt"
    first, second = _Curve(), _Curve()
    with pytest.raises(TrialInterrupted):
        run_trial(search, PIPELINE, seed=0, checkpoint_path=checkpoint, device="cpu",
                  stop=_StopOnceCheckpointed(checkpoint), on_epoch=first)
    resumed = run_trial(search, PIPELINE, seed=0, checkpoint_path=checkpoint, device="cpu",
                        on_epoch=second)
    assert [e for e, _, _ in first.calls] == [1]
    assert [e for e, _, _ in second.calls] == [2, 3]
    assert resumed.metrics["resumed_from_epoch"] == 1 and resumed.reward == second.calls[-1][1]
