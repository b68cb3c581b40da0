"""The default example (examples/fashion-mnist.yaml) is sized to show something in its 48
trials (issue 16, friction 4): enough uniform draws to estimate random search from, and
policies that move.

The real learner loop runs on the example's spec against a real SQLite store; two worker
threads stand in for training (which test_run.py covers) and report a synthetic accuracy
that depends on a few of the example's decisions, as real training does: the learner
cannot tell the difference, and the test stays fast.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from learner.helpers import WorkerThread  # tests/learner (pytest puts tests/ on sys.path)

from ma2ml.learner.loop import run_learner
from ma2ml.results.summary import summarize
from ma2ml.spec import load_spec, spec_to_document
from ma2ml.store import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fashion-mnist.yaml"


#: Seconds a stand-in trial "trains": results then come one at a time, as in a real run
#: (a trial takes seconds there, a learner update tens of milliseconds).
TRAIN_SECONDS = 0.25


def accuracy(trial) -> tuple[str, float]:
    """Like short training on the example: AdamW, small batches, mid learning rates and
    mild augmentation help; plus noise."""
    time.sleep(TRAIN_SECONDS)
    hpo, aug = trial.pipeline["hpo"], trial.pipeline["aug"]
    value = (0.35 + 0.2 * (hpo["optimizer"] == "adamw") + 0.15 * (hpo["batch_size"] == 64)
             + 0.1 * (hpo["lr_scale"] in (0.5, 1.0, 2.0)) - 0.1 * (aug["sp0_prob0"] > 0.5))
    return "completed", value + random.Random(trial.id).gauss(0, 0.03)


def test_example_draws_a_random_baseline_then_learns(tmp_path: Path) -> None:
    search = load_spec(EXAMPLE)
    max_trials = search.spec.budget.max_trials
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with Store(f"sqlite:///{tmp_path / 'example.db'}") as store:
            record = store.create_search(search.key, spec_to_document(search))
            workers = [WorkerThread(store.url, record.id, outcome=accuracy) for _ in range(2)]
            for worker in workers:
                worker.start()
            started = time.monotonic()
            outcome = run_learner(store, search.key, poll_seconds=0.02)
            for worker in workers:
                worker.halt.set()
                worker.join(timeout=10)
            assert outcome.state == "finished", outcome
            summary = summarize(store, store.get_search_by_id(record.id))
            stats = store.snapshot_stats(record.id)
    finally:
        torch.set_num_threads(threads)
    print(f"{max_trials} trials in {time.monotonic() - started:.1f} s")
    # Random search is estimated from at least 12 uniform draws (the report's baseline).
    assert len(summary.random_rewards) >= 12, len(summary.random_rewards)
    # The policies moved: the recipe agent's entropy fell by more than a fifth (the example
    # before issue 16: 12.8 -> 10.6 nats in 56 real trials, and 10.8 here; now about 9).
    first, last = stats[0][2]["entropy"], stats[-1][2]["entropy"]
    print(f"entropy {first} -> {last}; {summary.learned_against_random()}")
    assert last["hpo"] < 0.78 * first["hpo"], (first, last)
    # And the latest proposals beat as many random pipelines on average.
    assert sum(summary.learned_rewards) / len(summary.learned_rewards) > \
        sum(summary.random_rewards) / len(summary.random_rewards) + 0.05
