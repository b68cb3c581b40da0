"""The pure status logic: phases by counting, replicas, constant-size status, Events."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from ma2ml.operator import status
from ma2ml.spec import Phase, PipelineSearchSpec, PipelineSearchStatus, parse_spec
from ma2ml.store import Counts, Usage

EXAMPLE = yaml.safe_load((Path(__file__).parents[2] / "examples/fashion-mnist.yaml").read_text())
NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"
NO_TIME = Usage()  # no time used: the verdict is the trial counts'


def spec(**budget: Any) -> PipelineSearchSpec:
    document = copy.deepcopy(EXAMPLE)
    document["spec"]["budget"] = {"maxTrials": 10, "maxFailedTrials": 4, "parallelism": 3,
                                  **budget}
    return parse_spec(document).spec


def counts(**values: int) -> Counts:
    return Counts(**values)


def test_phase_by_counting_and_by_the_learners_verdict() -> None:
    s = spec()
    assert status.decide(s, "running", counts(completed=3), NO_TIME).phase == Phase.running
    done = status.decide(s, "running", counts(completed=8, diverged=2), NO_TIME)
    assert (done.phase, done.reason) == (Phase.succeeded, "MaxTrialsReached")
    failed = status.decide(s, "running", counts(completed=9, failed=4), NO_TIME)
    assert (failed.phase, failed.reason) == (Phase.failed, "TooManyFailedTrials")
    assert status.decide(s, "finished", counts(), NO_TIME).reason == "LearnerFinished"
    assert status.decide(s, "failed", counts(), NO_TIME).reason == "LearnerFailed"
    cannot_start = status.decide(s, "failed", counts(), NO_TIME,
                                 "the learner cannot start: ValueError: x")
    assert (cannot_start.phase, cannot_start.reason, cannot_start.message) == (
        Phase.failed, "LearnerFailed", "the learner cannot start: ValueError: x")
    # Failed by the stop rule: the operator names the rule, not just "the learner".
    assert status.decide(s, "failed", counts(failed=4), NO_TIME).reason == "TooManyFailedTrials"
    suspended = spec().model_copy(update={"suspend": True})
    assert status.decide(suspended, "suspended", counts(), NO_TIME).phase == Phase.suspended


def test_replicas_follow_parallelism_then_the_remaining_trials() -> None:
    s = spec()
    assert status.desired_replicas(s, Phase.running, counts(completed=2)) == (1, 3)
    assert status.desired_replicas(s, Phase.running, counts(completed=8, running=2)) == (1, 2)
    assert status.desired_replicas(s, Phase.suspended, counts()) == (1, 0)
    assert status.desired_replicas(s, Phase.succeeded, counts(completed=10)) == (0, 0)
    assert status.desired_replicas(s, Phase.failed, counts(failed=4)) == (0, 0)


def big_pipeline(n: int) -> dict[str, dict[str, Any]]:
    return {"aug": {f"sp{i}_op0": "rotate" for i in range(n)}, "hpo": {"lr": 0.1}}


def test_status_size_does_not_grow_with_trials_or_pipelines() -> None:
    verdict = status.Verdict(Phase.running, "TrialsRunning", "…")
    sizes = []
    for n in (1, 1000, 100000):
        best = status.Best(number=n, reward=0.9, metrics={"accuracy": 0.9, "flops": 1e9},
                           pipeline=big_pipeline(n))
        built = status.build_status(verdict, counts(completed=n), best, {}, 1, NOW)
        PipelineSearchStatus.model_validate(built)  # the CRD's status schema
        sizes.append(len(json.dumps(built)) - len(str(n)) * 3)
    assert sizes[1] == sizes[2]
    assert len(built["best"]["pipeline"]["aug"]) == status.MAX_PIPELINE_CHARS
    assert built["best"]["pipeline"]["hpo"] == "lr=0.1"


def test_conditions_keep_their_transition_time_until_they_change() -> None:
    running = status.Verdict(Phase.running, "TrialsRunning", "1/10")
    first = status.build_status(running, counts(), None, {}, 1, NOW)
    again = status.build_status(running, counts(completed=1), None, first, 1, LATER)
    assert [c["lastTransitionTime"] for c in again["conditions"]] == [NOW] * 5
    done = status.Verdict(Phase.succeeded, "MaxTrialsReached", "10/10")
    final = status.build_status(done, counts(completed=10), None, again, 1, LATER)
    times = {c["type"]: c["lastTransitionTime"] for c in final["conditions"]}
    assert times == {"SpecValid": NOW, "Running": LATER, "Suspended": NOW,
                     "Succeeded": LATER, "Failed": NOW}
    assert final["startTime"] == NOW and final["completionTime"] == LATER


def test_best_trial_takes_accuracy_and_flops_from_metrics_when_numbers() -> None:
    best = status.best_trial(status.Best(3, 0.8, {"accuracy": "n/a", "flops": 2e6},
                                         {"nas": {"k": 3}}))
    assert (best.trial, best.reward, best.accuracy, best.flops) == (3, 0.8, None, 2e6)
    assert best.pipeline == {"nas": "k=3"}


def test_milestones_once_per_transition() -> None:
    s = spec()
    threshold = status.failure_threshold(s, 0.5)
    assert threshold == 2
    running = status.Verdict(Phase.running, "TrialsRunning", "")
    best = status.Best(1, 0.5, {"accuracy": 0.5}, {"hpo": {"lr": 0.1}})
    first = status.build_status(running, counts(completed=1), best, {}, 1, NOW)
    assert [m.reason for m in status.milestones({}, first, threshold)] == ["Started", "NewBest"]
    assert status.milestones(first, first, threshold) == []
    failing = status.build_status(running, counts(completed=1, failed=2), best, first, 1, NOW)
    assert [(m.type, m.reason) for m in status.milestones(first, failing, threshold)] == [
        ("Warning", "TrialsFailing")]
    done = status.Verdict(Phase.succeeded, "MaxTrialsReached", "10 trials finished")
    final = status.build_status(done, counts(completed=10), best, failing, 1, NOW)
    assert [m.reason for m in status.milestones(failing, final, threshold)] == ["Succeeded"]


def test_invalid_spec_status_and_single_warning() -> None:
    verdict = status.invalid_verdict(["spec.budget.parallelism: must be >= 1, got 0"])
    built = status.build_status(verdict, Counts(), None, {}, 2, NOW, invalid=verdict.message)
    valid = next(c for c in built["conditions"] if c["type"] == "SpecValid")
    assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec")
    assert valid["message"].startswith("spec.budget.parallelism")
    assert built["phase"] == "Failed" and built["observedGeneration"] == 2
    events = status.milestones({}, built, 1)
    assert [(m.type, m.reason) for m in events] == [("Warning", "InvalidSpec")]
    assert status.milestones(built, built, 1) == []


def test_stopped_trials_are_counted_in_the_status_and_the_budget() -> None:
    """Early-stopped trials show in ``.status.trials`` and its total, count towards
    ``maxTrials`` (the search succeeds), but never make the best trial."""
    s = spec()
    running = status.decide(s, "running", counts(completed=4, stopped=5, running=1), NO_TIME)
    assert (running.phase, running.message) == (Phase.running, "9/10 trials finished")
    assert status.desired_replicas(s, Phase.running, counts(completed=4, stopped=5,
                                                            running=1)) == (1, 1)
    done = status.decide(s, "running", counts(completed=4, stopped=6), NO_TIME)
    assert (done.phase, done.reason) == (Phase.succeeded, "MaxTrialsReached")
    assert done.message == "10 trials finished (maxTrials 10)"
    all_stopped = status.decide(s, "running", counts(stopped=10), NO_TIME)
    assert all_stopped.phase == Phase.succeeded

    best = status.Best(2, 0.7, {"accuracy": 0.7}, {"hpo": {"lr": 0.1}})
    built = status.build_status(done, counts(completed=4, stopped=6), best, {}, 1, NOW)
    PipelineSearchStatus.model_validate(built)  # the CRD's status schema has the field
    assert built["trials"] == {"total": 10, "pending": 0, "running": 0, "completed": 4,
                               "diverged": 0, "stopped": 6, "failed": 0}
    assert status.trial_counts(counts(pending=2, running=1, stopped=3)).total == 6
    assert [m.reason for m in status.milestones({}, built, 2)] == ["NewBest", "Succeeded"]


def test_a_time_limit_ends_the_search_and_the_status_says_why() -> None:
    s = spec(maxDuration="10m", maxTrainingHours=2)
    running = status.decide(s, "running", counts(completed=3, running=2), Usage(95, 1800))
    assert (running.phase, running.reason) == (Phase.running, "TrialsRunning")
    assert running.message == ("3/10 trials finished, trained 30m of maxTrainingHours 2, "
                               "ran 1m 35s of maxDuration 10m")
    # Shown at once, before the learner moved the store's state.
    spent = status.decide(s, "running", counts(completed=3, running=2), Usage(602, 1800))
    assert (spent.phase, spent.reason, spent.message) == (
        Phase.succeeded, "MaxDurationReached", "search ran 10m 2s (maxDuration 10m)")
    assert status.desired_replicas(s, spent.phase, counts(completed=3, running=2)) == (0, 0)
    # Once the learner ended it, its words at that moment, however long ago that was.
    ended = status.decide(s, "finished", counts(completed=3, pending=2), Usage(86_400, 1800),
                          "search ran 10m 1s (maxDuration 10m)")
    assert (ended.phase, ended.reason, ended.message) == (
        Phase.succeeded, "MaxDurationReached", "search ran 10m 1s (maxDuration 10m)")
    trained = status.decide(s, "running", counts(completed=3), Usage(300, 7201))
    assert (trained.reason, trained.message) == (
        "MaxTrainingHoursReached", "trials trained 2h 0m 1s (maxTrainingHours 2)")

    used = status.TimeUsed(elapsed_seconds=601.4, training_seconds=1800)
    before = status.build_status(running, counts(completed=3), None, {}, 1, NOW, used=used)
    built = status.build_status(ended, counts(completed=3), None, before, 1, LATER, used=used)
    PipelineSearchStatus.model_validate(built)  # the CRD's status schema
    assert (built["elapsedSeconds"], built["trainingHours"]) == (601, 0.5)
    assert built["message"] == "search ran 10m 1s (maxDuration 10m)"
    succeeded = next(c for c in built["conditions"] if c["type"] == "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("True", "MaxDurationReached")
    events = status.milestones(before, built, status.failure_threshold(s, 0.5))
    assert [(m.reason, m.message) for m in events] == [
        ("Succeeded", "search ran 10m 1s (maxDuration 10m)")]
    again = status.build_status(ended, counts(completed=3), None, built, 1, LATER, used=used)
    assert status.same_status(built, again)  # nothing moves once it ended: no rewrite

    # A learner scaled down before it recorded the end: the operator's words and time at
    # the end stay, however far the clock goes on.
    first = status.build_status(spent, counts(completed=3), None, before, 1, LATER,
                                used=status.TimeUsed(602, 1800))
    much_later = status.decide(s, "running", counts(completed=3), Usage(5000, 1800))
    assert much_later.message == "search ran 1h 23m 20s (maxDuration 10m)"
    kept = status.build_status(much_later, counts(completed=3), None, first, 1, LATER,
                               used=status.TimeUsed(5000, 1800))
    assert status.same_status(first, kept)
    assert (kept["message"], kept["elapsedSeconds"]) == ("search ran 10m 2s (maxDuration 10m)",
                                                         602)


def test_an_invalid_spec_edited_again_says_its_new_problems() -> None:
    first = status.invalid_verdict(["spec.budget.maxDuration: must be > 0, got 0"])
    built = status.build_status(first, Counts(), None, {}, 1, NOW, invalid=first.message)
    second = status.invalid_verdict(["spec.budget.maxTrainingHours: must be > 0, got 0"])
    again = status.build_status(second, Counts(), None, built, 2, LATER, invalid=second.message)
    assert again["message"] == "spec.budget.maxTrainingHours: must be > 0, got 0"
