"""Time left in the live view: measured from the first trial on (issue 16, friction 4).

Trials are claimed, stepped and completed through the real Store API (no
training; training is covered by test_run.py); ``now`` is passed to
``summarize`` to stand for the seconds that pass.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from rich.console import Console

from ma2ml.local.progress import render
from ma2ml.results.eta import Running, estimate
from ma2ml.results.summary import summarize
from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import Store, TrialProposal

from .test_run import tiny_spec


def _panel(summary) -> str:
    console = Console(record=True, width=200)
    console.print(render(summary))
    return console.export_text()


def test_estimate_from_running_epochs_then_from_the_pace_of_results() -> None:
    # Two trials half way (1 of 2 epochs in 30 s): 60 s a trial, 10 trials on 2 workers,
    # one epoch of each running one already done; a held trial (no epoch yet) adds nothing.
    eta = estimate(max_trials=10, done=0, parallelism=2, trial_epochs=2, started=0.0,
                   now=30.0, finished=[],
                   running=[Running(30.0, 1), Running(30.0, 1), Running(30.0, 0)])
    assert eta is not None and math.isclose(eta.seconds, (10 * 60 - 2 * 30) / 2)
    assert "running" in eta.basis
    assert estimate(max_trials=10, done=0, parallelism=2, trial_epochs=2, started=0.0,
                    now=30.0, finished=[], running=[Running(30.0, 0)]) is None, \
        "nothing measured: no guess"
    # 4 results in the first 120 s: 30 s a result, 6 left, 10 s since the last one.
    eta = estimate(max_trials=10, done=4, parallelism=2, trial_epochs=2, started=0.0,
                   now=130.0, finished=[60.0, 61.0, 110.0, 120.0], running=[])
    assert eta is not None and math.isclose(eta.seconds, 6 * 30 - 10)
    assert eta.basis == "pace of the last 4 results"
    # Only the latest RECENT results set the pace (an early slow phase is forgotten).
    finished = [100.0 * i for i in range(1, 11)] + [1000.0 + 5 * i for i in range(1, 21)]
    eta = estimate(max_trials=40, done=30, parallelism=2, trial_epochs=2, started=0.0,
                   now=1100.0, finished=finished, running=[])
    assert eta is not None and math.isclose(eta.seconds, 10 * 5 - 0)
    assert estimate(max_trials=10, done=10, parallelism=2, trial_epochs=2, started=0.0,
                    now=1.0, finished=[1.0], running=[]) is None


def test_panel_shows_time_left_from_the_first_epoch(tmp_path: Path) -> None:
    search = parse_spec(tiny_spec("eta", max_trials=6, trialEpochs=2))
    space, rng = search.spec.search_space(), random.Random(0)
    with Store(f"sqlite:///{tmp_path / 'eta.db'}") as store:
        record = store.create_search(search.key, spec_to_document(search))
        for _ in range(2):
            action = {a.name: [rng.randrange(s) for s in a.sizes] for a in space.agents}
            store.enqueue_trials(record.id, [TrialProposal(space.decode(action), action,
                                                           {a: -1.0 for a in action}, 0)])
        first = store.claim(record.id, "w1", 30)
        second = store.claim(record.id, "w2", 30)
        started = store.get_trial(first.id).started_at
        before = summarize(store, record, now=started + 5, baseline=False)
        assert before.eta is None
        assert "left ? (known after the first epoch)" in _panel(before)

        store.report_step(first.id, first.attempt, 1, 0.5, {})
        # 1 of 2 epochs in 20 s: 40 s a trial; 6 trials on 2 workers, one epoch (20 s) done.
        summary = summarize(store, record, now=started + 20, baseline=False)
        assert summary.eta is not None
        assert math.isclose(summary.eta.seconds, (6 * 40 - 20) / 2, abs_tol=1.0)
        assert "left ~1m 50s (from the running trials' epochs)" in _panel(summary)

        store.complete(first.id, first.attempt, 0.6, {"accuracy": 0.6})
        store.complete(second.id, second.attempt, 0.7, {"accuracy": 0.7})
        summary = summarize(store, record, now=time.time(), baseline=False)
        assert summary.eta is not None and summary.eta.basis == "pace of the last 2 results"
        assert "left ~" in _panel(summary) and "(pace of the last 2 results)" in _panel(summary)
