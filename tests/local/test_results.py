"""Result summaries: which trials count as the random-pipeline baseline."""

from __future__ import annotations

import math
from pathlib import Path

from ma2ml.results.summary import summarize, uniform_logp
from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import Store, TrialProposal

from .test_run import tiny_spec


def test_random_baseline_is_the_trials_of_uniform_policies(tmp_path: Path) -> None:
    search = parse_spec(tiny_spec("baseline"))
    space = search.spec.search_space()
    with Store(f"sqlite:///{tmp_path / 'b.db'}") as store:
        record = store.create_search(search.key, spec_to_document(search))
        uniform = uniform_logp(record)
        assert math.isclose(uniform["hpo"], -sum(math.log(n) for n in space.agent("hpo").sizes))
        learned = {**uniform, "nas": uniform["nas"] + 0.7}  # one agent had learned something
        action = {a.name: [0] * len(a.decisions) for a in space.agents}
        for logp, accuracy in ((uniform, 0.4), (uniform, 0.6), (learned, 0.9)):
            store.enqueue_trials(record.id, [TrialProposal(space.decode(action), action, logp, 0)])
            claimed = store.claim(record.id, "w", 30)
            store.complete(claimed.id, claimed.attempt, accuracy, {"accuracy": accuracy})
        summary = summarize(store, record)
    assert sorted(summary.random_accuracies) == [0.4, 0.6]
    assert math.isclose(summary.random_mean, 0.5)
    # Random search's best of 2 from those two draws is their best; of 3, extrapolated.
    two, three = summary.random_best_of(2, 3)
    assert math.isclose(two.expected, 0.6) and not two.extrapolated
    assert three.extrapolated and three.expected <= 0.6
    # The learned proposal against as many random pipelines (one: the expected best is the mean).
    assert summary.learned_rewards == (0.9,)
    assert summary.learned_against_random().startswith(
        "the latest 1 trial the learned policies proposed: best 0.9000, mean 0.9000; "
        "1 random pipeline: expected best 0.5000")
    assert summary.best is not None and summary.best.reward == 0.9


def test_learned_trials_fewer_than_the_uniform_draws_are_all_compared(tmp_path: Path) -> None:
    search = parse_spec(tiny_spec("fewer"))
    space = search.spec.search_space()
    with Store(f"sqlite:///{tmp_path / 'f.db'}") as store:
        record = store.create_search(search.key, spec_to_document(search))
        uniform = uniform_logp(record)
        learned = {**uniform, "hpo": uniform["hpo"] + 0.5}
        action = {a.name: [0] * len(a.decisions) for a in space.agents}
        for logp, accuracy in ((uniform, 0.3), (uniform, 0.4), (uniform, 0.5),
                               (learned, 0.7), (learned, 0.8)):
            store.enqueue_trials(record.id, [TrialProposal(space.decode(action), action, logp, 0)])
            claimed = store.claim(record.id, "w", 30)
            store.complete(claimed.id, claimed.attempt, accuracy, {"accuracy": accuracy})
        summary = summarize(store, record)
    assert summary.learned_rewards == (0.7, 0.8), "2 learned trials, both against 2 random"
    assert summary.learned_against_random().startswith("the latest 2 trials")


def test_a_held_trial_shows_as_held_not_running(tmp_path: Path) -> None:
    """A trial a worker holds ahead (prefetch) is stored running but has not started:
    ``ma2ml trials``, the dashboard (both ``trial_row``) and ``ma2ml status`` say held."""
    from typer.testing import CliRunner

    from ma2ml.cli import app
    from ma2ml.results.summary import trial_row

    search = parse_spec(tiny_spec("held"))
    space = search.spec.search_space()
    url = f"sqlite:///{tmp_path / 'h.db'}"
    with Store(url) as store:
        record = store.create_search(search.key, spec_to_document(search))
        action = {a.name: [0] * len(a.decisions) for a in space.agents}
        store.enqueue_trials(record.id, [TrialProposal(space.decode(action), action, {}, 0)] * 2)
        store.claim(record.id, "w", 30)
        store.claim_ahead(record.id, "w", 30, parallelism=1)
        rows = [trial_row(t) for t in store.list_trials(record.id)]
        summary = summarize(store, record, baseline=False)
    assert [(row["status"], row["worker"]) for row in rows] == [("running", "w"), ("held", "w")]
    assert (summary.counts.running, summary.held) == (2, 1)
    shown = CliRunner().invoke(app, ["status", search.key, "--db", url], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    header = next(line for line in lines if "running" in line)
    row = next(line for line in lines if search.key in line)
    cells = dict(zip([c.strip() for c in header.split("┃")], [c.strip() for c in row.split("│")],
                     strict=True))
    assert (cells["running"], cells["held"], cells["pending"]) == ("1", "1", "0")
