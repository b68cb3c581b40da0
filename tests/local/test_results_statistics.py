"""What the result commands show is finite, inside the metric's range and says what it is
(issue 25, items 10 and 19).

Real stores (SQLite and PostgreSQL), real trials completed through the store's API, and
the real ``ma2ml`` command line run in-process (typer's runner): rewards of +-1e308 are
finite, so a trainer may report them, and sums of them are not; the basic bootstrap can
reach past an accuracy of 1; a mean of several evaluations is not one observation; a
stored float prints as a person reads it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from typer.testing import CliRunner

from ma2ml.cli import app
from ma2ml.results.baseline import expected_best_of_n
from ma2ml.results.summary import ACCURACY_RANGE, summarize
from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import SearchRecord, Store, TrialProposal
from ma2ml.store.recommend import estimate, recommend_trials

VALUES = 10
#: log pi(a) of any action of the one agent under its uniform policy.
UNIFORM = {"hpo": -math.log(VALUES)}


def _search(store: Store, name: str) -> SearchRecord:
    search = parse_spec({
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch", "metadata": {"name": name},
        "spec": {"agents": [{"name": "hpo", "decisions": [
            {"name": "x", "values": list(range(VALUES))}]}],
            "algorithm": {"name": "random"}, "budget": {"maxTrials": 50},
            "trainer": {"type": "command", "command": ["true"]}},
    })
    return store.create_search(search.key, spec_to_document(search))


def _complete(store: Store, record: SearchRecord, results: Sequence[tuple[int, float]],
              metrics: Any = None, logp: dict[str, float] = UNIFORM) -> None:
    """One completed trial per ``(pipeline index, reward)``, in that order."""
    space = parse_spec(record.spec).spec.search_space()
    for index, reward in results:
        action = {"hpo": [index]}
        store.enqueue_trials(record.id, [TrialProposal(space.decode(action), action, logp, 0)])
        claimed = store.claim(record.id, "w", 30)
        assert claimed is not None
        shown = metrics(reward) if callable(metrics) else (metrics or {})
        store.complete(claimed.id, claimed.attempt, reward, shown)


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


# --------------------------------------------------------------------------- item 10

#: Pipeline 5 is the best by far; pipeline 2 the worst; the rest ordinary rewards.
HUGE = [(0, 0.5), (1, 0.4), (2, -1e308), (3, 0.3), (4, 0.2), (5, 1e308), (6, 0.1), (7, 0.0),
        (8, -0.1), (9, -0.2)]


def test_rewards_of_1e308_give_a_finite_estimate_of_the_right_pipeline(store: Store) -> None:
    """Before: the between-pipeline variance overflowed, every mean became nan, and the
    first pipeline in key order (0) was recommended as ``nan ± nan``."""
    record = _search(store, "huge")
    _complete(store, record, HUGE)
    recommended = recommend_trials(store.list_trials(record.id, status="completed"))
    assert recommended is not None
    best, trial = recommended
    assert trial.action == {"hpo": [5]} and trial.reward == 1e308
    numbers = [best.mean, best.stderr, best.observed, best.noise]
    assert all(n is not None and math.isfinite(n) for n in numbers), best
    assert -1e308 <= best.mean <= 1e308
    assert best.stderr <= 1e308 and best.noise <= 1e308, "within half the rewards' range"
    shown = _cli("best", "default/huge", "--db", store.url)
    assert "best trial 6:" in shown, shown  # trial numbers count from 1: pipeline 5 is #6
    assert "nan" not in shown and "inf" not in shown, shown
    status = _cli("status", "default/huge", "--db", store.url)
    assert "nan" not in status and "inf" not in status, status


def test_a_pipeline_evaluated_three_times_at_1e308_keeps_a_finite_mean() -> None:
    """Before: the sum of three rewards of 1e308 overflowed to an observed mean of inf."""
    rows = [(i,) for i, _ in HUGE] + [(5,), (5,)]
    rewards = [r for _, r in HUGE] + [1e308, 1e308]
    estimates = estimate(rows, rewards)
    assert estimates[0].row == (5,) and estimates[0].evaluations == 3
    assert estimates[0].observed == 1e308
    for e in estimates:
        assert all(math.isfinite(v) for v in (e.mean, e.stderr, e.observed, e.noise)), e
        assert -1e308 <= e.mean <= 1e308


def test_ordinary_rewards_give_the_same_estimates_as_before_to_the_bit() -> None:
    """Working in units of a power of two changes nothing for ordinary rewards: these
    numbers are what the estimate gave before the change."""
    rows = [(i,) for i in range(VALUES)] + [(3,), (3,), (7,)]
    rewards = [0.61, 0.72, 0.55, 0.8, 0.43, 0.67, 0.7, 0.75, 0.52, 0.6, 0.78, 0.82, 0.71]
    shown = [(e.row, e.mean, e.stderr, e.observed, e.evaluations, e.noise)
             for e in estimate(rows, rewards)[:2]]
    assert shown == [
        ((3,), 0.7973077814386039, 0.013225422863359846, 0.7999999999999999, 3,
         0.023094010767585018),
        ((7,), 0.727673140161321, 0.01613287950524577, 0.73, 2, 0.023094010767585018)]


def test_an_accuracy_metric_that_is_no_number_is_no_accuracy(store: Store) -> None:
    """A custom trainer may put anything under ``accuracy`` beside its reward; summing
    up the search must not fail on it (``float("high")`` raised before)."""
    record = _search(store, "words")
    _complete(store, record, [(0, 0.5), (1, 0.6)], metrics={"accuracy": "high"})
    summary = summarize(store, record)
    assert summary.random_accuracies == [] and summary.reward_bounds is None


def test_the_bootstrap_interval_of_an_accuracy_stays_within_0_and_1(store: Store) -> None:
    """Rewards that are accuracies: the basic bootstrap put the top of the interval of the
    expected best of 3 at 1.18 before; it stays within ``ACCURACY_RANGE`` now."""
    record = _search(store, "accuracy")
    draws = [(0, 0.99), (1, 0.5), (2, 0.98), (3, 0.97), (4, 0.2)]
    _complete(store, record, draws, metrics=lambda reward: {"accuracy": reward})
    summary = summarize(store, record)
    low, high = ACCURACY_RANGE
    for compared in summary.random_best_of(1, 3, 5, 20):
        assert low <= compared.low <= compared.expected <= compared.high <= high, compared
    assert summary.reward_bounds == ACCURACY_RANGE


def test_a_shaped_reward_is_not_bounded_by_the_accuracy_range(store: Store) -> None:
    """A reward that is not the accuracy (FLOPs-shaped, or a trainer's own) may pass 1."""
    record = _search(store, "shaped")
    _complete(store, record, [(0, 1.2), (1, 0.5), (2, 1.1)],
              metrics=lambda reward: {"accuracy": reward / 1.3})
    assert summarize(store, record).reward_bounds is None


def test_the_bootstrap_of_rewards_of_1e308_is_finite() -> None:
    for compared in expected_best_of_n([1e308, -1e308, 0.5, 1.7e308, -1.7e308], [1, 3, 5, 9]):
        numbers = (compared.expected, compared.low, compared.high)
        assert all(math.isfinite(n) for n in numbers), compared
        assert compared.low <= compared.expected <= compared.high


def test_a_mean_of_three_evaluations_is_not_labelled_an_observation(store: Store) -> None:
    """Three pipelines (too few to de-noise); the best mean is pipeline 1's, from three
    evaluations. Before: ``reward 0.8000 (best observation, not de-noised)``."""
    record = _search(store, "repeats")
    _complete(store, record, [(0, 0.6), (1, 0.7), (1, 0.8), (1, 0.9), (2, 0.5)])
    recommended = recommend_trials(store.list_trials(record.id, status="completed"))
    assert recommended is not None and recommended[0].evaluations == 3
    shown = _cli("best", "default/repeats", "--db", store.url)
    assert "mean reward 0.8000 (best observed mean of 3 evaluations, not de-noised)" in shown
    assert "best observation" not in shown, shown
    single = recommend_trials(store.list_trials(record.id, status="completed")[:1])
    assert single is not None and single[0].basis == "best observation (not de-noised)"


# --------------------------------------------------------------------------- item 19

def test_best_shows_stored_floats_as_a_person_reads_them(store: Store) -> None:
    record = _search(store, "floats")
    _complete(store, record, [(0, 0.8399999999999999)],
              metrics={"accuracy": 0.8399999999999999, "train_seconds": 1.220871250000073,
                       "curve": [0.30000000000000004, 0.1]})
    shown = _cli("best", "default/floats", "--db", store.url)
    assert "accuracy: 0.84\n" in shown and "train_seconds: 1.22087\n" in shown, shown
    assert "curve: [0.3, 0.1]" in shown, shown
    assert "0.8399999999999999" not in shown and "1.220871250000073" not in shown


def test_one_uniform_draw_is_described_as_one() -> None:
    """Before: "only 1 pipelines ... the expected best of 1", with an interval [x, x]."""
    one, five = expected_best_of_n([0.84], [1, 5])
    for compared in (one, five):
        text = compared.describe()
        assert "1 pipelines" not in text and "best of 1;" not in text, text
        assert "[0.8400, 0.8400]" not in text, "one draw has no interval"
        assert "the reward of the 1 pipeline this search drew uniformly at random" in text
    assert one.describe().startswith("expected best of 1 random pipeline: ")
    assert five.describe().startswith("expected best of 5 random pipelines: at least ")
    assert "only a lower bound" in five.describe()
    two = expected_best_of_n([0.84, 0.5], [5])[0].describe()
    assert "only 2 pipelines this search drew" in two and "the expected best of 2;" in two


def test_status_shows_a_reward_of_1e308_as_a_person_reads_it(store: Store) -> None:
    """The status table's best (observed, then estimated): ``1e+308``, not 309 digits."""
    record = _search(store, "huge")
    _complete(store, record, [(5, 1e308)])  # one trial: no estimate yet, the observation
    shown = _cli("status", "--db", store.url)
    assert "1e+308 (observed)" in shown, shown
    _complete(store, record, [r for r in HUGE if r[0] != 5])  # enough to estimate
    shown = _cli("status", "--db", store.url)
    assert re.search(r"\d{10}", shown) is None, shown
    assert re.search(r"e\+30[78] ± ", shown), shown
